//! The event stream's own behaviour on moto: heartbeats while nothing happens,
//! and a clean end before the time limit, so the client resumes with Last-Event-ID.

use neuraforge_tests::{TestStack, next_chunk, request, token};
use shared::orchestrator::stream::{StreamConfig, TaskEventsApi};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_idle_stream_sends_heartbeats_then_closes_cleanly_before_its_time_limit() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"nobody runs this task"}"#)
        .await;
    let api = TaskEventsApi {
        auth: shared::auth::Authenticator::from_settings(&stack.settings()).unwrap(),
        reads: stack.reads(),
        tasks: stack.store(),
        runs: stack.runs(),
        config: StreamConfig {
            poll_interval: Duration::from_millis(50),
            heartbeat: Duration::from_millis(200),
            max_duration: Duration::from_millis(900),
            ..StreamConfig::default()
        },
        route: &shared::routes::TASK_EVENTS,
        auditor: None,
    };
    let req = request("GET", "/x", Some(&token("alice", &["submitter"])), None)
        .path_param("task_id", &id.to_string())
        .build();
    let started = Instant::now();
    let mut body = api.respond(req).await.into_body();
    let mut chunks = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), next_chunk(&mut body))
        .await
        .unwrap()
    {
        chunks.push(chunk);
    }
    let elapsed = started.elapsed();
    assert_eq!(chunks.first().map(String::as_str), Some("retry: 2000\n\n"));
    let heartbeats = chunks
        .iter()
        .filter(|c| c.as_str() == ": heartbeat\n\n")
        .count();
    assert!((2..=5).contains(&heartbeats), "{chunks:?}");
    assert!(
        chunks
            .last()
            .unwrap()
            .contains("reconnect with Last-Event-ID"),
        "{chunks:?}"
    );
    assert!(
        chunks.iter().all(|c| !c.starts_with("id:")),
        "no events were invented"
    );
    assert!(
        elapsed >= Duration::from_millis(850) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}
