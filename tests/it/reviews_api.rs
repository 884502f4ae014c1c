//! The review ticket routes through their real handlers on moto.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request, token};
use shared::reviews::api::TicketAction;
use shared::tasks::TaskStatus;

fn call(
    stack: &TestStack,
    action: TicketAction,
    who: &str,
    roles: &[&str],
    ticket: &str,
    body: Option<&str>,
) -> impl std::future::Future<Output = shared::lambda_http::Response<shared::lambda_http::Body>> {
    let api = stack.ticket_api(action);
    let route = action.route();
    let req = request(route.methods[0], route.path, Some(&token(who, roles)), body)
        .path_param("ticket_id", ticket)
        .build();
    async move { respond(&api, req).await }
}

#[tokio::test]
async fn a_ticket_is_worked_from_assignment_to_resolution_through_the_api() {
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;

    let got = call(
        &stack,
        TicketAction::Get,
        "olga",
        &["observer"],
        &ticket,
        None,
    )
    .await;
    assert_eq!(got.status(), 200);
    let view = json_body(&got);
    assert_eq!(
        (
            view["status"].as_str(),
            view["history"][0]["action"].as_str()
        ),
        (Some("open"), Some("opened"))
    );
    let task_id = view["task_id"].as_str().unwrap().to_string();
    // The task document names its ticket, so clients can find it.
    let task_doc = respond(
        &stack.get_api(),
        request("GET", "/x", Some(&token("alice", &["submitter"])), None)
            .path_param("task_id", &task_id)
            .build(),
    )
    .await;
    assert_eq!(json_body(&task_doc)["meta"]["review_ticket_id"], ticket);

    let assigned = call(
        &stack,
        TicketAction::Assign,
        "rita",
        &["reviewer"],
        &ticket,
        None,
    )
    .await;
    assert_eq!(assigned.status(), 200);
    assert_eq!(
        assigned.headers()["ratelimit-policy"],
        "\"review_action\";q=90;w=60"
    );
    assert_eq!(json_body(&assigned)["assigned_to"], "rita");

    let again = call(
        &stack,
        TicketAction::Assign,
        "ravi",
        &["reviewer"],
        &ticket,
        None,
    )
    .await;
    assert_eq!(again.status(), 409);
    assert_eq!(json_body(&again)["current_status"], "in_review");

    let noted = call(
        &stack,
        TicketAction::AddNote,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"content":"called the customer"}"#),
    )
    .await;
    assert_eq!(noted.status(), 200);
    assert_eq!(json_body(&noted)["notes"][0]["author"], "rita");

    let resolved = call(
        &stack,
        TicketAction::Resolve,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"status":"resolved","outcome":"reject","summary":"not our customer"}"#),
    )
    .await;
    assert_eq!(resolved.status(), 200, "{}", json_body(&resolved));
    assert_eq!(json_body(&resolved)["status"], "resolved");
    let task = stack
        .store()
        .get(shared::tasks::TaskId::parse(&task_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.status, task.last_error.as_deref()),
        (TaskStatus::Failed, Some("not our customer"))
    );
}

