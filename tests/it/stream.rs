//! The event stream's own behaviour on moto: heartbeats while nothing happens,
//! and a clean end before the time limit, so the client resumes with Last-Event-ID.

use neuraforge_tests::{TestStack, get_as, next_chunk};
use shared::tasks::stream::{StreamConfig, TaskEventsApi};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_idle_stream_sends_heartbeats_then_closes_cleanly_before_its_time_limit() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"nobody runs this task"}"#)
        .await;
    let api = stack.events_api(StreamConfig {
        poll_interval: Duration::from_millis(50),
        heartbeat: Duration::from_millis(200),
        max_duration: Duration::from_millis(900),
        ..StreamConfig::default()
    });
    let req = get_as("alice", &["submitter"], "task_id", &id.to_string());
    let started = Instant::now();
    let mut body = neuraforge_tests::pipeline()
        .respond_streaming(&api, req)
        .await
        .into_body();
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

/// Events streams under a cap of `max` per principal, each taking its slot after `hold_after` s.
fn capped_api(stack: &TestStack, max: &str, hold_after: &str) -> TaskEventsApi {
    let settings = stack.settings_with(&[
        ("STREAMS__MAX_PER_PRINCIPAL", max),
        ("STREAMS__SLOT_AFTER_SECONDS", hold_after),
    ]);
    TaskEventsApi {
        slots: shared::ratelimit::StreamSlots::from_settings(&stack.sdk, &settings).unwrap(),
        ..stack.events_api(StreamConfig {
            poll_interval: Duration::from_millis(20),
            // Short heartbeats notice a gone client quickly.
            heartbeat: Duration::from_millis(50),
            ..StreamConfig::default()
        })
    }
}

#[tokio::test]
async fn a_principal_holds_a_bounded_number_of_streams_and_a_closed_one_frees_its_slot() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"nobody runs this task"}"#)
        .await;
    let api = capped_api(&stack, "2", "0");
    let open = |who: &str| {
        let roles: &[&str] = if who == "alice" {
            &["submitter"]
        } else {
            &["observer"]
        };
        get_as(who, roles, "task_id", &id.to_string())
    };
    let first = neuraforge_tests::pipeline()
        .respond_streaming(&api, open("alice"))
        .await;
    let second = neuraforge_tests::pipeline()
        .respond_streaming(&api, open("alice"))
        .await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    // Streams carry user text too: the same protective headers as every other response.
    assert_eq!(first.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        first.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    // Both streams take their slots as they start; a third is refused at the door.
    wait_for_streams_counted(&stack, 2).await;
    let third = neuraforge_tests::pipeline()
        .respond_streaming(&api, open("alice"))
        .await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    // Another principal is not affected.
    let olga = neuraforge_tests::pipeline()
        .respond_streaming(&api, open("olga"))
        .await;
    assert_eq!(olga.status(), 200);

    // Closing a stream gives its slot back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = neuraforge_tests::pipeline()
            .respond_streaming(&api, open("alice"))
            .await;
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((second, olga));
}

