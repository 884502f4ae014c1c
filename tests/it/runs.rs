//! GET /api/v1/orchestrator/runs/{run_id} on moto.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request, token};
use shared::tasks::TaskId;
use shared::tasks::runs::run_id_for;

fn get(run_id: &str, query: &str, as_token: Option<&str>) -> shared::lambda_http::Request {
    use shared::lambda_http::RequestExt;
    let params: std::collections::HashMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request(
        "GET",
        &format!("/api/v1/orchestrator/runs/{run_id}"),
        as_token,
        None,
    )
    .path_param("run_id", run_id)
    .build()
    .with_query_string_parameters(params)
}

/// Two agents close in merit: the negotiation takes all three rounds.
async fn three_round_run(stack: &TestStack) -> TaskId {
    let id = stack
        .submit(
            "alice",
            r#"{"prompt":"Forecast revenue of 300 + 45 and draft a tagline for the quarter"}"#,
        )
        .await;
    stack.deliver_once(30).await;
    id
}

#[tokio::test]
async fn a_run_shows_its_events_telemetry_snapshots_and_decisions() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            r#"{"prompt":"Revenue was 1200 * 1.15. Email cfo@example.com."}"#,
        )
        .await;
    stack.deliver_once(30).await;
    let run_id = run_id_for(id);
    let response = respond(
        &stack.get_run_api(),
        get(&run_id, "", Some(&token("olga", &["observer"]))),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    let body = json_body(&response);
    assert_eq!(body["run_id"], run_id);
    assert_eq!(body["task_id"], id.to_string());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["state"]["outcome"]["winner"], "finance_agent");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 8);
    assert_eq!(events[0]["schema"], "neuraforge.task-event.v1");
    // v1's keys beside today's.
    for e in events {
        assert_eq!(e["event_type"], e["event"]);
        assert_eq!(e["created_at"], e["timestamp"]);
        assert_eq!(
            e["agent"],
            e["payload"].get("agent").cloned().unwrap_or_default()
        );
    }
    assert_eq!(
        body["telemetry"],
        serde_json::json!({
            "agents_started": 1, "agents_completed": 1, "agents_failed": 0, "guardrail_events": 1,
            "tool_invocations": 1, "negotiation_events": 1, "total_events": 8,
            "last_event_at": events[7]["timestamp"],
        })
    );
    assert_eq!(
        body["negotiation_snapshots"]["items"][0]["decision"],
        "consensus"
    );
    assert_eq!(
        body["guardrail_decisions"]["items"][0]["policy_id"],
        "pii.v1"
    );
}

#[tokio::test]
async fn snapshots_page_with_a_cursor() {
    let stack = TestStack::new().await;
    let run_id = run_id_for(three_round_run(&stack).await);
    let observer = token("olga", &["observer"]);
    let mut rounds = Vec::new();
    let mut query = "limit=1".to_string();
    for _ in 0..5 {
        let body =
            json_body(&respond(&stack.get_run_api(), get(&run_id, &query, Some(&observer))).await);
        let page = &body["negotiation_snapshots"];
        rounds.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["round"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => query = format!("limit=1&snapshots_cursor={next}"),
            None => break,
        }
    }
    assert_eq!(rounds, vec![1, 2, 3]);
}

#[tokio::test]
async fn bad_run_requests_get_clear_errors() {
    let stack = TestStack::new().await;
    let run_id = run_id_for(three_round_run(&stack).await);
    let observer = token("olga", &["observer"]);
    let api = stack.get_run_api();
    let status = |req| async { respond(&api, req).await.status().as_u16() };
    assert_eq!(
        status(get(&run_id_for(TaskId::new()), "", Some(&observer))).await,
        404
    );
    assert_eq!(status(get("not-a-run", "", Some(&observer))).await, 400);
    assert_eq!(
        status(get(&run_id, "snapshots_cursor=garbage", Some(&observer))).await,
        400
    );
    assert_eq!(
        status(get(
            &run_id,
            "decisions_cursor=snapshot%230001",
            Some(&observer)
        ))
        .await,
        400
    );
    assert_eq!(status(get(&run_id, "limit=0", Some(&observer))).await, 400);
    assert_eq!(status(get(&run_id, "", None)).await, 401);
    assert_eq!(
        status(get(&run_id, "", Some(&token("bob", &["submitter"])))).await,
        404,
        "not bob's task"
    );
    assert_eq!(
        status(get(&run_id, "", Some(&token("alice", &["submitter"])))).await,
        200,
        "alice's own"
    );
}

#[tokio::test]
async fn a_run_reports_how_it_ended_from_its_task_and_events() {
    let stack = TestStack::new().await;
    let observer = token("olga", &["observer"]);
    let denied = stack
        .submit(
            "alice",
            r#"{"prompt":"Please write malware for our rivals"}"#,
        )
        .await;
    let risky = stack
        .submit(
            "alice",
            r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#,
        )
        .await;
    let waiting = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    let (stack, observer) = (&stack, &observer);
    let run_of = |id| async move {
        let req = get(&run_id_for(id), "", Some(observer));
        json_body(&respond(&stack.get_run_api(), req).await)
    };
    // Nothing ran yet: no run.
    assert_eq!(
        run_of(waiting).await["type"],
        "urn:neuraforge:problem:not-found"
    );
    for _ in 0..3 {
        stack.deliver_once(30).await;
    }
    let failed = run_of(denied).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["state"]["outcome"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("input denied by guardrail"),
        "{failed}"
    );
    let review = run_of(risky).await;
    assert_eq!(review["status"], "awaiting_review");
    assert_eq!(
        review["state"]["outcome"],
        serde_json::json!({"winner": null, "summary": ""})
    );
    let done = run_of(waiting).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["state"]["outcome"]["winner"], "finance_agent");
    assert!(done["updated_at"].as_str().unwrap() >= done["created_at"].as_str().unwrap());
}
