//! Rate limits on moto: headers, refusals, exactness under concurrency,
//! window rollover, and what happens when the counter table is unreachable.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, submit_request, token};
use shared::ratelimit::{RateLimitPolicy, RateLimiter};

fn policy(capacity: u32, window_seconds: u32, fail_open: bool) -> RateLimitPolicy {
    RateLimitPolicy {
        action: "task_submission",
        capacity,
        window_seconds,
        fail_open,
    }
}

fn limiter(stack: &TestStack) -> RateLimiter {
    RateLimiter::from_settings(&stack.sdk, &stack.settings()).unwrap()
}

#[tokio::test]
async fn submissions_show_what_is_left_and_the_one_over_the_limit_is_a_429() {
    let stack = TestStack::new().await;
    let capacity = [("RATE_LIMIT__TASK_SUBMISSION__CAPACITY", "3")];
    let settings = stack.settings_with(&capacity);
    // Every request in the middle of one window: no window boundary can fall between them.
    let mid_window = shared::time::now_millis() / 60_000 * 60_000 + 30_000;
    let api = shared::tasks::submit::SubmitTaskApi {
        ledger: shared::tasks::ledger::SubmissionLedger::from_settings(&stack.sdk, &settings)
            .unwrap()
            .with_clock(shared::time::Clock::fixed(mid_window)),
        ..stack.submit_api_with(stack.settings_with(&capacity))
    };
    let alice = token("alice", &["submitter"]);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = respond(&api, submit_request(&alice, r#"{"prompt":"x"}"#, None)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"task_submission\";q=3;w=60"
        );
        let header = response.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .to_string();
        remaining.push(header.split(';').nth(1).unwrap().to_string());
    }
    assert_eq!(remaining, vec!["r=2", "r=1", "r=0"]);

    let refused = respond(&api, submit_request(&alice, r#"{"prompt":"x"}"#, None)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        json_body(&refused)["type"],
        "urn:neuraforge:problem:rate-limited"
    );
    assert_eq!(
        refused.headers()["retry-after"],
        "30",
        "the rest of the window"
    );
    assert!(
        refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("r=0")
    );
    assert_eq!(
        stack.queue_depth(stack.queue_url()).await,
        3,
        "the refused submission wrote nothing"
    );

    // Another principal has its own budget.
    let bob = respond(
        &api,
        submit_request(&token("bob", &["submitter"]), r#"{"prompt":"x"}"#, None),
    )
    .await;
    assert_eq!(bob.status(), 200);
}

#[tokio::test]
async fn parallel_requests_against_a_limit_of_l_admit_exactly_l() {
    let stack = TestStack::new().await;
    let limiter = limiter(&stack);
    let policy = policy(7, 60, false);
    let now = shared::time::now_millis();
    let attempts = (0..25).map(|_| limiter.admit(&policy, "alice", now));
    let results = futures_util::future::join_all(attempts).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(shared::http::problem::ApiError::RateLimited { .. })))
        .count();
    assert_eq!((admitted, refused), (7, 18));
}

#[tokio::test]
async fn a_new_window_starts_a_new_count() {
    let stack = TestStack::new().await;
    let limiter = limiter(&stack);
    let policy = policy(2, 10, false);
    // The start of a 10 s window, and a moment in the next one.
    let window_start = (shared::time::now_millis() / 10_000) * 10_000;
    for _ in 0..2 {
        assert!(
            limiter
                .admit(&policy, "alice", window_start + 1_000)
                .await
                .is_ok()
        );
    }
    let over = limiter.admit(&policy, "alice", window_start + 9_000).await;
    match over {
        Err(shared::http::problem::ApiError::RateLimited {
            retry_after_seconds,
            ..
        }) => assert_eq!(retry_after_seconds, 1),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The old window's counter still exists (TTL has not run); it is simply never read again.
    let next = limiter
        .admit(&policy, "alice", window_start + 10_500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.remaining, next.reset_seconds), (Some(1), 10));
}

#[tokio::test]
async fn an_unreachable_limiter_fails_closed_by_default_and_open_when_configured() {
    let stack = TestStack::new().await;
    let broken = RateLimiter::new(&stack.sdk, "no-such-table", true);
    let now = shared::time::now_millis();
    assert!(matches!(
        broken.admit(&policy(5, 60, false), "alice", now).await,
        Err(shared::http::problem::ApiError::Unavailable { .. })
    ));
    let open = broken
        .admit(&policy(5, 60, true), "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.remaining, None, "admitted, with no count to report");
    assert_eq!(open.headers().len(), 1, "only the policy header");

    // Through the API, fail-closed is a 503 problem with Retry-After, and nothing is written.
    let mut api = stack.submit_api();
    api.ledger = shared::tasks::ledger::SubmissionLedger::new(
        &stack.sdk,
        "no-such-table",
        true,
        &Default::default(),
    );
    let response = respond(
        &api,
        submit_request(&token("alice", &["submitter"]), r#"{"prompt":"x"}"#, None),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);
}

#[tokio::test]
async fn a_disabled_limiter_admits_everything_without_headers() {
    let stack = TestStack::new().await;
    let settings = stack.settings_with(&[
        ("RATE_LIMIT__ENABLED", "false"),
        ("RATE_LIMIT__TASK_SUBMISSION__CAPACITY", "1"),
    ]);
    let api = stack.submit_api_with(settings);
    for _ in 0..3 {
        let response = respond(
            &api,
            submit_request(&token("alice", &["submitter"]), r#"{"prompt":"x"}"#, None),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
    }
}