/// Waits until the rate-limits table counts `n` open streams (of the one principal streaming).
async fn wait_for_streams_counted(stack: &TestStack, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counted = stack
            .scan("RateLimitsTable")
            .await
            .into_iter()
            .find(|i| i["limit_key"].as_s().unwrap().starts_with("streams#"))
            .and_then(|i| i["streams"].as_n().ok()?.parse::<u32>().ok());
        if counted == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "streams counted: {counted:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_short_stream_writes_no_slot_and_one_that_outlives_the_grace_past_the_cap_closes() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"nobody runs this task"}"#)
        .await;
    let api = TaskEventsApi {
        config: StreamConfig {
            max_duration: Duration::from_secs(4),
            ..capped_api(&stack, "1", "1").config
        },
        ..capped_api(&stack, "1", "1")
    };
    let open = || get_as("alice", &["submitter"], "task_id", &id.to_string());
    let started = Instant::now();
    // Two streams over a cap of one both open: neither has been open long enough to count.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = neuraforge_tests::pipeline()
            .respond_streaming(&api, open())
            .await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        streams.push(tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(chunk) = next_chunk(&mut body).await {
                chunks.push(chunk);
            }
            (chunks, started.elapsed())
        }));
    }
    let counted = stack
        .scan("RateLimitsTable")
        .await
        .into_iter()
        .filter(|i| i["limit_key"].as_s().unwrap().starts_with("streams#"))
        .count();
    assert_eq!(counted, 0, "no slot is written before the grace");
    // A second in, both try to take the one slot: one holds it, the other is refused.
    wait_for_streams_counted(&stack, 1).await;
    let third = neuraforge_tests::pipeline()
        .respond_streaming(&api, open())
        .await;
    assert_eq!(
        third.status(),
        429,
        "while one is counted, a new stream is refused at once"
    );
    let mut ended = Vec::new();
    for stream in streams {
        ended.push(
            tokio::time::timeout(Duration::from_secs(10), stream)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    ended.sort_by_key(|(_, at)| *at);
    let (refused, refused_at) = &ended[0];
    let last = refused.last().unwrap();
    assert!(last.contains("too many open streams"), "{last}");
    assert!(last.contains("reconnect with Last-Event-ID"), "{last}");
    assert!(last.contains("retry: 10000"), "{last}");
    assert!(*refused_at < Duration::from_secs(3), "{refused_at:?}");
    let (held, held_until) = &ended[1];
    assert!(
        held.last().unwrap().contains("stream closing") && *held_until >= Duration::from_secs(3),
        "the stream that holds the slot runs to its time limit: {held:?} {held_until:?}"
    );
    wait_for_streams_counted(&stack, 0).await;
}

#[tokio::test]
async fn slots_of_streams_that_died_without_releasing_expire() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = TestStack::new().await;
    let slots = shared::ratelimit::StreamSlots::from_settings(
        &stack.sdk,
        &stack.settings_with(&[("STREAMS__MAX_PER_PRINCIPAL", "1")]),
    )
    .unwrap();
    let now = shared::time::now_millis();
    // Held and never released: an environment that died mid-stream.
    let held = slots.acquire("alice", now).await.unwrap();
    assert!(held.is_some());
    assert!(slots.acquire("alice", now).await.is_err());
    // Past the longest a stream can live, the counter starts over.
    let later = now + (shared::ratelimit::STREAM_LIFETIME_LIMIT as i64 + 1) * 1000;
    assert!(slots.acquire("alice", later).await.unwrap().is_some());
    let counter = stack
        .scan("RateLimitsTable")
        .await
        .into_iter()
        .find(|i| i["limit_key"].as_s().unwrap().starts_with("streams#"))
        .unwrap();
    assert_eq!(counter["streams"], AttributeValue::N("1".into()));
}

#[tokio::test]
async fn an_idle_stream_polls_less_and_less_and_reads_the_task_status_once() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"nobody runs this task"}"#)
        .await;
    let recorder = neuraforge_tests::recorder::Recorder::default();
    let rec = stack.with_sdk(recorder.sdk(&stack.sdk));
    let api = rec.events_api(StreamConfig {
        max_duration: Duration::from_millis(2_000),
        ..StreamConfig::default()
    });
    let req = get_as("alice", &["submitter"], "task_id", &id.to_string());
    let mut body = neuraforge_tests::pipeline()
        .respond_streaming(&api, req)
        .await
        .into_body();
    while next_chunk(&mut body).await.is_some() {}

    // 250 ms doubling to 2 s: polls at 0, 0.25, 0.75, 1.75 s (a fixed 250 ms would poll 8 times).
    let polls = recorder.requests("Query").len();
    assert!((3..=5).contains(&polls), "{polls} polls in 2 s");
    let reads = recorder.requests("GetItem");
    let projected = |p: &str| {
        reads
            .iter()
            .filter(|r| r.get("ProjectionExpression").and_then(|v| v.as_str()) == Some(p))
            .count()
    };
    assert_eq!(
        reads
            .iter()
            .filter(|r| r.get("ProjectionExpression").is_none())
            .count(),
        1,
        "the task is read whole once, to authorize the stream"
    );
    assert_eq!(
        projected("streams, expires_at"),
        1,
        "the principal's open streams are looked at once, as it opens"
    );
    // Nothing happened since: the status is read on the first quiet poll, not on every one.
    assert_eq!(projected("#status"), 1, "{reads:?}");
    assert!(
        reads
            .iter()
            .filter(|r| r.get("ProjectionExpression").is_some())
            .all(|r| r.get("ConsistentRead").is_none()),
        "the status and the counter are read eventually consistent"
    );
    // A two-second stream takes no slot: nothing is written to the rate-limits table.
    assert!(recorder.requests("UpdateItem").is_empty());
}

