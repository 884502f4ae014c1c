//! GET /api/v1/tasks/{task_id} against a real moto server.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request, token};

async fn submitted_by(stack: &TestStack, who: &str) -> String {
    stack
        .submit(who, r#"{"prompt":"status check"}"#)
        .await
        .to_string()
}

fn get(task_id: &str, as_token: Option<&str>) -> shared::lambda_http::Request {
    request("GET", &format!("/api/v1/tasks/{task_id}"), as_token, None)
        .path_param("task_id", task_id)
        .build()
}

#[tokio::test]
async fn a_queued_task_reads_back_in_the_v1_shape() {
    let stack = TestStack::new().await;
    let id = submitted_by(&stack, "alice").await;
    let response = respond(
        &stack.get_api(),
        get(&id, Some(&token("alice", &["submitter"]))),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_body(&response);
    assert_eq!(body["task_id"], id);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["prompt"], "status check");
    for field in [
        "run_id",
        "metadata",
        "outputs",
        "plan",
        "negotiation",
        "guardrails",
        "meta",
        "dossier",
        "report",
        "metrics",
        "last_error",
        "created_at",
        "updated_at",
        "events",
    ] {
        assert!(body.get(field).is_some(), "v1 field {field} is missing");
    }
    assert_eq!(body["metrics"]["agents_completed"], 0);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn an_unknown_task_is_a_404_with_the_v1_detail() {
    let stack = TestStack::new().await;
    let response = respond(
        &stack.get_api(),
        get(
            "00000000-0000-4000-8000-000000000000",
            Some(&token("olga", &["observer"])),
        ),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(json_body(&response)["detail"], "Task not found");
}

#[tokio::test]
async fn a_task_id_that_is_not_a_uuid_is_a_400() {
    let stack = TestStack::new().await;
    for bad in ["42", "not-a-uuid", "00000000000040008000000000000000"] {
        let response = respond(
            &stack.get_api(),
            get(bad, Some(&token("olga", &["observer"]))),
        )
        .await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            json_body(&response)["type"],
            "urn:neuraforge:problem:bad-request"
        );
    }
}

#[tokio::test]
async fn submitters_read_their_own_tasks_and_readers_read_all() {
    let stack = TestStack::new().await;
    let id = submitted_by(&stack, "alice").await;
    let api = stack.get_api();
    let status = |t: String| {
        let req = get(&id, Some(&t));
        let api = &api;
        async move { respond(api, req).await.status().as_u16() }
    };
    assert_eq!(status(token("alice", &["submitter"])).await, 200);
    assert_eq!(
        status(token("bob", &["submitter"])).await,
        404,
        "another submitter cannot see it"
    );
    assert_eq!(status(token("olga", &["observer"])).await, 200);
    assert_eq!(status(token("rita", &["reviewer"])).await, 200);
    assert_eq!(status(token("nobody", &[])).await, 403);
}

#[tokio::test]
async fn reading_a_task_needs_a_valid_token() {
    let stack = TestStack::new().await;
    let response = respond(
        &stack.get_api(),
        get("00000000-0000-4000-8000-000000000000", None),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong_method = request(
        "DELETE",
        "/api/v1/tasks/x",
        Some(&token("olga", &["observer"])),
        None,
    )
    .build();
    let response = respond(&stack.get_api(), wrong_method).await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
}

#[tokio::test]
async fn a_found_task_is_read_eventually_consistent_and_a_missing_one_again_strongly() {
    let stack = TestStack::new().await;
    let id = submitted_by(&stack, "alice").await;
    let recorder = neuraforge_tests::recorder::Recorder::default();
    let api = stack.with_sdk(recorder.sdk(&stack.sdk)).get_api();
    let alice = token("alice", &["submitter"]);
    let consistency = |reads: Vec<serde_json::Value>| -> Vec<bool> {
        reads
            .iter()
            .map(|r| r.get("ConsistentRead") == Some(&serde_json::Value::Bool(true)))
            .collect()
    };

    let found = respond(&api, get(&id, Some(&alice))).await;
    assert_eq!(found.status(), 200);
    assert_eq!(consistency(recorder.requests("GetItem")), [false]);

    // Not found eventually consistent might be a task written a moment ago: asked again, strongly.
    recorder.take_calls();
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = respond(&api, get(&unknown, Some(&alice))).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(consistency(recorder.requests("GetItem")), [false, true]);
}
