//! End to end: the real function binaries served by `cargo lambda watch`, the
//! real `devstack event-sources` poller, moto, and HTTP. This is the README
//! walk-through, automated.

use neuraforge_tests::{TestStack, aws_env, bound_port, free_port, token, workspace_root};
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
        // Appending: other writers (a load test's marker) add whole lines the child must not
        // overwrite from its own file offset.
        let _ = std::fs::remove_file(&log);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        if command.get_current_dir().is_none() {
            command.current_dir(workspace_root());
        }
        let child = command
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

/// `cargo` with the project venv (cargo-lambda) first on PATH.
/// An HTTP client for the local functions, giving up on a request after `seconds`.
fn http_client(seconds: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(seconds))
        .build()
        .unwrap()
}

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

/// Waits until `url` answers 200 (`true`), or the service's process exits (`false`).
async fn answers_before_exiting(
    http: &reqwest::Client,
    url: &str,
    seconds: u64,
    service: &mut Service,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return true;
        }
        if let Ok(Some(_)) = service.child.try_wait() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered 200\n{}",
            service.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls a task document (as `who`) until `done` holds, for at most `seconds`.
async fn wait_for_task(
    http: &reqwest::Client,
    url: &str,
    who: &str,
    seconds: u64,
    done: impl Fn(&serde_json::Value) -> bool,
    logs: impl Fn() -> String,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let task: serde_json::Value = http
            .get(url)
            .bearer_auth(who)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never got there: {task}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The EMF exporter following the functions' output and a real Prometheus (Debian's) scraping
/// it every second with the project's rules.
struct Metrics {
    exporter: Service,
    exporter_port: u16,
    // Kept so that Prometheus runs as long as the test holds these (stopped when dropped).
    _prometheus: Service,
    url: String,
}

