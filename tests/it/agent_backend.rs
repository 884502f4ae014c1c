//! The OpenAI-compatible agent backend against a local stand-in server, alone
//! and inside real runs on moto.

use neuraforge_tests::TestStack;
use neuraforge_tests::chat_server::{ChatServer, Scripted};
use shared::orchestrator::agents::{AgentBackend, AgentError, AgentRequest, spec};
use shared::orchestrator::engine::Orchestrator;
use shared::orchestrator::openai::{OpenAiBackend, OpenAiConfig};
use shared::tasks::TaskStatus;
use shared::tasks::worker::MessageOutcome;
use std::time::Duration;

fn config(server: &ChatServer, retries: u32, timeout_ms: u64) -> OpenAiConfig {
    OpenAiConfig {
        base_url: server.base_url.clone(),
        model: "test-model".into(),
        api_key: Some("sk-test".into()),
        timeout: Duration::from_millis(timeout_ms),
        max_retries: retries,
        backoff: Duration::from_millis(5),
    }
}

fn backend(server: &ChatServer, retries: u32, timeout_ms: u64) -> OpenAiBackend {
    OpenAiBackend::new(config(server, retries, timeout_ms))
}

async fn ask(
    backend: &OpenAiBackend,
) -> Result<shared::orchestrator::agents::AgentReply, AgentError> {
    let metadata = serde_json::Map::new();
    let agent = spec("finance_agent").unwrap();
    let request = AgentRequest {
        agent,
        prompt: "What is 6 * 7?",
        metadata: &metadata,
        tools: agent.tools.to_vec(),
        tool_results: vec![],
    };
    backend.complete(&request).await
}

#[tokio::test]
async fn the_backend_sends_the_agent_turn_and_reads_tool_calls() {
    let server = ChatServer::start(Scripted::raw(
        r#"{"choices":[{"message":{"tool_calls":[{"id":"c1","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"6 * 7\"}"}}]}}],"usage":{"total_tokens":12}}"#,
    ));
    let reply = ask(&backend(&server, 0, 2000)).await.unwrap();
    assert_eq!(reply.tool_calls[0].tool, "calculator");
    assert_eq!(reply.tool_calls[0].input["expression"], "6 * 7");
    let (auth, body) = &server.requests()[0];
    assert_eq!(auth, "Bearer sk-test");
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["messages"][1]["content"], "What is 6 * 7?");
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        vec!["calculator", "json_query"],
        "only the agent's allowed tools are offered"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_backoff() {
    let server = ChatServer::start(Scripted::answer("Forty-two."));
    let mut throttled = Scripted::status(429);
    throttled.headers.push(("Retry-After".into(), "0".into()));
    server.then(Scripted::status(503)).then(throttled);
    let backoff = Duration::from_millis(150);
    let backend = OpenAiBackend::new(OpenAiConfig {
        backoff,
        ..config(&server, 2, 2000)
    });
    let reply = ask(&backend).await.unwrap();
    assert_eq!(reply.content, "Forty-two.");
    let at = server.arrivals();
    assert_eq!(at.len(), 3);
    // After the 503 the backend waits its backoff; after the 429 it waits what
    // `Retry-After` says (nothing), not the doubled backoff.
    assert!(at[1] - at[0] >= backoff, "{:?}", at[1] - at[0]);
    assert!(at[2] - at[1] < backoff * 2, "{:?}", at[2] - at[1]);
}

#[tokio::test]
async fn the_backend_gives_up_after_its_retries() {
    let server = ChatServer::start(Scripted::status(500));
    assert_eq!(
        ask(&backend(&server, 1, 2000)).await,
        Err(AgentError::Unavailable("HTTP 500".into()))
    );
    assert_eq!(server.requests().len(), 2);
    let refused = ChatServer::start(Scripted::status(400));
    assert_eq!(
        ask(&backend(&refused, 3, 2000)).await,
        Err(AgentError::BadReply("HTTP 400".into()))
    );
    assert_eq!(refused.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn a_slow_backend_times_out() {
    let mut slow = Scripted::answer("late");
    slow.delay = Duration::from_millis(1500);
    let server = ChatServer::start(slow);
    assert_eq!(
        ask(&backend(&server, 0, 300)).await,
        Err(AgentError::Timeout)
    );
}

fn openai_orchestrator(
    stack: &TestStack,
    server: &ChatServer,
) -> Orchestrator<shared::orchestrator::agents::AnyBackend> {
    let settings = stack.settings_with(&[
        ("AGENTS__BACKEND", "openai"),
        ("AGENTS__OPENAI_BASE_URL", &server.base_url),
        ("AGENTS__OPENAI_MODEL", "test-model"),
        ("AGENTS__MAX_RETRIES", "0"),
        ("AGENTS__TIMEOUT_MS", "2000"),
    ]);
    Orchestrator::from_settings(&stack.sdk, &settings).unwrap()
}

fn names(events: &[shared::tasks::events::TaskEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e.agent() {
            Some(agent) => format!("{}:{agent}", e.event),
            None => e.event.clone(),
        })
        .collect()
}

#[tokio::test]
async fn garbage_from_the_backend_fails_the_step_and_the_fallback_agent_takes_over() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(Scripted::answer("The research view: revenue is 10."));
    server.then(Scripted::raw("<html>upstream error</html>"));
    let id = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    let worker = stack.worker_with(openai_orchestrator(&stack, &server));
    let messages = stack.receive(stack.queue_url(), 30).await;
    assert_eq!(
        worker
            .process(&stack.sqs_event(&messages).records[0], None)
            .await,
        MessageOutcome::Completed
    );

    let log = stack.runs().events_after(id, 0, 100).await.unwrap();
    assert_eq!(
        names(&log),
        vec![
            "task_started",
            "routing_decided",
            "agent_started:finance_agent",
            "agent_failed:finance_agent",
            "agent_started:research_agent",
            "agent_completed:research_agent",
            "negotiation_round",
            "task_completed",
        ]
    );
    assert_eq!(
        log[3].payload["reason"],
        "agent backend returned an unusable reply: the response is not JSON"
    );
    assert_eq!(
        (
            log[3].payload["fallback"].as_str(),
            log[3].payload["retryable"].as_bool()
        ),
        (Some("research_agent"), Some(false))
    );
    assert_eq!(log[4].payload["fallback_for"], "finance_agent");
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.result.unwrap().executor, "orchestrator/openai");
}