#[tokio::test]
async fn bad_review_requests_get_clear_errors() {
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let rita = ["reviewer"];
    let cases: Vec<(&str, TicketAction, &str, Option<&str>, u16)> = vec![
        ("unknown ticket", TicketAction::Get, unknown, None, 404),
        ("not a UUID", TicketAction::Get, "ticket-1", None, 400),
        (
            "empty note",
            TicketAction::AddNote,
            &ticket,
            Some(r#"{"content":"  "}"#),
            422,
        ),
        (
            "note by someone else",
            TicketAction::AddNote,
            &ticket,
            Some(r#"{"content":"x","author":"mallory"}"#),
            422,
        ),
        (
            "invalid resolution",
            TicketAction::Resolve,
            &ticket,
            Some(r#"{"status":"open"}"#),
            422,
        ),
        (
            "unknown outcome",
            TicketAction::Resolve,
            &ticket,
            Some(r#"{"status":"resolved","outcome":"maybe"}"#),
            422,
        ),
        (
            "missing status",
            TicketAction::Resolve,
            &ticket,
            Some("{}"),
            422,
        ),
        (
            "malformed JSON",
            TicketAction::Resolve,
            &ticket,
            Some("{"),
            400,
        ),
        (
            "unassign an open ticket",
            TicketAction::Unassign,
            &ticket,
            None,
            409,
        ),
    ];
    for (why, action, id, body, status) in cases {
        let response = call(&stack, action, "rita", &rita, id, body).await;
        assert_eq!(response.status(), status, "{why}: {}", json_body(&response));
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{why}"
        );
    }
    let wrong_method = respond(
        &stack.ticket_api(TicketAction::Assign),
        request("GET", "/x", Some(&token("rita", &rita)), None)
            .path_param("ticket_id", &ticket)
            .build(),
    )
    .await;
    assert_eq!(
        (
            wrong_method.status().as_u16(),
            wrong_method.headers()["allow"].to_str().unwrap()
        ),
        (405, "POST")
    );
}

#[tokio::test]
async fn the_queue_lists_oldest_first_and_pages_with_a_cursor() {
    use shared::lambda_http::RequestExt;
    let stack = TestStack::new().await;
    let mut opened = Vec::new();
    for _ in 0..3 {
        opened.push(stack.open_ticket().await);
    }
    let api = shared::reviews::api::ListTicketsApi {
        reads: stack.reads(),
        tickets: stack.reviews(),
    };
    let list = |query: Vec<(&str, String)>| {
        let params: std::collections::HashMap<String, String> =
            query.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let req = request(
            "GET",
            "/api/v1/reviews",
            Some(&token("olga", &["observer"])),
            None,
        )
        .build()
        .with_query_string_parameters(params);
        let api = &api;
        async move { respond(api, req).await }
    };
    let first = list(vec![
        ("status_filter", "open,in_review".into()),
        ("limit", "2".into()),
    ])
    .await;
    assert_eq!(first.status(), 200);
    let page1: Vec<String> = json_body(&first)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ticket_id"].as_str().unwrap().to_string())
        .collect();
    let cursor = first.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_string();
    // The Link header is the same query with the next cursor, percent-encoded.
    let link = first.headers()["link"].to_str().unwrap();
    let query = link
        .strip_prefix("</api/v1/reviews?")
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("{link}"));
    let linked: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert!(query.contains("status_filter=open%2Cin_review"), "{query}");
    assert_eq!(linked["status_filter"], "open,in_review");
    assert_eq!(linked["limit"], "2");
    assert_eq!(
        linked["cursor"],
        first.headers()["x-next-cursor"].to_str().unwrap()
    );
    let second = list(vec![
        ("status_filter", "open,in_review".into()),
        ("limit", "2".into()),
        ("cursor", cursor),
    ])
    .await;
    let page2: Vec<String> = json_body(&second)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ticket_id"].as_str().unwrap().to_string())
        .collect();
    let all: Vec<String> = page1.into_iter().chain(page2).collect();
    assert_eq!(all, opened, "oldest first, each once");

    for (query, why) in [
        (
            vec![("status_filter", "closed".to_string())],
            "unknown status",
        ),
        (vec![("limit", "0".to_string())], "limit out of range"),
        (
            vec![("cursor", "not-a-cursor".to_string())],
            "a cursor we never gave out",
        ),
        (vec![("min_age_minutes", "-5".to_string())], "negative age"),
    ] {
        let response = list(query).await;
        assert_eq!(response.status(), 400, "{why}");
    }
}

#[tokio::test]
async fn queue_entries_carry_their_newest_notes_newest_first_and_how_many_in_all() {
    use shared::lambda_http::RequestExt;
    use shared::reviews::api::LIST_NOTES;
    let stack = TestStack::new().await;
    let quiet = stack.open_ticket().await;
    let noted = stack.open_ticket().await;
    let written = LIST_NOTES + 2;
    for i in 0..written {
        let body = format!(r#"{{"content":"note {i}"}}"#);
        let added = call(
            &stack,
            TicketAction::AddNote,
            "rita",
            &["reviewer"],
            &noted,
            Some(&body),
        )
        .await;
        assert_eq!(added.status(), 200);
        // Note keys sort by their millisecond: keep each in its own.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let api = shared::reviews::api::ListTicketsApi {
        reads: stack.reads(),
        tickets: stack.reviews(),
    };
    let params =
        std::collections::HashMap::from([("status_filter".to_string(), "open".to_string())]);
    let req = request(
        "GET",
        "/api/v1/reviews",
        Some(&token("olga", &["observer"])),
        None,
    )
    .build()
    .with_query_string_parameters(params);
    let listed = json_body(&respond(&api, req).await);
    let entry = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["ticket_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
    };
    let (quiet, noted) = (entry(&quiet), entry(&noted));
    assert_eq!(quiet["notes"], serde_json::json!([]));
    assert_eq!(quiet["note_count"], 0);
    let contents: Vec<&str> = noted["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["content"].as_str().unwrap())
        .collect();
    let newest: Vec<String> = (0..written)
        .rev()
        .take(LIST_NOTES)
        .map(|i| format!("note {i}"))
        .collect();
    assert_eq!(contents, newest, "the newest, newest first, bounded");
    assert_eq!(noted["note_count"], written);
    assert_eq!(noted["notes"][0]["author"], "rita");
}

#[tokio::test]
async fn a_dossier_downloads_the_whole_story_in_json_and_markdown() {
    use shared::reviews::dossier::{DossierApi, DossierFormat};
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;
    call(
        &stack,
        TicketAction::Assign,
        "rita",
        &["reviewer"],
        &ticket,
        None,
    )
    .await;
    call(
        &stack,
        TicketAction::AddNote,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"content":"called the customer"}"#),
    )
    .await;
    call(
        &stack,
        TicketAction::Resolve,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"status":"resolved","summary":"legitimate"}"#),
    )
    .await;
    let task_id = stack
        .reviews()
        .get(&ticket)
        .await
        .unwrap()
        .unwrap()
        .task_id
        .to_string();

    let api = |format| DossierApi {
        format,
        reads: stack.reads(),
        tasks: stack.store(),
        runs: stack.runs(),
        tickets: stack.reviews(),
    };
    let get = |who: &str, roles: &[&str], id: &str| {
        request("GET", "/x", Some(&token(who, roles)), None)
            .path_param("task_id", id)
            .build()
    };

    let json = respond(
        &api(DossierFormat::Json),
        get("olga", &["observer"], &task_id),
    )
    .await;
    assert_eq!(json.status(), 200);
    assert_eq!(
        json.headers()["content-disposition"],
        format!("attachment; filename=\"dossier-{task_id}.json\"")
    );
    let d = json_body(&json);
    assert_eq!(d["task"]["status"], "completed");
    assert_eq!(
        d["run"]["status"], "awaiting_review",
        "the run ended in review; the reviewer finished the task"
    );
    assert_eq!(d["guardrail_decisions"][0]["policy_id"], "pii.v1");
    let events: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"review_decided"));
    assert_eq!(d["review"]["status"], "resolved");
    assert_eq!(d["review"]["notes"][0]["content"], "called the customer");
    let actions: Vec<&str> = d["review"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["opened", "in_review", "resolved"]);
    assert!(
        !d.to_string().contains("4111 1111 1111 1111"),
        "the card number never reaches a dossier"
    );

    let md = respond(
        &api(DossierFormat::Markdown),
        get("olga", &["observer"], &task_id),
    )
    .await;
    assert_eq!(md.status(), 200);
    assert!(
        md.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let text = String::from_utf8(md.body().to_vec()).unwrap();
    for expected in [
        format!("# Dossier: task {task_id}"),
        "## Review".into(),
        "Note by rita".into(),
        "| 1 | task_started |".into(),
        // Brackets are escaped: untrusted text cannot open a link.
        "\\[REDACTED:card\\]".into(),
    ] {
        assert!(text.contains(&expected), "{expected} missing from\n{text}");
    }

    assert_eq!(
        respond(
            &api(DossierFormat::Json),
            get(
                "olga",
                &["observer"],
                "00000000-0000-4000-8000-000000000000"
            )
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        respond(
            &api(DossierFormat::Json),
            get("alice", &["submitter"], &task_id)
        )
        .await
        .status(),
        403
    );
}