/// The ids of the events among `chunks` (each chunk is one SSE message).
fn event_ids(chunks: &[String]) -> Vec<u64> {
    chunks
        .iter()
        .filter_map(|c| c.strip_prefix("id: ")?.split('\n').next()?.parse().ok())
        .collect()
}

/// Reads chunks until `done` holds for what was read, or the stream ends.
async fn read_until(
    body: &mut shared::http::ChannelBody,
    done: impl Fn(&[String]) -> bool,
) -> (Vec<String>, bool) {
    let mut chunks = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), next_chunk(body))
            .await
            .expect("the stream went quiet")
        {
            Some(chunk) => chunks.push(chunk),
            None => return (chunks, true),
        }
        if done(&chunks) {
            return (chunks, false);
        }
    }
}

#[tokio::test]
async fn a_client_that_drops_mid_run_resumes_after_its_last_event_id_without_gaps_or_repeats() {
    use shared::tasks::{TaskEvent, run_id_for};
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"a run written by hand"}"#)
        .await;
    let runs = stack.runs();
    let append = |sequence: u64, name: &'static str| {
        let runs = runs.clone();
        async move {
            let payload = serde_json::json!({ "agent": "finance_agent", "n": sequence });
            let at = shared::time::now_millis();
            let event = TaskEvent::new(id, Some(run_id_for(id)), sequence, name, payload, at);
            runs.append_event(&event).await.unwrap();
        }
    };
    for sequence in 1..=3 {
        append(sequence, "agent_started").await;
    }
    let api = stack.events_api(StreamConfig {
        poll_interval: Duration::from_millis(20),
        max_poll_interval: Duration::from_millis(40),
        ..StreamConfig::default()
    });
    let pipeline = neuraforge_tests::pipeline();
    let open = |last_event_id: Option<&str>| {
        let mut req = get_as("alice", &["submitter"], "task_id", &id.to_string());
        if let Some(last) = last_event_id {
            req.headers_mut()
                .insert("last-event-id", last.parse().unwrap());
        }
        pipeline.respond_streaming(&api, req)
    };

    // The client reads the first three events of a run still going, then drops.
    let mut first = open(None).await.into_body();
    let (chunks, ended) = read_until(&mut first, |c| event_ids(c).len() == 3).await;
    assert!(!ended, "the run is not over: the stream stays open");
    assert_eq!(event_ids(&chunks), vec![1, 2, 3]);
    drop(first);

    // The run goes on while nobody listens; the client comes back after event 3.
    for sequence in 4..=5 {
        append(sequence, "agent_completed").await;
    }
    let mut resumed = open(Some("3")).await.into_body();
    let (before_end, ended) = read_until(&mut resumed, |c| event_ids(c).len() == 2).await;
    assert!(!ended);
    assert_eq!(
        event_ids(&before_end),
        vec![4, 5],
        "nothing missed, nothing repeated"
    );

    // Events written while it listens arrive too, and the terminal one ends the stream.
    append(6, "agent_completed").await;
    append(7, "task_completed").await;
    let (rest, ended) = read_until(&mut resumed, |_| false).await;
    assert!(ended, "the stream ends after the terminal event");
    assert_eq!(event_ids(&rest), vec![6, 7]);
}