#[tokio::test]
async fn a_backend_outage_retries_the_delivery_and_the_run_resumes_without_repeating_events() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(Scripted::status(503));
    let id = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    let worker = stack.worker_with(openai_orchestrator(&stack, &server));

    let first = stack.receive(stack.queue_url(), 0).await;
    let outcome = worker
        .process(&stack.sqs_event(&first).records[0], None)
        .await;
    assert!(matches!(outcome, MessageOutcome::Retry(_)), "{outcome:?}");
    let during = stack.runs().events_after(id, 0, 100).await.unwrap();
    assert_eq!(
        names(&during),
        vec![
            "task_started",
            "routing_decided",
            "agent_started:finance_agent",
            "agent_failed:finance_agent",
            "agent_started:research_agent",
            "agent_failed:research_agent",
            "agent_started:general_agent",
            "agent_failed:general_agent",
        ]
    );
    assert_eq!(during[7].payload["retryable"], true);
    assert_eq!(
        stack.store().get(id).await.unwrap().unwrap().status,
        TaskStatus::InProgress
    );

    // The provider recovers; the message comes back.
    server.set_default(Scripted::answer("General answer: revenue is 10."));
    let second = stack.receive(stack.queue_url(), 0).await;
    assert_eq!(
        worker
            .process(&stack.sqs_event(&second).records[0], None)
            .await,
        MessageOutcome::Completed
    );
    let after = stack.runs().events_after(id, 0, 100).await.unwrap();
    assert_eq!(
        &after[..during.len()],
        &during[..],
        "the events already written are kept as they were"
    );
    assert_eq!(
        names(&after[during.len()..]),
        vec![
            "agent_completed:general_agent",
            "negotiation_round",
            "task_completed"
        ],
        "the retry goes on from the failed step; the memoized failures are not asked again"
    );
    assert_eq!(
        after.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=after.len() as u64).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_run_over_its_wall_time_is_retried_not_failed_for_good() {
    let stack = TestStack::new().await;
    let mut slow = Scripted::answer("late but fine");
    slow.delay = Duration::from_millis(2500);
    let server = ChatServer::start(slow);
    let settings = stack.settings_with(&[
        ("AGENTS__BACKEND", "openai"),
        ("AGENTS__OPENAI_BASE_URL", &server.base_url),
        ("AGENTS__OPENAI_API_KEY", "sk-test"),
        ("AGENTS__TIMEOUT_MS", "10000"),
        ("ORCHESTRATOR__WALL_TIME_SECONDS", "1"),
    ]);
    let worker = stack.worker_with(Orchestrator::from_settings(&stack.sdk, &settings).unwrap());
    let id = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    let messages = stack.receive(stack.queue_url(), 0).await;
    let outcome = worker
        .process(&stack.sqs_event(&messages).records[0], None)
        .await;
    assert!(
        matches!(&outcome, MessageOutcome::Retry(r) if r.contains("wall time")),
        "{outcome:?}"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(
        task.status,
        TaskStatus::InProgress,
        "released for the next delivery, not failed"
    );
}

#[tokio::test]
async fn the_worker_sizes_its_work_from_the_time_the_invocation_has_left() {
    use shared::tasks::worker::{MIN_EXECUTION, SETTLE_MARGIN};
    use std::time::Instant;
    let stack = TestStack::new().await;
    let mut slow = Scripted::answer("too slow");
    slow.delay = Duration::from_secs(3);
    let server = ChatServer::start(slow);
    let worker = stack.worker_with(openai_orchestrator(&stack, &server));

    // Too little time left: the message goes back untouched (no claim, no attempt).
    let id = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    let messages = stack.receive(stack.queue_url(), 0).await;
    let record = &stack.sqs_event(&messages).records[0];
    let short = Instant::now() + SETTLE_MARGIN + MIN_EXECUTION - Duration::from_millis(500);
    let outcome = worker.process(record, Some(short)).await;
    assert!(
        matches!(&outcome, MessageOutcome::Retry(r) if r.starts_with("not started")),
        "{outcome:?}"
    );
    let untouched = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(
        (untouched.status, untouched.attempts),
        (TaskStatus::Queued, 0)
    );

    // Enough to start but not to finish: stopped before the deadline, retried, not failed.
    let deadline = Instant::now() + SETTLE_MARGIN + Duration::from_secs(6);
    let outcome = worker.process(record, Some(deadline)).await;
    assert!(matches!(outcome, MessageOutcome::Retry(_)), "{outcome:?}");
    assert!(
        Instant::now() < deadline,
        "the outcome was recorded before the deadline"
    );
    assert_ne!(
        stack.store().get(id).await.unwrap().unwrap().status,
        TaskStatus::Failed
    );
}

#[tokio::test]
async fn an_oversize_reply_fails_the_step_without_being_read_whole() {
    let huge = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
        "x".repeat(3 * shared::orchestrator::openai::MAX_RESPONSE_BYTES)
    );
    let server = ChatServer::start(Scripted::raw(&huge));
    let err = ask(&backend(&server, 0, 5000)).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::BadReply(m) if m.contains("over")),
        "{err:?}"
    );
}
