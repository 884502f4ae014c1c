//! `GET /api/v1/reviews/events`: ticket changes as Server-Sent Events, through the real
//! handlers on moto — the changes in order with ids, resume after `Last-Event-ID`, the
//! reads of an idle stream, and its refusals.

use neuraforge_tests::{TestStack, next_chunk, request, respond, token};
use shared::reviews::api::TicketAction;
use shared::reviews::feed::{FeedConfig, ReviewEventsApi};
use shared::routes::REVIEW_EVENTS;
use std::time::Duration;

fn api(stack: &TestStack, open_for: Duration) -> ReviewEventsApi {
    ReviewEventsApi {
        reads: stack.reads(),
        slots: stack.slots(),
        tickets: stack.reviews(),
        config: FeedConfig {
            max_duration: open_for,
            ..FeedConfig::default()
        },
    }
}

/// `(id, event, data)` of each message a stream sends until it ends.
async fn messages(
    api: &ReviewEventsApi,
    last_event_id: Option<&str>,
) -> Vec<(String, String, serde_json::Value)> {
    let mut req = request(
        "GET",
        REVIEW_EVENTS.path,
        Some(&token("rita", &["reviewer"])),
        None,
    );
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let response = neuraforge_tests::pipeline()
        .respond_streaming(api, req.build())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        text.push_str(&chunk);
    }
    assert!(text.starts_with("retry: 2000\n\n"), "{text}");
    assert!(text.contains(": stream closing"), "{text}");
    text.split("\n\n")
        .filter_map(|message| {
            let field = |name: &str| {
                message
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(String::from)
            };
            Some((
                field("id: ")?,
                field("event: ")?,
                serde_json::from_str(&field("data: ")?).unwrap(),
            ))
        })
        .collect()
}

async fn act(stack: &TestStack, action: TicketAction, ticket: &str, body: Option<&str>) {
    let route = action.route();
    let req = request(
        route.methods[0],
        route.path,
        Some(&token("rita", &["reviewer"])),
        body,
    )
    .path_param("ticket_id", ticket)
    .build();
    assert_eq!(
        respond(&stack.ticket_api(action), req).await.status(),
        200,
        "{action:?}"
    );
}

