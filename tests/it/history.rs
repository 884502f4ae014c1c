//! v1's history routes through their real handlers on moto: the caller's recent tasks
//! (paged from the submission ledger), a task's results, and its transcript.

use neuraforge_tests::{TestStack, json_body, request, respond, token};
use shared::lambda_http::RequestExt;
use std::collections::HashMap;

fn recent(who: &str, query: &[(&str, &str)]) -> shared::lambda_http::Request {
    let params: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request(
        "GET",
        "/api/v1/history/recent",
        Some(&token(who, &["submitter"])),
        None,
    )
    .build()
    .with_query_string_parameters(params)
}

fn on_task(
    method: &str,
    path: &str,
    who: &str,
    task: &str,
    body: Option<&str>,
) -> shared::lambda_http::Request {
    request(method, path, Some(&token(who, &["submitter"])), body)
        .path_param("task_id", task)
        .build()
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn recent_lists_the_callers_own_tasks_newest_first_in_pages() {
    let stack = TestStack::new().await;
    let mut alices = Vec::new();
    for prompt in [
        "Revenue 10 + 5",
        "Summarise the quarter",
        "Costs fell 3 percent. Revenue grew 12 percent.",
    ] {
        alices.push(
            stack
                .submit("alice", &format!(r#"{{"prompt":"{prompt}"}}"#))
                .await
                .to_string(),
        );
        // Distinct creation times, so "newest first" has one answer.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stack.submit("bob", r#"{"prompt":"bob's own"}"#).await;
    stack.deliver_once(30).await;
    let api = stack.history_recent_api();

    let first = respond(&api, recent("alice", &[("limit", "2")])).await;
    assert_eq!(first.status(), 200);
    let page1 = json_body(&first);
    let cursor = first.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(first.headers()["link"].to_str().unwrap().contains(&cursor));
    let second = respond(
        &api,
        recent("alice", &[("limit", "2"), ("cursor", &cursor)]),
    )
    .await;
    assert!(
        second.headers().get("x-next-cursor").is_none(),
        "the last page"
    );
    let listed: Vec<String> = ids(&page1)
        .into_iter()
        .chain(ids(&json_body(&second)))
        .collect();
    let newest_first: Vec<String> = alices.iter().rev().cloned().collect();
    assert_eq!(
        listed, newest_first,
        "alice's three, newest first, none of bob's"
    );

    // v1's RecentTaskActivity: a settled task is summarised by its answer.
    let entry = &page1[0];
    for field in ["summary", "agent", "status", "confidence", "timestamp"] {
        assert!(entry.get(field).is_some(), "{field}: {entry}");
    }
    assert_eq!(entry["status"], "completed", "{page1}");
    assert!(!entry["summary"].as_str().unwrap().is_empty());
    assert!(entry["agent"].is_string() && entry["confidence"].is_number());

    // Default and bounds.
    let default = json_body(&respond(&api, recent("alice", &[])).await);
    assert_eq!(default.as_array().unwrap().len(), 3);
    let nobody = json_body(&respond(&api, recent("carol", &[])).await);
    assert_eq!(nobody, serde_json::json!([]));
    for (query, why) in [
        (("limit", "26"), "above v1's most"),
        (("limit", "0"), "below one"),
        (("cursor", "not-ours"), "a cursor this API never gave out"),
    ] {
        let r = respond(&api, recent("alice", &[query])).await;
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn results_are_the_owners_tasks_outputs_in_v1s_shape() {
    let stack = TestStack::new().await;
    let done = stack
        .submit("alice", r#"{"prompt":"Revenue 10 + 5"}"#)
        .await
        .to_string();
    stack.deliver_once(30).await;
    let queued = stack
        .submit("alice", r#"{"prompt":"not yet"}"#)
        .await
        .to_string();
    let api = stack.history_results_api();
    let path = "/api/v1/history/{task_id}";

    let ok = respond(&api, on_task("GET", path, "alice", &done, None)).await;
    assert_eq!(ok.status(), 200);
    let results = json_body(&ok);
    let first = &results[0];
    assert_eq!(first["task_id"], done);
    assert_eq!(first["agent"], "finance_agent");
    assert!(
        first["content"]["text"].as_str().unwrap().contains("15"),
        "{first}"
    );
    assert!(first["content"]["metadata"].is_object());
    assert!(first["confidence"].as_f64().unwrap() > 0.0);

    let pending = respond(&api, on_task("GET", path, "alice", &queued, None)).await;
    assert_eq!(pending.status(), 404);
    assert_eq!(json_body(&pending)["detail"], "No results available");
    let strangers = respond(&api, on_task("GET", path, "bob", &done, None)).await;
    assert_eq!(strangers.status(), 404, "someone else's task looks unknown");
    assert_eq!(json_body(&strangers)["detail"], "Task not found");
}

#[tokio::test]
async fn a_transcript_is_the_owners_to_replace_and_read_back_and_bad_bodies_write_nothing() {
    let stack = TestStack::new().await;
    let task = stack
        .submit("alice", r#"{"prompt":"Revenue 10"}"#)
        .await
        .to_string();
    let api = stack.transcript_api();
    let path = "/api/v1/history/{task_id}/transcript";
    let get = |who: &str| on_task("GET", path, who, &task, None);

    let empty = respond(&api, get("alice")).await;
    assert_eq!(
        (empty.status().as_u16(), json_body(&empty)),
        (200, serde_json::json!([]))
    );

    let body = r#"{"messages":[{"role":"user","content":"How did revenue do?","timestamp":"2026-11-25T01:37:33.900Z"},{"role":"assistant","content":"Revenue grew.","agent":"finance_agent"}]}"#;
    let put = respond(&api, on_task("PUT", path, "alice", &task, Some(body))).await;
    assert_eq!(put.status(), 200, "{}", json_body(&put));
    let read = json_body(&respond(&api, get("alice")).await);
    assert_eq!(read, json_body(&put));
    assert_eq!(read[1]["agent"], "finance_agent");
    assert_eq!(read[0]["timestamp"], "2026-11-25T01:37:33.900Z");
    assert!(read[1]["timestamp"].is_null());

    // Someone else's task: unknown, and nothing written.
    let theirs = respond(
        &api,
        on_task("PUT", path, "bob", &task, Some(r#"{"messages":[]}"#)),
    )
    .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(respond(&api, get("bob")).await.status(), 404);

    let too_many = format!(
        r#"{{"messages":[{}]}}"#,
        vec![r#"{"role":"user","content":"x"}"#; shared::tasks::history::MAX_MESSAGES + 1]
            .join(",")
    );
    for (bad, status, loc) in [
        (
            r#"{"messages":[{"role":"user"}]}"#,
            422,
            Some(serde_json::json!(["body", "messages", "0", "content"])),
        ),
        (
            r#"{"messages":[{"role":"","content":"x"}]}"#,
            422,
            Some(serde_json::json!(["body", "messages", "0", "role"])),
        ),
        (
            r#"{"messages":"hello"}"#,
            422,
            Some(serde_json::json!(["body", "messages"])),
        ),
        (r#"{}"#, 422, Some(serde_json::json!(["body", "messages"]))),
        (
            too_many.as_str(),
            422,
            Some(serde_json::json!(["body", "messages"])),
        ),
        (r#"{"messages": ["#, 400, None),
    ] {
        let r = respond(&api, on_task("PUT", path, "alice", &task, Some(bad))).await;
        assert_eq!(r.status(), status, "{bad:.60}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        if let Some(loc) = loc {
            assert_eq!(json_body(&r)["errors"][0]["loc"], loc, "{bad:.60}");
        }
    }
    let unchanged = json_body(&respond(&api, get("alice")).await);
    assert_eq!(unchanged, read, "a refused body writes nothing");
}

/// The OpenAPI description states the transcript's bounds (utoipa takes literals only).
#[test]
fn the_described_transcript_bounds_are_the_enforced_ones() {
    use shared::tasks::history::{MAX_CONTENT_CHARS, MAX_LABEL_CHARS, MAX_MESSAGES};
    let text =
        std::fs::read_to_string(neuraforge_tests::workspace_root().join("docs/openapi.yaml"))
            .unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let schemas = &doc["components"]["schemas"];
    let message = &schemas["TranscriptMessage"]["properties"];
    assert_eq!(message["role"]["maxLength"], MAX_LABEL_CHARS);
    assert_eq!(message["role"]["minLength"], 1);
    assert_eq!(message["content"]["maxLength"], MAX_CONTENT_CHARS);
    assert_eq!(
        schemas["TranscriptUpdate"]["properties"]["messages"]["maxItems"],
        MAX_MESSAGES
    );
}

/// Submits as `who` through an API whose submission limit is `capacity` per minute and
/// whose clock reads `at`; returns the answer.
async fn submit_at(
    stack: &TestStack,
    who: &str,
    capacity: &str,
    at: i64,
    body: &str,
    key: Option<&str>,
) -> shared::lambda_http::Response<shared::lambda_http::Body> {
    let settings = stack.settings_with(&[("RATE_LIMIT__TASK_SUBMISSION__CAPACITY", capacity)]);
    let api = shared::tasks::submit::SubmitTaskApi {
        ledger: shared::tasks::ledger::SubmissionLedger::from_settings(&stack.sdk, &settings)
            .unwrap()
            .with_clock(shared::time::Clock::fixed(at)),
        ..stack.submit_api_with(settings)
    };
    let request = neuraforge_tests::submit_request(&token(who, &["submitter"]), body, key);
    stack.pipeline().respond(&api, request).await
}

#[tokio::test]
async fn the_ledger_lists_a_window_s_tasks_in_the_counter_s_own_write_and_skips_what_never_became_a_task()
 {
    let stack = TestStack::new().await;
    let minute = shared::time::now_millis() / 60_000 * 60_000;
    let mut ids = Vec::new();
    // Two windows at v1's limit (6 a minute: listed with the count, one write each).
    for (i, at) in [
        minute - 60_000 + 1_000,
        minute - 60_000 + 2_000,
        minute + 1_000,
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"prompt":"task {i}"}}"#);
        let answer = submit_at(&stack, "carol", "6", at, &body, Some(&format!("k{i}"))).await;
        assert_eq!(answer.status(), 200);
        ids.push(json_body(&answer)["task_id"].as_str().unwrap().to_string());
    }
    // Counted, then refused by validation: its id is listed but names no task.
    let refused = submit_at(
        &stack,
        "carol",
        "6",
        minute + 2_000,
        r#"{"prompt":""}"#,
        None,
    )
    .await;
    assert_eq!(refused.status(), 422);
    // A replay a window later lists its task again; the list shows it where it was created.
    let replay = submit_at(
        &stack,
        "carol",
        "6",
        minute + 61_000,
        r#"{"prompt":"task 0"}"#,
        Some("k0"),
    )
    .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    let ledger = stack
        .dynamodb
        .scan()
        .table_name(&stack.local.tables["SubmissionsTable"])
        .send()
        .await
        .unwrap();
    assert_eq!(
        ledger.items().len(),
        3,
        "one item per window: no overflow page"
    );

    let page = respond(&stack.history_recent_api(), recent("carol", &[])).await;
    assert_eq!(page.status(), 200);
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(ids_of(&page), newest_first);
}

#[tokio::test]
async fn past_twenty_in_a_window_the_ledger_lists_on_further_pages_and_pages_through_them() {
    let stack = TestStack::new().await;
    let at = shared::time::now_millis() / 60_000 * 60_000 + 1_000;
    let mut ids = Vec::new();
    for i in 0..23 {
        let answer = submit_at(
            &stack,
            "dan",
            "100",
            at,
            &format!(r#"{{"prompt":"bulk {i}"}}"#),
            None,
        )
        .await;
        assert_eq!(answer.status(), 200);
        ids.push(json_body(&answer)["task_id"].as_str().unwrap().to_string());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "5".to_string())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = respond(&stack.history_recent_api(), recent("dan", &query)).await;
        assert_eq!(page.status(), 200);
        listed.extend(ids_of(&page));
        match page.headers().get("x-next-cursor") {
            Some(next) => cursor = Some(next.to_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(
        listed, newest_first,
        "every task once, newest first, across the pages"
    );
}

fn ids_of(response: &shared::lambda_http::Response<shared::lambda_http::Body>) -> Vec<String> {
    ids(&json_body(response))
}

#[tokio::test]
async fn a_ledger_full_of_refused_submissions_gives_short_pages_never_an_unbounded_read() {
    let stack = TestStack::new().await;
    let at = shared::time::now_millis() / 60_000 * 60_000 + 1_000;
    let kept = submit_at(
        &stack,
        "erin",
        "100",
        at,
        r#"{"prompt":"the real one"}"#,
        None,
    )
    .await;
    let kept = json_body(&kept)["task_id"].as_str().unwrap().to_string();
    // Counted and listed, then refused by validation: 30 ids that name no task.
    for _ in 0..30 {
        let refused = submit_at(&stack, "erin", "100", at, r#"{"prompt":""}"#, None).await;
        assert_eq!(refused.status(), 422);
    }
    let mut pages = 0;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2".to_string())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = respond(&stack.history_recent_api(), recent("erin", &query)).await;
        assert_eq!(page.status(), 200);
        pages += 1;
        listed.extend(ids_of(&page));
        match page.headers().get("x-next-cursor") {
            Some(next) => cursor = Some(next.to_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(listed, vec![kept]);
    // 31 entries at 8 a page (4 per task asked for): the refused ones cost bounded pages.
    assert_eq!(pages, 4);
}
