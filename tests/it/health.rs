//! Liveness and readiness.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request};
use shared::health::{LivenessApi, ReadinessApi};
use shared::queue::TaskQueue;
use shared::tasks::store::{TaskStore, TaskTables};
use std::time::Duration;

#[tokio::test]
async fn liveness_answers_ok_without_a_token() {
    let response = respond(
        &LivenessApi,
        request("GET", "/api/v1/health", None, None).build(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(&response), serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn readiness_is_ok_when_dynamodb_and_sqs_answer() {
    let stack = TestStack::new().await;
    let api = ReadinessApi {
        store: stack.store(),
        queue: stack.queue(),
        timeout: Duration::from_secs(2),
    };
    let response = respond(
        &api,
        request("GET", "/api/v1/health/ready", None, None).build(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json_body(&response);
    assert_eq!(body["checks"]["dynamodb"]["status"], "ok");
    assert_eq!(body["checks"]["sqs"]["status"], "ok");
}

#[tokio::test]
async fn readiness_is_a_503_problem_naming_the_failed_dependency_without_details() {
    let stack = TestStack::new().await;
    let api = ReadinessApi {
        store: TaskStore::new(
            &stack.sdk,
            TaskTables {
                tasks: "no-such-table".into(),
                retention: Default::default(),
            },
        ),
        queue: TaskQueue::new(&stack.sdk, stack.queue_url()),
        timeout: Duration::from_secs(2),
    };
    let response = respond(
        &api,
        request("GET", "/api/v1/health/ready", None, None).build(),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = json_body(&response);
    assert_eq!(body["checks"]["dynamodb"]["status"], "unavailable");
    assert_eq!(body["checks"]["sqs"]["status"], "ok");
    assert!(
        !body.to_string().contains("no-such-table"),
        "no resource names leak: {body}"
    );
}
