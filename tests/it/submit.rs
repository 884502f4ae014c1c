//! POST /api/v1/submit_task against a real moto server.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request, submit_request, token};
use shared::queue::TaskQueue;
use shared::tasks::TaskId;
use shared::tasks::model::TaskStatus;

async fn task_count(stack: &TestStack) -> usize {
    let table = &stack.local.tables["TasksTable"];
    stack
        .dynamodb
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .count() as usize
}

fn submit(body: &str, as_token: &str) -> shared::lambda_http::Request {
    submit_request(as_token, body, None)
}

#[tokio::test]
async fn submit_records_a_queued_task_and_puts_it_on_the_queue() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let response = respond(
        &api,
        submit(
            r#"{"prompt":"Plan the launch","metadata":{"team":"ops"}}"#,
            &token("alice", &["submitter"]),
        ),
    )
    .await;

    assert_eq!(response.status(), 200);
    let body = json_body(&response);
    assert_eq!(body["status"], "queued");
    let task_id = TaskId::parse(body["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        response.headers()["location"],
        format!("/api/v1/tasks/{task_id}")
    );

    let task = stack.store().get(task_id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Queued);
    assert_eq!(task.prompt, "Plan the launch");
    assert_eq!(task.metadata["team"], "ops");
    assert_eq!(task.submitted_by, "alice");
    assert!(
        task.outbox_since.is_some(),
        "the outbox marker stays until a worker claims the task (one write per submission)"
    );

    let messages = stack.receive(stack.queue_url(), 30).await;
    assert_eq!(messages.len(), 1);
    let message: serde_json::Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(message["task_id"], task_id.to_string());
    // Within its grace the sweeper leaves a queued task alone: its message is on the queue.
    assert_eq!(stack.sweeper(60).sweep().await.unwrap().found, 0);
}

