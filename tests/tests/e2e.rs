//! End to end: the real function binaries served by `cargo lambda watch`, the
//! real `devstack event-sources` poller, moto, and HTTP. This is the README
//! walk-through, automated.

use neuraforge_tests::{TestStack, moto_endpoint, token, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process in its own process group, stopped (with its children) on drop.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(name: &'static str, dir: &Path, command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { name, child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} (last lines) ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn aws_env(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
}

/// `cargo` with the project venv (cargo-lambda) first on PATH.
fn cargo() -> Command {
    let venv_bin = neuraforge_tests::python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.env("PATH", path);
    command
}

async fn wait_for_status(http: &reqwest::Client, url: &str, seconds: u64, services: &[&Service]) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{url} never answered 200\n{}",
                services
                    .iter()
                    .map(|s| s.log_tail())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_task_goes_from_queued_to_completed_through_the_real_binaries() {
    let stack = TestStack::new().await;
    let dir = std::env::temp_dir().join(format!("neuraforge-e2e-{}", stack.local.stack_name));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("functions.env");
    let mut env: Vec<String> = stack
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(
        [
            "AWS_REGION=us-east-1",
            "AWS_ACCESS_KEY_ID=test",
            "AWS_SECRET_ACCESS_KEY=test",
        ]
        .map(String::from),
    );
    std::fs::write(&env_file, env.join("\n")).unwrap();
    let stack_file = dir.join("stack.json");
    std::fs::write(&stack_file, serde_json::to_string(&stack.local).unwrap()).unwrap();

    let port = free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let watch = Service::start(
        "cargo-lambda-watch",
        &dir,
        aws_env(
            cargo()
                .args([
                    "lambda",
                    "watch",
                    "--ignore-changes",
                    "--invoke-address",
                    "127.0.0.1",
                    "--invoke-port",
                    &port,
                ])
                .arg("--env-file")
                .arg(&env_file),
        ),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_for_status(&http, &format!("{base}/api/v1/health"), 180, &[&watch]).await;
    let sources = Service::start(
        "event-sources",
        &dir,
        aws_env(
            Command::new(workspace_root().join("target/debug/devstack"))
                .args([
                    "event-sources",
                    "--invoke-url",
                    &base,
                    "--schedule-seconds",
                    "1",
                ])
                .arg("--stack")
                .arg(&stack_file),
        ),
    );
    let logs = || format!("{}\n{}", watch.log_tail(), sources.log_tail());

    // Readiness goes through the real SDK clients to moto.
    wait_for_status(&http, &format!("{base}/api/v1/health/ready"), 30, &[&watch]).await;

    // Submit, then watch the status move to completed.
    let alice = token("alice", &["submitter"]);
    let submitted = http
        .post(format!("{base}/api/v1/submit_task"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"prompt": "Costs fell 3 percent. Revenue grew 12 percent.", "metadata": {"source": "e2e"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 200, "{}", logs());
    let location = submitted.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = submitted.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(
        location,
        format!("/api/v1/tasks/{}", body["task_id"].as_str().unwrap())
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let task: serde_json::Value = http
            .get(format!("{base}{location}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["status"] == "completed" {
            break task;
        }
        assert!(
            ["queued", "in_progress"].contains(&task["status"].as_str().unwrap()),
            "{task}\n{}",
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "the task never completed: {task}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(task["outputs"][0]["agent"], "finance_agent");
    let events: Vec<&str> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"task_started"));
    assert_eq!(events.last(), Some(&"task_completed"));

    // Through the router, errors are problem+json too.
    let wrong_method = http
        .delete(format!("{base}{location}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    let anonymous = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    // The sample events work with `cargo lambda invoke --data-file`.
    for (function, file, expect) in [
        (
            "health",
            "functions/health/events/get.json",
            "\"statusCode\":200",
        ),
        (
            "submit-task",
            "functions/submit-task/events/submit.json",
            "\"statusCode\":200",
        ),
        (
            "outbox-sweeper",
            "functions/outbox-sweeper/events/schedule.json",
            "\"found\"",
        ),
    ] {
        let output = cargo()
            .args([
                "lambda",
                "invoke",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port,
                "--output-format",
                "json",
                "--data-file",
                file,
                function,
            ])
            .current_dir(workspace_root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).replace([' ', '\n'], "");
        assert!(
            output.status.success() && stdout.contains(expect),
            "{function}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
