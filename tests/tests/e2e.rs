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

/// The local stack's processes for one test: `cargo lambda watch` serving the
/// functions against this test's tables and queues, and (once started) the event sources.
struct LocalProcesses {
    dir: PathBuf,
    port: String,
    base: String,
    stack_file: PathBuf,
    watch: Service,
    sources: Option<Service>,
}

impl LocalProcesses {
    async fn start(stack: &TestStack, http: &reqwest::Client) -> Self {
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
        wait_for_status(http, &format!("{base}/api/v1/health"), 180, &[&watch]).await;
        Self {
            dir,
            port,
            base,
            stack_file,
            watch,
            sources: None,
        }
    }

    /// The SQS event source mapping and the schedules (`devstack event-sources`).
    fn start_sources(&mut self) {
        self.sources = Some(Service::start(
            "event-sources",
            &self.dir,
            aws_env(
                Command::new(workspace_root().join("target/debug/devstack"))
                    .args([
                        "event-sources",
                        "--invoke-url",
                        &self.base,
                        "--schedule-seconds",
                        "1",
                    ])
                    .arg("--stack")
                    .arg(&self.stack_file),
            ),
        ));
    }

    fn logs(&self) -> String {
        let sources = self
            .sources
            .as_ref()
            .map(Service::log_tail)
            .unwrap_or_default();
        format!("{}\n{sources}", self.watch.log_tail())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_task_goes_from_queued_to_completed_through_the_real_binaries() {
    let stack = TestStack::new().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut local = LocalProcesses::start(&stack, &http).await;
    local.start_sources();
    let (base, port) = (local.base.clone(), local.port.clone());
    let logs = || local.logs();

    // Readiness goes through the real SDK clients to moto.
    wait_for_status(
        &http,
        &format!("{base}/api/v1/health/ready"),
        30,
        &[&local.watch],
    )
    .await;

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
        (
            "review-backlog-metrics",
            "functions/review-backlog-metrics/events/schedule.json",
            "\"oldest_age_seconds\"",
        ),
        (
            "review-metrics",
            "functions/review-metrics/events/get.json",
            "\"statusCode\":200",
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

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq)]
struct SseMessage {
    id: Option<u64>,
    event: Option<String>,
    data: Option<serde_json::Value>,
}

/// Reads an SSE response until the server ends it (or `seconds` pass), parsing each message.
async fn read_stream(mut response: reqwest::Response, seconds: u64) -> (Vec<SseMessage>, bool) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let ended = loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break true,
            Ok(Err(_)) | Err(_) => break false,
        }
    };
    let messages = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_string)
            };
            SseMessage {
                id: field("id: ").and_then(|v| v.parse().ok()),
                event: field("event: "),
                data: field("data: ").and_then(|v| serde_json::from_str(&v).ok()),
            }
        })
        .collect();
    (messages, ended)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_follows_a_task_live_and_resumes_with_last_event_id_without_gaps() {
    let stack = TestStack::new().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut local = LocalProcesses::start(&stack, &http).await;
    let alice = token("alice", &["submitter"]);
    let body = serde_json::json!({"prompt": "Revenue this quarter was 1200 * 1.15 thousand. Email it to cfo@example.com."});
    let submitted: serde_json::Value = http
        .post(format!("{}/api/v1/submit_task", local.base))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events_url = format!(
        "{}/api/v1/tasks/{}/events",
        local.base,
        submitted["task_id"].as_str().unwrap()
    );

    // Connect while the task is still queued (no event source runs yet): the stream stays open.
    let live = http
        .get(&events_url)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "{}", local.logs());
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let reader = tokio::spawn(read_stream(live, 60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!reader.is_finished(), "the stream waits for events");

    // Now the task runs; its events arrive on the open stream, which ends after the terminal one.
    local.start_sources();
    let (messages, ended) = reader.await.unwrap();
    assert!(
        ended,
        "the stream closes after the terminal event\n{}",
        local.logs()
    );
    assert!(
        messages[0].id.is_none(),
        "the retry hint comes first: {:?}",
        messages[0]
    );
    let events: Vec<&SseMessage> = messages.iter().filter(|m| m.id.is_some()).collect();
    let ids: Vec<u64> = events.iter().map(|m| m.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids are the sequence numbers, no gaps"
    );
    let names: Vec<&str> = events.iter().map(|m| m.event.as_deref().unwrap()).collect();
    for expected in [
        "task_started",
        "guardrail_triggered",
        "agent_started",
        "tool_invoked",
        "agent_completed",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(names.last(), Some(&"task_completed"));
    for m in &events {
        let data = m.data.as_ref().unwrap();
        assert_eq!(data["schema"], "neuraforge.task-event.v1");
        assert_eq!(data["event"].as_str(), m.event.as_deref());
        assert_eq!(data["sequence"].as_u64(), m.id);
    }

    // Reconnecting after event 3 gives exactly the rest.
    let resumed = http
        .get(&events_url)
        .bearer_auth(&alice)
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let (rest, ended) = read_stream(resumed, 30).await;
    assert!(ended);
    let rest_ids: Vec<u64> = rest.iter().filter_map(|m| m.id).collect();
    assert_eq!(
        rest_ids,
        (4..=ids.len() as u64).collect::<Vec<_>>(),
        "no gap and no duplicate after a reconnect"
    );

    // A malformed Last-Event-ID is refused before any streaming.
    let bad = http
        .get(&events_url)
        .bearer_auth(&alice)
        .header("Last-Event-ID", "three")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let unknown = http
        .get(format!(
            "{}/api/v1/tasks/{}/events",
            local.base,
            shared::tasks::TaskId::new()
        ))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Submit and stream in one request.
    let streamed = http
        .post(format!("{}/api/v1/submit_task/stream", local.base))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"prompt": "Write a tagline about our revenue growth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(
        streamed.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/v1/tasks/")
    );
    let (messages, ended) = read_stream(streamed, 30).await;
    assert!(ended, "{}", local.logs());
    let names: Vec<&str> = messages.iter().filter_map(|m| m.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"task_started"));
    assert_eq!(names.last(), Some(&"task_completed"));
    let invalid = http
        .post(format!("{}/api/v1/submit_task/stream", local.base))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"prompt": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        invalid.status(),
        422,
        "validation happens before the stream starts"
    );
}