#[tokio::test]
async fn submit_accepts_the_v1_payload_form() {
    let stack = TestStack::new().await;
    let response = respond(
        &stack.submit_api(),
        submit(
            r#"{"payload":{"prompt":"wrapped","metadata":{}}}"#,
            &token("alice", &["submitter"]),
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let task_id = TaskId::parse(json_body(&response)["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        stack.store().get(task_id).await.unwrap().unwrap().prompt,
        "wrapped"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_give_the_same_task() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let alice = token("alice", &["submitter"]);
    let send = |body: &str| submit_request(&alice, body, Some("order-42"));
    let first = respond(&api, send(r#"{"prompt":"once","metadata":{"a":1,"b":2}}"#)).await;
    // Same content, other key order and the payload wrapper: still the same request.
    let second = respond(
        &api,
        send(r#"{"payload":{"metadata":{"b":2,"a":1},"prompt":"once"}}"#),
    )
    .await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(json_body(&first)["task_id"], json_body(&second)["task_id"]);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(task_count(&stack).await, 1);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 1);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_a_409() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let alice = token("alice", &["submitter"]);
    let send = |body: &str| submit_request(&alice, body, Some("k1"));
    assert_eq!(
        respond(&api, send(r#"{"prompt":"first"}"#)).await.status(),
        200
    );
    let conflict = respond(&api, send(r#"{"prompt":"second"}"#)).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        json_body(&conflict)["type"],
        "urn:neuraforge:problem:idempotency-key-reused"
    );
    assert_eq!(task_count(&stack).await, 1);
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_principal_that_used_them() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let send = |who: &str| {
        submit_request(
            &token(who, &["submitter"]),
            r#"{"prompt":"x"}"#,
            Some("shared-key"),
        )
    };
    let alice = respond(&api, send("alice")).await;
    let bob = respond(&api, send("bob")).await;
    assert_eq!(bob.status(), 200);
    assert_ne!(json_body(&alice)["task_id"], json_body(&bob)["task_id"]);
}

#[tokio::test]
async fn concurrent_submissions_with_one_key_create_one_task() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let alice = token("alice", &["submitter"]);
    let requests = (0..6).map(|_| {
        respond(
            &api,
            submit_request(&alice, r#"{"prompt":"race"}"#, Some("race-key")),
        )
    });
    let responses = futures_util::future::join_all(requests).await;
    let ids: std::collections::BTreeSet<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status(), 200, "{:?}", json_body(r));
            json_body(r)["task_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every racer got the same task");
    assert_eq!(task_count(&stack).await, 1);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 1);
}

#[tokio::test]
async fn a_key_names_its_task_for_as_long_as_the_task_is_kept() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let alice = token("alice", &["submitter"]);
    let send = |body: &str| submit_request(&alice, body, Some("old-key"));
    let first = respond(&api, send(r#"{"prompt":"first"}"#)).await;
    let task_id = shared::tasks::TaskId::for_idempotency_key("alice", "old-key");
    assert_eq!(json_body(&first)["task_id"], task_id.to_string());
    // The worker has run the task since: a retry still finds it, a reuse still conflicts.
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.local.tables["TasksTable"])
        .key(
            "task_id",
            aws_sdk_dynamodb::types::AttributeValue::S(task_id.to_string()),
        )
        .update_expression("SET #s = :done")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(
            ":done",
            aws_sdk_dynamodb::types::AttributeValue::S("completed".into()),
        )
        .send()
        .await
        .unwrap();
    let retry = respond(&api, send(r#"{"prompt":"first"}"#)).await;
    assert_eq!(retry.status(), 200, "{:?}", json_body(&retry));
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(json_body(&retry)["task_id"], task_id.to_string());
    assert_eq!(
        respond(&api, send(r#"{"prompt":"second"}"#)).await.status(),
        409
    );
    assert_eq!(task_count(&stack).await, 1);
}

#[tokio::test]
async fn bad_submissions_get_a_problem_response_and_write_nothing() {
    let stack = TestStack::new().await;
    let api = stack.submit_api();
    let alice = token("alice", &["submitter"]);
    let observer = token("olga", &["observer"]);
    let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(200 * 1024));
    let cases: Vec<(&str, shared::lambda_http::Request, u16, &str)> = vec![
        (
            "malformed JSON",
            submit(r#"{"prompt": "#, &alice),
            400,
            "malformed-json",
        ),
        (
            "prompt of the wrong type",
            submit(r#"{"prompt": 7}"#, &alice),
            422,
            "validation-error",
        ),
        (
            "empty prompt",
            submit(r#"{"prompt": ""}"#, &alice),
            422,
            "validation-error",
        ),
        (
            "metadata not an object",
            submit(r#"{"prompt":"x","metadata":"y"}"#, &alice),
            422,
            "validation-error",
        ),
        (
            "oversize body",
            submit(&huge, &alice),
            413,
            "payload-too-large",
        ),
        (
            "form body",
            request(
                "POST",
                "/api/v1/submit_task",
                Some(&alice),
                Some("prompt=x"),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .build(),
            415,
            "unsupported-media-type",
        ),
        (
            "wrong method",
            request("GET", "/api/v1/submit_task", Some(&alice), None).build(),
            405,
            "method-not-allowed",
        ),
        (
            "no token",
            request(
                "POST",
                "/api/v1/submit_task",
                None,
                Some(r#"{"prompt":"x"}"#),
            )
            .build(),
            401,
            "unauthorized",
        ),
        (
            "bad token",
            submit(r#"{"prompt":"x"}"#, "not-a-token"),
            401,
            "unauthorized",
        ),
        (
            "no submit scope",
            submit(r#"{"prompt":"x"}"#, &observer),
            403,
            "forbidden",
        ),
        (
            "bad idempotency key",
            submit_request(&alice, r#"{"prompt":"x"}"#, Some("has spaces")),
            400,
            "bad-request",
        ),
    ];
    for (why, req, status, slug) in cases {
        let response = respond(&api, req).await;
        assert_eq!(response.status(), status, "{why}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{why}"
        );
        let body = json_body(&response);
        assert_eq!(
            body["type"],
            format!("urn:neuraforge:problem:{slug}"),
            "{why}"
        );
        assert!(
            body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{why}"
        );
        assert!(body["detail"].as_str().is_some(), "{why}");
    }
    assert_eq!(task_count(&stack).await, 0);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);
}

/// A queue URL SQS refuses (no such queue).
fn missing_queue(stack: &TestStack) -> TaskQueue {
    TaskQueue::new(&stack.sdk, format!("{}-missing", stack.queue_url()))
}

/// Submits while SQS refuses the send: the DynamoDB write succeeds, the send fails.
async fn submit_while_sqs_refuses(stack: &TestStack, body: &str) -> TaskId {
    let api = stack.submit_api_with_queue(missing_queue(stack));
    let response = respond(&api, submit(body, &token("alice", &["submitter"]))).await;
    assert_eq!(
        response.status(),
        200,
        "the task was accepted: it is recorded"
    );
    TaskId::parse(json_body(&response)["task_id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_failed_enqueue_loses_nothing_the_sweeper_enqueues_it() {
    let stack = TestStack::new().await;
    let task_id = submit_while_sqs_refuses(&stack, r#"{"prompt":"must not be lost"}"#).await;
    let task = stack.store().get(task_id).await.unwrap().unwrap();
    assert_eq!(
        task.outbox_since,
        Some(0),
        "the failed send made the outbox marker due at once"
    );
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);

    // The next sweep sends it, however long the grace for unclaimed tasks.
    let report = stack.sweeper(3600).sweep().await.unwrap();
    assert_eq!((report.found, report.enqueued, report.failed), (1, 1, 0));
    assert_eq!(
        stack.sweeper(60).sweep().await.unwrap().found,
        0,
        "a swept task is not swept again within the grace"
    );

    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    let task = stack.store().get(task_id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.outbox_since, None, "the claim removed the marker");
    assert_eq!(stack.sweeper(0).sweep().await.unwrap().found, 0);
}

#[tokio::test]
async fn a_sweeper_that_cannot_reach_sqs_keeps_the_marker_for_the_next_run() {
    let stack = TestStack::new().await;
    let task_id = submit_while_sqs_refuses(&stack, r#"{"prompt":"x"}"#).await;

    let mut sweeper = stack.sweeper(0);
    sweeper.queue = missing_queue(&stack);
    let report = sweeper.sweep().await.unwrap();
    assert_eq!((report.found, report.enqueued, report.failed), (1, 0, 1));
    assert!(
        stack
            .store()
            .get(task_id)
            .await
            .unwrap()
            .unwrap()
            .outbox_since
            .is_some()
    );
    assert_eq!(stack.sweeper(0).sweep().await.unwrap().enqueued, 1);
}

#[tokio::test]
async fn a_sweep_takes_at_most_its_per_run_cap_and_the_next_runs_take_the_rest() {
    let stack = TestStack::new().await;
    for i in 0..5 {
        submit_while_sqs_refuses(&stack, &format!(r#"{{"prompt":"backlog {i}"}}"#)).await;
    }
    let settings = stack.settings_with(&[
        ("OUTBOX__GRACE_SECONDS", "60"),
        ("OUTBOX__MAX_PER_RUN", "2"),
    ]);
    let sweeper = shared::tasks::outbox::OutboxSweeper {
        store: stack.store(),
        queue: stack.queue(),
        config: shared::tasks::outbox::OutboxConfig::from_settings(&settings).unwrap(),
    };
    let mut found = Vec::new();
    for _ in 0..4 {
        found.push(sweeper.sweep().await.unwrap().found);
    }
    assert_eq!(found, vec![2, 2, 1, 0]);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 5);
}
