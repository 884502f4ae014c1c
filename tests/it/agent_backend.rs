//! The OpenAI-compatible agent backend against a local stand-in server, alone
//! and inside real runs on moto.

use neuraforge_tests::TestStack;
use neuraforge_tests::chat_server::{ChatServer, Scripted};
use shared::orchestrator::agents::{AgentBackend, AgentError, AgentRequest, spec};
use shared::orchestrator::engine::Orchestrator;
use shared::orchestrator::openai::{OpenAiBackend, OpenAiConfig};
use shared::tasks::worker::MessageOutcome;
use shared::tasks::{TaskId, TaskStatus};
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

    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
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
    let during = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
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
    let after = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
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

/// A reply asking for `calls` calculator calls (and saying `content`), costing `tokens`.
fn tool_calls(calls: usize, content: &str, tokens: u64) -> Scripted {
    let calls: Vec<serde_json::Value> = (0..calls)
        .map(|i| {
            serde_json::json!({
                "id": i.to_string(), "type": "function",
                "function": {"name": "calculator", "arguments": "{\"expression\":\"2*3\"}"},
            })
        })
        .collect();
    Scripted::raw(
        &serde_json::json!({
            "choices": [{"message": {"content": content, "tool_calls": calls}}],
            "usage": {"total_tokens": tokens},
        })
        .to_string(),
    )
}

/// The task these runs work on: one agent (finance) is routed to it.
fn revenue() -> serde_json::Value {
    serde_json::json!({"prompt": "Revenue 10"})
}

/// Runs one submitted task through an OpenAI-backed orchestrator with extra settings.
async fn run_with(
    stack: &TestStack,
    server: &ChatServer,
    body: serde_json::Value,
    settings: &[(&str, &str)],
) -> (TaskId, MessageOutcome) {
    let mut all = vec![
        ("AGENTS__BACKEND", "openai"),
        ("AGENTS__OPENAI_BASE_URL", server.base_url.as_str()),
        ("AGENTS__OPENAI_MODEL", "test-model"),
        ("AGENTS__MAX_RETRIES", "0"),
        ("AGENTS__TIMEOUT_MS", "2000"),
    ];
    all.extend_from_slice(settings);
    let orchestrator = Orchestrator::from_settings(&stack.sdk, &stack.settings_with(&all)).unwrap();
    let id = stack.submit("alice", &body.to_string()).await;
    let messages = stack.receive(stack.queue_url(), 30).await;
    let record = &stack.sqs_event(&messages).records[0];
    (
        id,
        stack.worker_with(orchestrator).process(record, None).await,
    )
}

#[tokio::test]
async fn an_output_a_guardrail_denies_fails_the_task_for_good() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(Scripted::answer("Step one: build a bomb."));
    let (id, outcome) = run_with(&stack, &server, revenue(), &[]).await;
    assert_eq!(outcome, MessageOutcome::Failed);
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert!(
        task.last_error
            .unwrap()
            .starts_with("output of finance_agent denied by guardrail"),
    );
    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let last: Vec<&str> = log.iter().rev().take(2).map(|e| e.event.as_str()).collect();
    assert_eq!(last, vec!["task_failed", "guardrail_triggered"]);
    assert!(
        !serde_json::to_string(&log)
            .unwrap()
            .contains("build a bomb\""),
        "the denied output is not recorded as an agent's answer"
    );
}

#[tokio::test]
async fn a_run_over_its_token_budget_is_denied() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(tool_calls(0, "Revenue is 10.", 500));
    let budget = [("GUARDRAILS__TOKEN_BUDGET", "100")];
    let (id, outcome) = run_with(&stack, &server, revenue(), &budget).await;
    assert_eq!(outcome, MessageOutcome::Failed);
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(
        task.last_error.unwrap(),
        "run denied by guardrail: 500 tokens exceed the budget of 100"
    );
    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let decisions = shared::tasks::payloads_of(&log, "guardrail_triggered");
    assert!(
        decisions
            .iter()
            .any(|d| d["policy_id"] == "token_budget.v1")
    );
}

#[tokio::test]
async fn tool_calls_past_the_runs_limit_are_refused() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(Scripted::answer("Revenue is 10."));
    server.then(tool_calls(2, "", 40));
    let limit = [("ORCHESTRATOR__MAX_TOOL_CALLS", "1")];
    let (id, outcome) = run_with(&stack, &server, revenue(), &limit).await;
    assert_eq!(outcome, MessageOutcome::Completed);
    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let calls: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.event == "tool_invoked")
        .map(|e| {
            (
                e.payload["outcome"].as_str().unwrap(),
                e.payload["output"]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("ok", ""),
            ("refused", "the run's limit of 1 tool calls is reached")
        ]
    );
}

#[tokio::test]
async fn an_agent_still_asking_for_tools_at_its_turn_limit_answers_with_what_it_has() {
    let stack = TestStack::new().await;
    let server = ChatServer::start(tool_calls(1, "Revenue is probably 10.", 40));
    let turns = [("ORCHESTRATOR__MAX_AGENT_TURNS", "2")];
    let (id, outcome) = run_with(&stack, &server, revenue(), &turns).await;
    assert_eq!(outcome, MessageOutcome::Completed);
    assert_eq!(server.requests().len(), 2, "one request per allowed turn");
    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let completed = log.iter().find(|e| e.event == "agent_completed").unwrap();
    assert_eq!(completed.payload["turns"], 2);
    assert_eq!(completed.payload["content"], "Revenue is probably 10.");
    assert_eq!(log.iter().filter(|e| e.event == "tool_invoked").count(), 1);
}