#[tokio::test]
async fn a_reviewer_sees_a_ticket_open_get_assigned_noted_and_resolved_then_resumes_after_an_id() {
    let stack = TestStack::new().await;
    let feed = api(&stack, Duration::from_secs(8));
    // The stream opens first; the ticket's life happens while it follows.
    let following = tokio::spawn({
        let feed = api(&stack, Duration::from_secs(8));
        async move { messages(&feed, None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ticket = stack.open_ticket().await;
    act(&stack, TicketAction::Assign, &ticket, None).await;
    act(
        &stack,
        TicketAction::AddNote,
        &ticket,
        Some(r#"{"content":"checking"}"#),
    )
    .await;
    act(
        &stack,
        TicketAction::Resolve,
        &ticket,
        Some(r#"{"status":"resolved","summary":"fine"}"#),
    )
    .await;
    let seen = following.await.unwrap();

    let events: Vec<&str> = seen.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["opened", "assigned", "note_added", "resolved"],
        "{seen:?}"
    );
    let ids: Vec<&str> = seen.iter().map(|(id, _, _)| id.as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    for (id, event, data) in &seen {
        assert_eq!(data["id"], id.as_str());
        assert_eq!(data["event"], event.as_str());
        assert_eq!(data["ticket_id"], ticket.as_str());
    }
    let (_, _, opened) = &seen[0];
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["by"], "system");
    assert!(opened["task_id"].is_string());
    let (_, _, assigned) = &seen[1];
    assert_eq!(assigned["status"], "in_review");
    assert_eq!(assigned["assigned_to"], "rita");
    assert_eq!(assigned["by"], "rita");
    let (_, _, noted) = &seen[2];
    assert_eq!(noted["by"], "rita");
    assert!(noted.get("status").is_none(), "a note leaves the status");
    assert_eq!(seen[3].2["status"], "resolved");

    // Resuming after `assigned`: what came after it, not it again.
    let resumed = messages(&feed, Some(&seen[1].0)).await;
    let events: Vec<&str> = resumed.iter().map(|(_, e, _)| e.as_str()).collect();
    assert!(!events.contains(&"assigned"), "{events:?}");
    assert!(events.ends_with(&["note_added", "resolved"]), "{events:?}");
}

#[tokio::test]
async fn an_idle_stream_reads_the_changes_index_about_once_a_second_and_nothing_else() {
    let stack = TestStack::new().await;
    let recorder = neuraforge_tests::recorder::Recorder::default();
    let rec = stack.with_sdk(recorder.sdk(&stack.sdk));
    let seen = messages(&api(&rec, Duration::from_millis(3_000)), None).await;
    assert!(seen.is_empty(), "{seen:?}");
    // 0.5 s doubling to 1 s: reads at 0, 0.5, 1.5, 2.5 s.
    let queries = recorder.requests("Query");
    assert!((3..=5).contains(&queries.len()), "{} reads", queries.len());
    for query in &queries {
        assert_eq!(query["IndexName"], "changes", "{query}");
        assert!(
            query.get("ConsistentRead").is_none_or(|c| c == false),
            "eventually consistent: {query}"
        );
    }
    assert!(recorder.requests("UpdateItem").is_empty(), "no slot taken");
    assert!(recorder.requests("Scan").is_empty());
}

#[tokio::test]
async fn the_review_stream_refuses_a_bad_id_and_callers_without_reviews_read() {
    let stack = TestStack::new().await;
    let feed = api(&stack, Duration::from_millis(300));
    let status = |who: &str, roles: &[&str], id: Option<&str>| {
        let mut req = request("GET", REVIEW_EVENTS.path, Some(&token(who, roles)), None);
        if let Some(id) = id {
            req = req.header("last-event-id", id);
        }
        let req = req.build();
        let feed = &feed;
        async move {
            let response = neuraforge_tests::pipeline()
                .respond_streaming(feed, req)
                .await;
            (
                response.status().as_u16(),
                response
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }
    };
    assert_eq!(status("sam", &["submitter"], None).await.0, 403);
    for bad in ["5", "not-an-id", "12345678901234x#t#history#000001"] {
        let (code, content_type) = status("rita", &["reviewer"], Some(bad)).await;
        assert_eq!(code, 400, "{bad}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    }
    // An id from the future cannot have been received: the stream starts now.
    let future = status(
        "rita",
        &["reviewer"],
        Some("999999999999999#t#history#000001"),
    )
    .await;
    assert_eq!(future.0, 200);
    assert_eq!(status("olga", &["observer"], None).await.0, 200);
}

#[tokio::test]
async fn a_stream_reads_page_after_page_when_more_changed_than_a_page_holds() {
    let stack = TestStack::new().await;
    // Two changes a page: the ticket's opening, assignment and two notes take two pages.
    let feed = ReviewEventsApi {
        config: FeedConfig {
            page: 2,
            max_duration: Duration::from_secs(6),
            ..FeedConfig::default()
        },
        ..api(&stack, Duration::from_secs(6))
    };
    let before = format!("{:015}", shared::time::now_millis() - 1_000);
    let ticket = stack.open_ticket().await;
    act(&stack, TicketAction::Assign, &ticket, None).await;
    for note in ["one", "two"] {
        let body = format!(r#"{{"content":"{note}"}}"#);
        act(&stack, TicketAction::AddNote, &ticket, Some(&body)).await;
    }
    let seen = messages(&feed, Some(&before)).await;
    let events: Vec<&str> = seen.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["opened", "assigned", "note_added", "note_added"],
        "{seen:?}"
    );
}