impl Metrics {
    async fn start(local: &LocalProcesses, http: &reqwest::Client) -> Self {
        let exporter = Service::start(
            "exporter",
            &local.dir,
            Command::new(workspace_root().join("target/debug/emf-exporter"))
                .args([
                    "--config",
                    "infra/exporter/exporter.yaml",
                    "--from-start",
                    "--follow",
                ])
                .arg(local.dir.join("cargo-lambda-watch.log"))
                .arg("--listen")
                .arg("127.0.0.1:0"),
        );
        let exporter_port = bound_port(&exporter.log, "listening on", 60).await;
        let rules = workspace_root().join("infra/prometheus/rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/*.yml\nscrape_configs:\n  - job_name: neuraforge-exporter\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n",
            rules.display()
        );
        std::fs::write(local.dir.join("prometheus.yml"), config).unwrap();
        let prometheus = Service::start(
            "prometheus",
            &local.dir,
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    local.dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    local.dir.join("prometheus-data").display()
                ))
                .arg("--web.listen-address=127.0.0.1:0"),
        );
        let prometheus_port = bound_port(&prometheus.log, "msg=\"Listening on\"", 60).await;
        let url = format!("http://127.0.0.1:{prometheus_port}");
        wait_for_status(http, &format!("{url}/-/ready"), 60, &[&prometheus]).await;

        Self {
            exporter,
            exporter_port,
            _prometheus: prometheus,
            url,
        }
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
        Self::start_with(stack, http, &[]).await
    }

    /// As [`start`](Self::start), with settings changed for every function.
    async fn start_with(
        stack: &TestStack,
        http: &reqwest::Client,
        overrides: &[(&str, &str)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("neuraforge-e2e-{}", stack.local.stack_name));
        std::fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join("functions.env");
        let mut settings = stack.env().clone();
        // The real functions read the signing secret from SSM, as they do in AWS.
        settings.remove("AUTH__JWT_SECRET_KEY");
        for (k, v) in overrides {
            settings.insert(k.to_string(), v.to_string());
        }
        let mut env: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
        // `cargo lambda watch` cannot bind port 0 and report it (it takes 0 for its default):
        // if the free port is taken before it binds, it exits, and another port is tried.
        let mut attempts = 0;
        let (port, base, watch) = loop {
            attempts += 1;
            let port = free_port().to_string();
            let base = format!("http://127.0.0.1:{port}");
            let mut watch = Service::start(
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
            let health = format!("{base}/api/v1/health");
            if answers_before_exiting(http, &health, 180, &mut watch).await {
                break (port, base, watch);
            }
            assert!(
                attempts < 3,
                "cargo lambda watch exited\n{}",
                watch.log_tail()
            );
        };
        Self {
            dir,
            port,
            base,
            stack_file,
            watch,
            sources: None,
        }
    }

    /// The functions and their event sources for a fresh stack, and an HTTP client for them.
    async fn running(stack: &TestStack) -> (reqwest::Client, Self) {
        let http = http_client(30);
        let mut local = Self::start(stack, &http).await;
        local.start_sources();
        (http, local)
    }

    /// The SQS event source mapping, the schedules and the audit path (`devstack
    /// event-sources`, shipping the audit lines of the functions' output).
    fn start_sources(&mut self) {
        let functions_output = self.watch.log.clone();
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
                    .arg(&self.stack_file)
                    .arg("--audit-lines")
                    .arg(functions_output),
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

/// The deploy workflow's smoke (`devstack smoke`), against the real binaries configured as a
/// deployed stack is: every token must name the issuer and audience, and the smoke's token is
/// minted the way the workflow mints it (`devstack token --issuer --audience`).
#[tokio::test(flavor = "multi_thread")]
async fn the_post_deploy_smoke_passes_against_the_real_binaries_and_fails_on_a_refused_token() {
    let stack = TestStack::new().await;
    let http = http_client(30);
    let (issuer, audience) = ("https://id.smoke.example", "urn:neuraforge:smoke");
    let mut local = LocalProcesses::start_with(
        &stack,
        &http,
        &[
            ("AUTH__JWT_ISSUER", issuer),
            ("AUTH__JWT_AUDIENCE", audience),
            // The sealer (every second here) seals what has arrived at once.
            ("AUDIT__SEAL_GRACE_SECONDS", "0"),
        ],
    )
    .await;
    local.start_sources();
    // The metrics path's end: the exporter, here following the functions' output.
    let metrics = Metrics::start(&local, &http).await;
    let metrics_url = format!("http://127.0.0.1:{}/metrics", metrics.exporter_port);
    let devstack = workspace_root().join("target/debug/devstack");
    let mint = |extra: &[&str]| {
        let out = Command::new(&devstack)
            .args(["token", "--sub", "smoke", "--roles", "submitter"])
            .args(extra)
            .env("AUTH__JWT_SECRET_KEY", neuraforge_tests::TEST_SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let smoke = |token: &str| {
        Command::new(&devstack)
            .args(["smoke", "--base", &local.base, "--timeout-seconds", "90"])
            .args([
                "--metrics-url",
                &metrics_url,
                "--metrics-timeout-seconds",
                "60",
            ])
            .env("SMOKE_TOKEN", token)
            .output()
            .unwrap()
    };

    let good = smoke(&mint(&["--issuer", issuer, "--audience", audience]));
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{said}\n{}\n{}",
        String::from_utf8_lossy(&good.stderr),
        local.logs()
    );
    for check in [
        "ok  GET /api/v1/health/ready: 200",
        "ok  POST /api/v1/submit_task without a token: 401 problem+json",
        "ok  GET /api/v1/tasks/{id}: completed",
        "task_started to task_completed",
        "ok  the exporter counts the task (neuraforge_tasks_finished_total",
    ] {
        assert!(said.contains(check), "missing {check:?} in\n{said}");
    }

    // The audit path end to end: the real functions' audit lines, shipped from their output
    // into the bucket, sealed by the real sealer, verify intact.
    let settings = stack.settings();
    let verify = || {
        aws_env(&mut Command::new(&devstack))
            .args([
                "audit-verify",
                "--bucket",
                &stack.local.buckets["AuditBucket"],
            ])
            .args([
                "--key-parameter",
                &settings.required(shared::audit::seal::KEY_SETTING).unwrap(),
                "--anchor-parameter",
                &settings
                    .required(shared::audit::seal::ANCHOR_SETTING)
                    .unwrap(),
            ])
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let sealed = loop {
        let out = verify();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}\n{}", local.logs());
        let sealed: usize = text
            .split(" sealed record(s)")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if sealed >= 3 || Instant::now() > deadline {
            break sealed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        sealed >= 3,
        "the smoke's audited requests (a 401, a submission, its reads) sealed: {sealed}\n{}",
        local.logs()
    );

    // A token without the audience is refused: the smoke says where, in one line, and fails.
    let refused = smoke(&mint(&["--issuer", issuer]));
    assert_eq!(refused.status.code(), Some(1));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("POST /api/v1/submit_task answered 401"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_task_goes_from_queued_to_completed_through_the_real_binaries() {
    let stack = TestStack::new().await;
    let (http, local) = LocalProcesses::running(&stack).await;
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

    let task = wait_for_task(
        &http,
        &format!("{base}{location}"),
        &alice,
        60,
        |t| {
            let status = t["status"].as_str().unwrap();
            assert!(
                ["queued", "in_progress", "completed"].contains(&status),
                "{t}"
            );
            status == "completed"
        },
        logs,
    )
    .await;
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
            "task-enqueuer",
            "functions/task-enqueuer/events/new-tasks.json",
            "\"batchItemFailures\":[]",
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
async fn a_client_follows_a_task_live_and_after_it_ends_resumes_from_its_last_event_id() {
    let stack = TestStack::new().await;
    let http = http_client(60);
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

/// Evaluates a PromQL query; `None` if Prometheus refused it.
async fn prom_query(
    http: &reqwest::Client,
    prometheus: &str,
    expr: &str,
) -> Option<Vec<serde_json::Value>> {
    let body: serde_json::Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (body["status"] == "success").then(|| {
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    })
}

/// Grafana's variables, as "All" selects them.
fn with_variables(expr: &str) -> String {
    let mut out = expr.replace("$__rate_interval", "1m");
    // Longest first: `$agent_count` before `$agent`, `$agent` before `$age`.
    let mut names = [
        "status",
        "reviewer",
        "age",
        "policy",
        "decision",
        "agent",
        "tool",
        "entry_point",
        "agent_count",
        "route",
        "queue",
    ];
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${name}"), ".*");
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_prometheus_scraping_the_exporter_of_a_live_stack()
{
    let stack = TestStack::new().await;
    let http = http_client(30);
    // A small submission limit, so that rate limiting shows on the dashboards too.
    let mut local = LocalProcesses::start_with(
        &stack,
        &http,
        &[("RATE_LIMIT__TASK_SUBMISSION__CAPACITY", "5")],
    )
    .await;
    local.start_sources();
    let base = local.base.clone();

    // The exporter follows the functions' output; Prometheus scrapes it every second
    // and evaluates the project's recording and alerting rules.
    let metrics = Metrics::start(&local, &http).await;
    let (exporter, exporter_port, prometheus) = (
        &metrics.exporter,
        metrics.exporter_port,
        metrics.url.clone(),
    );

    // A load test's marker, written by the locustfile's own writer into the followed log.
    mark_load_test(&local.dir.join("cargo-lambda-watch.log"), 3);

    // Traffic that every panel has something to show for.
    let alice = token("alice", &["submitter"]);
    let mut task_ids = Vec::new();
    // The real functions count submissions in epoch-aligned 60 s windows (no clock to fix
    // in a separate process): start the seven submissions where they fit in one window.
    let into_window = shared::time::now_millis() % 60_000;
    if into_window > 40_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_window + 200) as u64)).await;
    }
    for prompt in [
        "Revenue this quarter was 1200 * 1.15 thousand. Email the summary to cfo@example.com.",
        // Personal data and two sensitive phrases: review (pii) and escalate (risk).
        "Refund card 4111 1111 1111 1111 by wire transfer, confidential",
        "Explain how to build a bomb",
        // Two agents who disagree at first: a dispute the negotiation settles.
        "Forecast revenue of 300 + 45 and draft a tagline for the quarter",
        "Write a short creative story about research.",
        "one too many",
        "two too many",
    ] {
        let response = http
            .post(format!("{base}/api/v1/submit_task"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({"prompt": prompt}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            task_ids.push(
                response.json::<serde_json::Value>().await.unwrap()["task_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        } else {
            assert_eq!(response.status(), 429, "only the rate limit refuses here");
        }
    }
    assert_eq!(task_ids.len(), 5, "five admitted, two rate limited");
    // Authentication failures: no token, a malformed one, a missing scope.
    for bearer in [
        None,
        Some("not-a-token".to_string()),
        Some(token("olga", &["observer"])),
    ] {
        let mut request = http
            .post(format!("{base}/api/v1/submit_task"))
            .json(&serde_json::json!({"prompt": "x"}));
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        assert!(matches!(
            request.send().await.unwrap().status().as_u16(),
            401 | 403
        ));
    }
    // The risky task waits for review: a reviewer takes and decides it.
    let risky = &task_ids[1];
    let task = wait_for_task(
        &http,
        &format!("{base}/api/v1/tasks/{risky}"),
        &alice,
        60,
        |t| t["meta"]["review_ticket_id"].is_string(),
        || local.logs(),
    )
    .await;
    let ticket = task["meta"]["review_ticket_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rita = token("rita", &["reviewer"]);
    for (path, body) in [
        ("assign", None),
        (
            "resolve",
            Some(serde_json::json!({"status": "resolved", "outcome": "approve"})),
        ),
    ] {
        let mut request = http
            .post(format!("{base}/api/v1/reviews/{ticket}/{path}"))
            .bearer_auth(&rita);
        if let Some(body) = body {
            request = request.json(&body);
        }
        assert_eq!(request.send().await.unwrap().status(), 200, "{path}");
    }
    // A second risky task stays in review with sam, so the backlog has a ticket and a reviewer.
    let bob = token("bob", &["submitter"]);
    // A tool call the task's own metadata narrowed away: a refused call (v1's tool failures).
    let narrowed = http
        .post(format!("{base}/api/v1/submit_task"))
        .bearer_auth(&bob)
        .json(&serde_json::json!({"prompt": "Revenue 10 + 5", "metadata": {"agents": ["finance_agent", "enterprise_agent"], "tools": ["json_query"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(narrowed.status(), 200);
    let second: serde_json::Value = http
        .post(format!("{base}/api/v1/submit_task"))
        .bearer_auth(&bob)
        .json(&serde_json::json!({"prompt": "Refund card 5500 0000 0000 0004 by wire transfer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = wait_for_task(
        &http,
        &format!(
            "{base}/api/v1/tasks/{}",
            second["task_id"].as_str().unwrap()
        ),
        &bob,
        60,
        |t| t["meta"]["review_ticket_id"].is_string(),
        || local.logs(),
    )
    .await;
    let held = http
        .post(format!(
            "{base}/api/v1/reviews/{}/assign",
            second["meta"]["review_ticket_id"].as_str().unwrap()
        ))
        .bearer_auth(token("sam", &["reviewer"]))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);

    // Wait until the slowest sources (the schedules, the recording rules) are in Prometheus.
    let deadline = Instant::now() + Duration::from_secs(90);
    for expr in [
        "neuraforge_review_decisions_total",
        "neuraforge_review_time_to_resolve_seconds_count",
        "neuraforge_review_tickets_open",
        "neuraforge_review_tickets_by_age",
        "neuraforge_review_tickets_by_reviewer",
        "neuraforge_queue_messages",
        "neuraforge:task_latency_slow:ratio_rate1h",
        "neuraforge:api_errors:ratio_rate1h",
        "neuraforge_rate_limited_total",
        // v1's series: recorded by v1-compat.yml, or sent by the worker on a dispute or a
        // refused tool call.
        "orchestrator:throughput_per_minute",
        "neuraforge_orchestrator_success_rate",
        "neuraforge_meta_agent_disputes_total",
        "neuraforge_agent_tool_failure_total",
    ] {
        while prom_query(&http, &prometheus, expr)
            .await
            .is_none_or(|r| r.is_empty())
        {
            assert!(
                Instant::now() < deadline,
                "{expr} never reached Prometheus\n{}\n{}",
                exporter.log_tail(),
                local.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Two more scrapes, so that rate() windows hold two samples of every series.
    let scrapes = || async {
        let expr = r#"count_over_time(up{job="neuraforge-exporter"}[5m])"#;
        prom_query(&http, &prometheus, expr)
            .await
            .and_then(|r| r.first()?["value"][1].as_str()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let seen = scrapes().await;
    while scrapes().await < seen + 2 {
        assert!(Instant::now() < deadline, "Prometheus stopped scraping");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut checked = 0;
    for (name, dashboard) in crate::dashboards::dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = with_variables(target["expr"].as_str().unwrap());
                let case = format!("{name} / {}: {expr}", panel["title"]);
                let result = prom_query(&http, &prometheus, &expr).await;
                let result =
                    result.unwrap_or_else(|| panic!("{case}: Prometheus refused the query"));
                assert!(!result.is_empty(), "{case}: no data");
                checked += 1;
            }
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            let Some(definition) = variable["definition"].as_str() else {
                continue;
            };
            let (metric, label) = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.split_once(", "))
                .unwrap_or_else(|| panic!("{name}: variable query {definition}"));
            let body: serde_json::Value = http
                .get(format!("{prometheus}/api/v1/label/{label}/values"))
                .query(&[("match[]", metric)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                body["data"].as_array().is_some_and(|v| !v.is_empty()),
                "{name}: variable {} has no values",
                variable["name"]
            );
        }
        for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = annotation["expr"].as_str() {
                assert!(
                    prom_query(&http, &prometheus, expr).await.is_some(),
                    "{name}: annotation {expr}"
                );
            }
        }
    }
    assert!(checked >= 40, "{checked} queries checked");

    // v1's dashboards, unchanged: every query of v1's panels returns data (v1's README lists
    // the "Resolution Confidence" panel as never working in v1; here it does too).
    let queries =
        std::fs::read_to_string(crate::v1_compat::v1_observability().join("queries.txt")).unwrap();
    let mut v1_checked = 0;
    for expr in queries
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let result = prom_query(&http, &prometheus, expr)
            .await
            .unwrap_or_else(|| panic!("v1 query refused: {expr}"));
        assert!(!result.is_empty(), "v1 query without data: {expr}");
        v1_checked += 1;
    }
    assert_eq!(v1_checked, 33, "every v1 dashboard query");

    // The three seed series, as the README walk-through shows them.
    let exported = http
        .get(format!("http://127.0.0.1:{exporter_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for seed in [
        "neuraforge_task_latency_seconds_bucket{agent_count=",
        "neuraforge_guardrail_decision_total{decision=\"review\",function=\"task-worker\",policy_id=\"pii.v1\"}",
        "neuraforge_review_tickets{function=\"review-backlog-metrics\",status=\"unassigned\"}",
    ] {
        assert!(exported.contains(seed), "{seed} not exported:\n{exported}");
    }
    drop(metrics);
}

/// Writes a load-test marker (`neuraforge_load_test_users`) with the locustfile's writer.
fn mark_load_test(log: &std::path::Path, users: u32) {
    let out = Command::new(neuraforge_tests::python())
        .arg("-c")
        .arg(format!(
            "import sys; sys.path.insert(0, 'infra/load'); import locustfile; locustfile.write_marker({users})"
        ))
        .current_dir(workspace_root())
        .env("LOAD_MARKER_FILE", log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Locust smoke: a few seconds of the load test's users (submitters, followers,
/// reviewers) against the real binaries. Answers the server announced (429 with
/// Retry-After, 409 for a ticket taken first) are expected; nothing else may fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_load_test_runs_without_unexpected_failures() {
    let stack = TestStack::new().await;
    let (http, local) = LocalProcesses::running(&stack).await;
    // Warm the submit and status functions first: a first invocation under `cargo lambda watch`
    // starts the function's process, which would eat most of a short run.
    let warm: serde_json::Value = http
        .post(format!("{}/api/v1/submit_task", local.base))
        .bearer_auth(token("load-warm-up", &["submitter"]))
        .json(&serde_json::json!({"prompt": "warm up"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = http
        .get(format!(
            "{}/api/v1/tasks/{}",
            local.base,
            warm["task_id"].as_str().unwrap()
        ))
        .bearer_auth(token("load-warm-up", &["submitter"]))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let tokens = serde_json::json!({
        "submitter": (0..3).map(|i| token(&format!("load-submitter-{i}"), &["submitter"])).collect::<Vec<_>>(),
        "observer": [token("load-observer", &["observer"])],
        "reviewer": [token("load-reviewer", &["reviewer"])],
    });
    let csv = local.dir.join("smoke");
    let out = Command::new(neuraforge_tests::python())
        .args(["-m", "locust", "-f"])
        .arg(workspace_root().join("infra/load/locustfile.py"))
        .args([
            "--headless",
            "--users",
            "5",
            "--spawn-rate",
            "5",
            "--run-time",
            "8s",
        ])
        .args(["--host", &local.base, "--only-summary", "--csv"])
        .arg(&csv)
        .env("LOAD_TOKENS", tokens.to_string())
        .env("LOAD_MARKER_FILE", local.dir.join("load-marker.log"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        local.logs()
    );
    assert!(out.status.success(), "locust failed:\n{said}");
    // The report, where CI uploads it from (.local/load-smoke/).
    let report = workspace_root().join(".local/load-smoke");
    std::fs::create_dir_all(&report).unwrap();
    for suffix in ["_stats.csv", "_failures.csv"] {
        let from = format!("{}{suffix}", csv.display());
        let _ = std::fs::copy(&from, report.join(format!("smoke{suffix}")));
    }
    let stats = std::fs::read_to_string(format!("{}_stats.csv", csv.display())).unwrap();
    let mut rows = stats.lines().map(|l| l.split(',').collect::<Vec<_>>());
    let header = rows.next().unwrap();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (requests, failures) = (column("Request Count"), column("Failure Count"));
    let total = rows.find(|r| r[column("Name")] == "Aggregated").unwrap();
    // A loaded CI machine serves only a handful of requests in 8 s; each must succeed.
    assert!(
        total[requests].parse::<u64>().unwrap() >= 2,
        "{stats}\n{said}"
    );
    assert_eq!(total[failures], "0", "{stats}\n{said}");
    let submitted = stats
        .lines()
        .find(|l| l.contains("POST /api/v1/submit_task"))
        .unwrap_or_default()
        .to_string();
    assert!(!submitted.is_empty(), "the submitters submitted: {stats}");

    // The run marked itself for the dashboards: its users while it lasted, then 0, each
    // line a document the exporter serves as `neuraforge_load_test_users`.
    let marker = std::fs::read_to_string(local.dir.join("load-marker.log")).unwrap();
    let config =
        emf_exporter::config::Config::load(&workspace_root().join("infra/exporter/exporter.yaml"))
            .unwrap();
    let served = |lines: &[&str]| {
        let mut registry = emf_exporter::registry::Registry::new(config.clone());
        lines.iter().for_each(|l| registry.ingest_line(l));
        registry.render()
    };
    let lines: Vec<&str> = marker.lines().collect();
    assert!(lines.len() >= 2, "{marker}");
    assert!(
        served(&lines[..1]).contains("neuraforge_load_test_users{function=\"load-test\"} 5"),
        "{}",
        served(&lines[..1])
    );
    assert!(
        served(&lines).contains("neuraforge_load_test_users{function=\"load-test\"} 0"),
        "{}",
        served(&lines)
    );
}

/// The README's walk-through, block by block as a user pastes them (`sh test` blocks, one
/// shell), against the real binaries: what it shows is what a new user gets.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walk_through_runs_as_written() {
    let stack = TestStack::new().await;
    let (_, local) = LocalProcesses::running(&stack).await;
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let blocks = neuraforge_tests::tested_blocks(&readme);
    assert!(
        blocks.len() >= 4,
        "the walk-through's blocks are marked `sh test`"
    );
    // `infra/dev token` is `devstack token` with the local secret: the same, without cargo.
    let devstack = workspace_root().join("target/debug/devstack");
    let mut script = format!(
        "infra/dev() {{ [[ $1 == token ]] || return 2; shift; '{}' token \"$@\"; }}\n",
        devstack.display()
    );
    for (line, block) in &blocks {
        script.push_str(&format!("echo '--- README.md:{line}'\n{block}"));
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(workspace_root())
        .env("API", &local.base)
        .env("AUTH__JWT_SECRET_KEY", neuraforge_tests::TEST_SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = neuraforge_tests::said(&out);
    assert!(out.status.success(), "{said}\n{}", local.logs());
    // What the blocks printed matches what the README shows after them.
    for expected in [
        "completed",
        "event: task_started",
        "event: task_completed",
        "id: 4",
        r#"{"status":"completed","agents":["research_agent","finance_agent"],"events":10}"#,
        r#"{"status":"completed","snapshots":2}"#,
        "awaiting_review",
        "in_review",
        "resolved",
        r#"{"dismissed":0,"in_review":0,"open":0,"resolved":1}"#,
    ] {
        assert!(said.contains(expected), "missing {expected:?} in\n{said}");
    }
}

/// The review console in a real browser (Debian's chromium) against the real local stack: the
/// Playwright specs of `console/e2e/`. A reviewer signs in, a risky submission's ticket appears
/// live, the reviewer works it to resolved and the task completes, the operations page draws
/// the workload and task latency from Prometheus; then, with the tasks queue gone, the health
/// indicator turns red. Between them, a reviewer signs in at a real OpenID Connect provider
/// (authorization code with PKCE) and the API accepts its RS256 token. Screenshots go to
/// `.local/console/`.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_a_ticket_live_in_a_real_browser() {
    let stack = TestStack::new().await;
    let http = http_client(30);
    let console = workspace_root().join("console");
    assert!(
        console.join("dist/index.html").exists(),
        "build the console first (`infra/dev test` does: npm run build in console/)"
    );
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}");

    // A real OpenID Connect provider for the console's sign-in; the functions verify its RS256
    // tokens with the keys it publishes (AUTH__JWKS_FILE), beside the minted HS256 ones.
    let dir = std::env::temp_dir().join(format!("neuraforge-idp-{}", stack.local.stack_name));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    let idp_url = format!("http://127.0.0.1:{}", free_port());
    let idp_port = idp_url.rsplit(':').next().unwrap().to_string();
    let idp = Service::start(
        "identity-provider",
        &dir,
        Command::new("node")
            .args(["e2e/idp.mjs", &idp_port, &url, "urn:neuraforge:api"])
            .arg(&jwks)
            .current_dir(&console),
    );
    wait_for_status(
        &http,
        &format!("{idp_url}/.well-known/openid-configuration"),
        30,
        &[&idp],
    )
    .await;
    let mut local = LocalProcesses::start_with(
        &stack,
        &http,
        &[
            ("AUTH__JWT_ALGORITHM", "HS256,RS256"),
            ("AUTH__JWKS_FILE", jwks.to_str().unwrap()),
        ],
    )
    .await;
    local.start_sources();

    // The operations page draws from Prometheus, through the console's proxy.
    let metrics = Metrics::start(&local, &http).await;
    let preview = Service::start(
        "console",
        &local.dir,
        Command::new(console.join("node_modules/.bin/vite"))
            .args([
                "preview",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--strictPort",
            ])
            .current_dir(&console)
            .env("NEURAFORGE_API", &local.base)
            .env("PROMETHEUS", &metrics.url)
            .env("CONSOLE_OIDC_AUTHORITY", &idp_url)
            .env("CONSOLE_OIDC_CLIENT_ID", "neuraforge-console")
            .env("CONSOLE_OIDC_RESOURCE", "urn:neuraforge:api"),
    );
    wait_for_status(&http, &format!("{url}/"), 60, &[&preview]).await;
    // Through the console's proxy, the API answers.
    wait_for_status(&http, &format!("{url}/api/v1/health"), 30, &[&preview]).await;

    let shots = workspace_root().join(".local/console");
    std::fs::create_dir_all(&shots).unwrap();
    let playwright = |spec: &str| {
        let out = Command::new(console.join("node_modules/.bin/playwright"))
            .args(["test", spec])
            .current_dir(&console)
            .env("CONSOLE_URL", &url)
            .env("API_URL", &local.base)
            .env("REVIEWER_TOKEN", token("rita", &["reviewer"]))
            .env("SUBMITTER_TOKEN", token("alice", &["submitter"]))
            .env("SCREENSHOTS_DIR", &shots)
            .env("IDP_URL", &idp_url)
            .env("CI", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "playwright {spec} failed:\n{}\n{}\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            preview.log_tail(),
            idp.log_tail(),
            local.logs()
        );
    };
    playwright("e2e/console.spec.ts");
    for page in ["sign-in", "queue", "ticket", "operations"] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }
    playwright("e2e/oidc.spec.ts");
    assert!(shots.join("sign-in-provider.png").exists());

    // Readiness fails (the tasks queue is gone): the indicator says so.
    stack
        .sqs
        .delete_queue()
        .queue_url(stack.queue_url())
        .send()
        .await
        .unwrap();
    playwright("e2e/health.spec.ts");
}

/// Contract fuzzing: schemathesis generates requests from `docs/openapi.yaml` (valid and
/// malformed), sends them to the real binaries with a real token per role, and checks every
/// answer against the description: no 5xx, only documented statuses, content types, headers
/// and bodies, malformed input refused with a 4xx, valid input accepted, and the links
/// (submit → the task → its run; the queue → a ticket) followed. A bounded budget with a fixed
/// seed; `infra/dev fuzz-api` runs a long one.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_contract_failure_against_the_real_binaries() {
    let stack = TestStack::new().await;
    // An open ticket, so the review actions reach their logic (the queue's link leads to it).
    stack.open_ticket().await;
    let http = http_client(30);
    let mut local = LocalProcesses::start_with(
        &stack,
        &http,
        &[
            // Streams end after 2 s (each request must finish) and no limit stops the run.
            ("STREAMS__MAX_SECONDS", "2"),
            ("RATE_LIMIT__ENABLED", "false"),
        ],
    )
    .await;
    local.start_sources();
    let root = workspace_root();
    let out = Command::new(neuraforge_tests::python())
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(root.join("infra/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(root.join("docs/openapi.yaml"))
        .args(["--url", &local.base])
        .args([
            "--checks",
            "all",
            "--seed",
            "20261202",
            "--max-examples",
            "6",
        ])
        // A function's first request under `cargo lambda watch` starts its process.
        .args([
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--max-response-time",
            "30",
        ])
        .arg("--no-color")
        .env("ST_SUBMITTER_TOKEN", token("st-submitter", &["submitter"]))
        .env("ST_ADMIN_TOKEN", token("st-admin", &["review_admin"]))
        .env("ST_OBSERVER_TOKEN", token("st-observer", &["observer"]))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", root.join("infra/schemathesis"))
        // Its example database and reports stay with this test's files.
        .current_dir(&local.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = neuraforge_tests::said(&out);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{said}\n{}",
        local.logs()
    );
    // One operation per route and method.
    let operations: usize = shared::routes::ALL.iter().map(|r| r.methods.len()).sum();
    assert!(
        said.contains(&format!("Tested: {operations}")),
        "every operation was tested:\n{said}"
    );
}