#[tokio::test]
async fn a_run_past_its_wall_time_is_given_back_for_a_retry() {
    let stack = TestStack::new().await;
    let mut slow = Scripted::answer("late");
    slow.delay = Duration::from_millis(1500);
    let server = ChatServer::start(slow);
    let wall = [("ORCHESTRATOR__WALL_TIME_SECONDS", "1")];
    let (id, outcome) = run_with(&stack, &server, revenue(), &wall).await;
    assert_eq!(
        outcome,
        MessageOutcome::Retry("run exceeded its wall time of 1 s".into())
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::InProgress, "released, not failed");
}

#[tokio::test]
async fn a_deadlocked_negotiation_sends_the_task_to_review() {
    let stack = TestStack::new().await;
    // Two agents answer alike: neither outranks the other, so each keeps its own to the end.
    let server = ChatServer::start(Scripted::answer("Revenue is 10."));
    let body = serde_json::json!({
        "prompt": "Revenue 10",
        "metadata": {"agents": ["finance_agent", "research_agent"]},
    });
    let rounds = [("NEGOTIATION__MAX_ROUNDS", "2")];
    let (id, outcome) = run_with(&stack, &server, body, &rounds).await;
    assert_eq!(outcome, MessageOutcome::AwaitingReview);
    let task = stack.store().get(id).await.unwrap().unwrap();
    let review = task.result.unwrap().review.unwrap();
    assert_eq!(
        review.reasons,
        vec!["negotiation deadlocked after 2 rounds"]
    );
    let ticket = stack
        .reviews()
        .get(review.ticket_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.sources, vec!["negotiation"]);
}

/// The event pages a run wrote (its `PutItem`s on the events table).
fn event_pages(recorder: &neuraforge_tests::recorder::Recorder) -> usize {
    recorder
        .requests("PutItem")
        .iter()
        .filter(|r| r["TableName"].as_str().unwrap().ends_with("EventsTable"))
        .count()
}

#[tokio::test]
async fn events_are_written_before_each_model_turn_and_in_one_page_when_no_step_is_slow() {
    let stack = TestStack::new().await;
    let recorder = neuraforge_tests::recorder::Recorder::default();
    let rec = stack.with_sdk(recorder.sdk(&stack.sdk));

    // The built-in backend answers at once: the whole run is one page.
    stack.submit("alice", &revenue().to_string()).await;
    recorder.take_calls();
    let (_, batch) = rec.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    assert_eq!(event_pages(&recorder), 1);

    // A model over the network: readers see the run so far before each of its turns.
    let server = ChatServer::start(Scripted::answer("The finance view: revenue is 10."));
    let id = stack.submit("alice", &revenue().to_string()).await;
    recorder.take_calls();
    let worker = rec.worker_with(openai_orchestrator(&rec, &server));
    let (_, batch) = rec.deliver_once_with(&worker, 30).await;
    assert!(batch.batch_item_failures.is_empty());
    let turns = server.requests().len();
    assert!(turns >= 1);
    assert_eq!(
        event_pages(&recorder),
        turns + 1,
        "a page before each turn, one at the end"
    );
    let log = stack
        .runs()
        .events_after(id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    assert_eq!(log.last().unwrap().event, "task_completed");
}

#[tokio::test]
async fn the_worker_reads_the_model_key_from_its_ssm_parameter_at_cold_start() {
    use shared::orchestrator::openai::{API_KEY_PARAMETER_SETTING, API_KEY_SETTING};
    let stack = TestStack::new().await;
    let server = ChatServer::start(Scripted::answer("42"));
    let parameter = format!("/neuraforge-test/{}/openai-api-key", uuid::Uuid::new_v4());
    devstack::provision::store_signing_secret(&stack.sdk, &parameter, "sk-from-ssm")
        .await
        .unwrap();
    let base = [
        ("AGENTS__BACKEND", "openai"),
        ("AGENTS__OPENAI_BASE_URL", server.base_url.as_str()),
        ("AGENTS__OPENAI_MODEL", "test-model"),
        (API_KEY_PARAMETER_SETTING, parameter.as_str()),
    ];
    let orchestrator = Orchestrator::load(&stack.sdk, &stack.settings_with(&base))
        .await
        .unwrap();
    let shared::orchestrator::agents::AnyBackend::OpenAi(backend) = &orchestrator.backend else {
        panic!("the openai backend");
    };
    ask(backend).await.unwrap();
    assert_eq!(server.requests()[0].0, "Bearer sk-from-ssm");

    // Two keys configured: start-up refuses rather than picking one.
    let both = [base.as_slice(), &[(API_KEY_SETTING, "sk-plain")]].concat();
    let refused = Orchestrator::load(&stack.sdk, &stack.settings_with(&both))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.setting, API_KEY_SETTING);
    // A parameter that does not exist fails the cold start by name.
    let missing = [
        &base[..3],
        &[(API_KEY_PARAMETER_SETTING, "/neuraforge-test/none")],
    ]
    .concat();
    let refused = Orchestrator::load(&stack.sdk, &stack.settings_with(&missing))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.setting, API_KEY_PARAMETER_SETTING);
}
