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
    // The submission wrote the task and nothing else: the stream carries it to the queue.
    assert_eq!(stack.queue_depth_now(stack.queue_url()).await, 0);
    let messages = stack.receive(stack.queue_url(), 30).await;
    assert_eq!(messages.len(), 1);
    let message: serde_json::Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(message["task_id"], task_id.to_string());
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

/// The sequence number of a stream record.
fn sequence(record: &aws_lambda_events::event::dynamodb::EventRecord) -> Option<String> {
    record.change.sequence_number.clone()
}

#[tokio::test]
async fn a_failed_enqueue_loses_nothing_the_stream_retries_from_the_first_unsent_task() {
    let stack = TestStack::new().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            stack
                .submit("alice", &format!(r#"{{"prompt":"keep {i}"}}"#))
                .await,
        );
    }
    let event = stack.new_task_records().await;
    assert_eq!(event.records.len(), 3, "one INSERT per accepted task");

    // SQS refuses: the enqueuer names the first record, so the mapping retries from there.
    let failed = stack
        .enqueuer_with(missing_queue(&stack))
        .handle(event.clone())
        .await;
    let named: Vec<Option<String>> = failed
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(named, vec![sequence(&event.records[0])]);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);

    // The retry (the same records) sends every task, and each one runs.
    let retried = stack.enqueuer_with(stack.queue()).handle(event).await;
    assert!(retried.batch_item_failures.is_empty());
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 3);
    stack.deliver_once(30).await;
    for id in ids {
        let task = stack.store().get(id).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Completed);
    }
}

#[tokio::test]
async fn only_new_tasks_are_enqueued_never_a_tasks_later_changes() {
    let stack = TestStack::new().await;
    let task_id = stack.submit("alice", r#"{"prompt":"once"}"#).await;
    stack.deliver_once(30).await;
    assert_eq!(
        stack.store().get(task_id).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
    // The worker's writes are MODIFY records: none of them puts the task back on the queue.
    let later = stack.new_task_records().await;
    assert!(!later.records.is_empty(), "the run changed the task");
    assert!(later.records.iter().all(|r| r.event_name == "MODIFY"));
    let response = stack.enqueuer_with(stack.queue()).handle(later).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(stack.queue_depth_now(stack.queue_url()).await, 0);
}

#[tokio::test]
async fn a_batch_of_many_new_tasks_is_sent_ten_to_a_call_in_order() {
    let stack = TestStack::new().await;
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(
            stack
                .submit("bob", &format!(r#"{{"prompt":"bulk {i}"}}"#))
                .await,
        );
    }
    let event = stack.new_task_records().await;
    let announced: Vec<TaskId> = event
        .records
        .iter()
        .filter_map(shared::tasks::enqueue::inserted_task)
        .collect();
    assert_eq!(announced, ids, "the stream keeps the order of acceptance");
    let response = stack.enqueuer_with(stack.queue()).handle(event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(stack.queue_depth_now(stack.queue_url()).await, 23);
}
