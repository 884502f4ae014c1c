//! The holes found when the running stack was attacked as an ordinary submitter,
//! reviewer or observer would: each test is one of them, through the real handlers.

use aws_sdk_dynamodb::types::AttributeValue;
use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, get_as, json_body, request, submit_request, token};
use shared::reviews::api::TicketAction;
use shared::reviews::dossier::DossierFormat;
use shared::tasks::{TaskId, TaskStatus};

const RISKY: &str =
    r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer to jane.doe@example.com"}"#;

async fn submit_as(stack: &TestStack, who: &str, roles: &[&str], body: &str) -> serde_json::Value {
    let response = respond(
        &stack.submit_api(),
        submit_request(&token(who, roles), body, None),
    )
    .await;
    let status = response.status().as_u16();
    let mut body = json_body(&response);
    body["http_status"] = status.into();
    body
}

async fn get_task(
    stack: &TestStack,
    who: &str,
    roles: &[&str],
    task_id: &str,
) -> serde_json::Value {
    let response = respond(&stack.get_api(), get_as(who, roles, "task_id", task_id)).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    json_body(&response)
}

fn ticket_call(
    action: TicketAction,
    who: &str,
    roles: &[&str],
    ticket: &str,
    body: Option<&str>,
) -> shared::lambda_http::Request {
    let route = action.route();
    request(route.methods[0], route.path, Some(&token(who, roles)), body)
        .path_param("ticket_id", ticket)
        .header("content-type", "application/json")
        .build()
}

/// Calls a ticket route's handler as `who`.
async fn act(
    stack: &TestStack,
    action: TicketAction,
    who: &str,
    roles: &[&str],
    ticket: &str,
    body: Option<&str>,
) -> shared::lambda_http::Response<shared::lambda_http::Body> {
    respond(
        &stack.ticket_api(action),
        ticket_call(action, who, roles, ticket, body),
    )
    .await
}

async fn ticket_of(stack: &TestStack, task_id: &str) -> String {
    stack
        .reviews()
        .by_status(shared::reviews::TicketStatus::Open, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id.to_string() == task_id)
        .expect("a ticket for the task")
        .ticket_id
        .to_string()
}

// 1. Continuation of someone else's task.
#[tokio::test]
async fn a_submitter_cannot_continue_another_submitters_task_or_probe_for_it() {
    let stack = TestStack::new().await;
    let alice = stack
        .submit(
            "alice",
            r#"{"prompt":"Zanzibarquest revenue grew 12.5 percent this quarter."}"#,
        )
        .await;
    stack.deliver_once(30).await;
    let before = stack.store().get(alice).await.unwrap().unwrap();

    let theirs = submit_as(
        &stack,
        "bob",
        &["submitter"],
        &format!(r#"{{"prompt":"go on","continuation_task_id":"{alice}"}}"#),
    )
    .await;
    let missing = submit_as(
        &stack,
        "bob",
        &["submitter"],
        &format!(
            r#"{{"prompt":"go on","continuation_task_id":"{}"}}"#,
            uuid::Uuid::new_v4()
        ),
    )
    .await;
    assert_eq!(theirs["http_status"], 422, "{theirs}");
    // No existence oracle: another's task and no task answer alike.
    for field in ["type", "detail", "errors"] {
        assert_eq!(theirs[field], missing[field], "{field} differs");
    }
    // Bob's attempts changed nothing of Alice's and created nothing of his own.
    assert_eq!(stack.store().get(alice).await.unwrap().unwrap(), before);
    let bobs = stack
        .scan("TasksTable")
        .await
        .into_iter()
        .filter(|item| item["submitted_by"].as_s().is_ok_and(|s| s == "bob"))
        .count();
    assert_eq!(bobs, 0, "a refused continuation writes no task");
    let own = submit_as(
        &stack,
        "alice",
        &["submitter"],
        &format!(r#"{{"prompt":"go on","continuation_task_id":"{alice}"}}"#),
    )
    .await;
    assert_eq!(own["http_status"], 200, "{own}");

    // The worker checks again before it reads the parent: a message naming another's
    // task (written past the API) fails without quoting it.
    let bob = stack
        .submit("bob", r#"{"prompt":"Summarise my notes."}"#)
        .await;
    let mut sneaky = stack.store().get(bob).await.unwrap().unwrap();
    sneaky.task_id = shared::tasks::TaskId::new();
    sneaky.continuation_task_id = Some(alice);
    stack.store().create(&sneaky, None).await.unwrap();
    stack
        .queue()
        .send(&shared::tasks::TaskMessage {
            task_id: sneaky.task_id,
            request_id: None,
        })
        .await
        .unwrap();
    for _ in 0..3 {
        stack.deliver_once(30).await;
    }
    let failed = stack.store().get(sneaky.task_id).await.unwrap().unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(failed.last_error.unwrap_or_default().contains("not found"));
    let events = stack
        .runs()
        .events_after(sneaky.task_id, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    assert!(
        // (Timestamps may hold "12.5"; the parent's own word and the context marker may not.)
        !serde_json::to_string(&events)
            .unwrap()
            .to_lowercase()
            .contains("zanzibarquest")
            && !serde_json::to_string(&events)
                .unwrap()
                .contains("Context from task"),
        "the other tenant's output leaked into the run"
    );
}

// 2. Self-approval.
#[tokio::test]
async fn a_reviewer_may_not_decide_a_ticket_raised_by_their_own_task() {
    let stack = TestStack::new().await;
    let both = ["submitter", "reviewer"];
    let task = submit_as(&stack, "sam", &both, RISKY).await;
    stack.deliver_once(30).await;
    let ticket = ticket_of(&stack, task["task_id"].as_str().unwrap()).await;

    for (action, body) in [
        (TicketAction::Assign, None),
        (
            TicketAction::Resolve,
            Some(r#"{"status":"resolved","outcome":"approve"}"#),
        ),
    ] {
        let response = act(&stack, action, "sam", &both, &ticket, body).await;
        assert_eq!(response.status(), 403, "{action:?}");
        assert_eq!(
            json_body(&response)["type"],
            "urn:neuraforge:problem:separation-of-duties"
        );
    }
    // An admin may not hand the ticket to its submitter either.
    let handed = act(
        &stack,
        TicketAction::Assign,
        "ada",
        &["review_admin"],
        &ticket,
        Some(r#"{"reviewer_id":"sam"}"#),
    )
    .await;
    assert_eq!(handed.status(), 403);
    assert_eq!(
        stack
            .reviews()
            .get(&ticket)
            .await
            .unwrap()
            .unwrap()
            .assigned_to,
        None
    );

    // A review_admin deciding their own task's ticket may, and the audit log says so.
    let admin = ["submitter", "review_admin"];
    let task = submit_as(&stack, "adam", &admin, RISKY).await;
    stack.deliver_once(30).await;
    let own = ticket_of(&stack, task["task_id"].as_str().unwrap()).await;
    let api = stack.ticket_api(TicketAction::Resolve);
    let auditor = stack.auditor();
    let resolved = auditor
        .respond(
            &api,
            ticket_call(
                TicketAction::Resolve,
                "adam",
                &admin,
                &own,
                Some(r#"{"status":"resolved"}"#),
            ),
        )
        .await;
    assert_eq!(resolved.status(), 200, "{}", json_body(&resolved));
    let chain = stack.audit_records_of("resolve-review").await;
    let record = chain.last().unwrap();
    assert_eq!(
        (record.principal.as_str(), record.override_of.as_deref()),
        ("adam", Some("separation_of_duties"))
    );
}

// 3. Raw personal data to readers.
#[tokio::test]
async fn only_the_submitter_reads_the_raw_prompt_every_other_reader_gets_it_redacted() {
    let stack = TestStack::new().await;
    let body = r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer","metadata":{"contact":"jane.doe@example.com"}}"#;
    let task = submit_as(&stack, "alice", &["submitter"], body).await;
    stack.deliver_once(30).await;
    let task_id = task["task_id"].as_str().unwrap();

    let own = get_task(&stack, "alice", &["submitter"], task_id).await;
    assert!(
        own["prompt"]
            .as_str()
            .unwrap()
            .contains("4111 1111 1111 1111")
    );
    assert_eq!(own["metadata"]["contact"], "jane.doe@example.com");

    let observed = get_task(&stack, "olga", &["observer"], task_id).await;
    assert_eq!(
        observed["prompt"],
        "Refund card [REDACTED:card] by wire transfer"
    );
    assert_eq!(observed["metadata"]["contact"], "[REDACTED:email]");

    // The same on the other read surfaces: ticket, dossier, run events.
    let ticket = ticket_of(&stack, task_id).await;
    let got = act(
        &stack,
        TicketAction::Get,
        "olga",
        &["observer"],
        &ticket,
        None,
    )
    .await;
    let dossier = stack.dossier_api(DossierFormat::Json);
    let downloaded = respond(&dossier, get_as("olga", &["observer"], "task_id", task_id)).await;
    let run = respond(
        &stack.get_run_api(),
        get_as(
            "olga",
            &["observer"],
            "run_id",
            own["run_id"].as_str().unwrap(),
        ),
    )
    .await;
    for (surface, response) in [("ticket", got), ("dossier", downloaded), ("run", run)] {
        let text = String::from_utf8_lossy(response.body().as_ref()).to_string();
        assert_eq!(response.status(), 200, "{surface}: {text}");
        assert!(
            !text.contains("4111 1111") && !text.contains("jane.doe"),
            "{surface} leaks personal data: {text}"
        );
    }
}

// 4. Personal data back through tools.
#[tokio::test]
async fn tools_and_agents_work_on_redacted_text_only() {
    let stack = TestStack::new().await;
    let body = r#"{"prompt":"Onboard the vendor: mail jane.doe@example.com or call +1 415-555-0100.","metadata":{"agents":["enterprise_agent","general_agent"],"contact":"jane.doe@example.com","phone":"+1 415-555-0100"}}"#;
    let task = submit_as(&stack, "alice", &["submitter"], body).await;
    stack.deliver_once(30).await;
    let task_id = shared::tasks::TaskId::parse(task["task_id"].as_str().unwrap()).unwrap();
    let done = stack.store().get(task_id).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.last_error);
    let events = stack
        .runs()
        .events_after(task_id, 0, 200, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let tool_calls: Vec<_> = events
        .iter()
        .filter(|e| e.event == "tool_invoked")
        .collect();
    assert!(
        tool_calls.iter().any(|e| e.payload["tool"] == "json_query"),
        "the enterprise agent read the metadata"
    );
    let recorded = serde_json::to_string(&(&events, &done.result)).unwrap();
    for personal in ["jane.doe", "415-555-0100", "555-0100"] {
        assert!(
            !recorded.contains(personal),
            "{personal} reached a tool, an output or an event"
        );
    }
    assert!(recorded.contains("[REDACTED:email]"));
}

// 10. Request size, 11. notes on closed tickets.
#[tokio::test]
async fn review_bodies_are_bounded_and_closed_tickets_are_read_only() {
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;
    let rita = ["reviewer"];

    let huge = format!(r#"{{"content":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let response = act(
        &stack,
        TicketAction::AddNote,
        "rita",
        &rita,
        &ticket,
        Some(&huge),
    )
    .await;
    assert_eq!(response.status(), 413, "refused before parsing");

    // One character over each documented maximum: a 422 naming the field.
    use shared::reviews::api::{MAX_NOTE_CHARS, MAX_REASON_CHARS, MAX_SUMMARY_CHARS};
    for (action, field, max, rest) in [
        (
            TicketAction::Resolve,
            "summary",
            MAX_SUMMARY_CHARS,
            r#""status":"resolved","#,
        ),
        (TicketAction::AddNote, "content", MAX_NOTE_CHARS, ""),
        (TicketAction::Unassign, "reason", MAX_REASON_CHARS, ""),
    ] {
        let body = format!(r#"{{{rest}"{field}":"{}"}}"#, "x".repeat(max + 1));
        let response = act(&stack, action, "rita", &rita, &ticket, Some(&body)).await;
        assert_eq!(response.status(), 422, "{field}");
        assert_eq!(json_body(&response)["errors"][0]["field"], field);
    }

    let resolved = act(
        &stack,
        TicketAction::Resolve,
        "rita",
        &rita,
        &ticket,
        Some(r#"{"status":"dismissed","summary":"unfounded"}"#),
    )
    .await;
    assert_eq!(resolved.status(), 200);
    let late = act(
        &stack,
        TicketAction::AddNote,
        "rita",
        &rita,
        &ticket,
        Some(r#"{"content":"one more thing"}"#),
    )
    .await;
    assert_eq!(late.status(), 409);
    assert_eq!(json_body(&late)["current_status"], "dismissed");
    assert!(stack.reviews().notes(&ticket).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_ticket_holds_a_bounded_number_of_notes() {
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;
    let reviews = stack.reviews();
    for i in 0..shared::reviews::store::MAX_NOTES_PER_TICKET {
        reviews
            .add_note(&ticket, "rita", &format!("note {i}"), i as i64)
            .await
            .unwrap()
            .unwrap();
    }
    let full = act(
        &stack,
        TicketAction::AddNote,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"content":"too many"}"#),
    )
    .await;
    assert_eq!(full.status(), 409);
    assert_eq!(
        json_body(&full)["type"],
        "urn:neuraforge:problem:ticket-notes-full"
    );
    assert_eq!(
        reviews.notes(&ticket).await.unwrap().len(),
        shared::reviews::store::MAX_NOTES_PER_TICKET
    );
}

// 12. Markdown dossier injection.
#[tokio::test]
async fn the_markdown_dossier_neutralises_hostile_text_and_every_response_forbids_sniffing() {
    let stack = TestStack::new().await;
    let body = r#"{"prompt":"<img src=x onerror=alert(1)> [click](javascript:alert(1))\r\nRefund card 4111 1111 1111 1111"}"#;
    let task = submit_as(&stack, "alice", &["submitter"], body).await;
    stack.deliver_once(30).await;
    let task_id = task["task_id"].as_str().unwrap();
    let ticket = ticket_of(&stack, task_id).await;
    let noted = act(
        &stack,
        TicketAction::AddNote,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"content":"<script>alert(2)</script> [x](javascript:void(0))"}"#),
    )
    .await;
    assert_eq!(noted.status(), 200);

    let dossier = stack.dossier_api(DossierFormat::Markdown);
    let response = respond(&dossier, get_as("olga", &["observer"], "task_id", task_id)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    let md = String::from_utf8_lossy(response.body().as_ref()).to_string();
    for hostile in ["<img", "<script", "](javascript:", "\r"] {
        assert!(!md.contains(hostile), "{hostile:?} survived: {md}");
    }
    assert!(md.contains("&lt;script&gt;"), "{md}");

    // JSON answers (and problems) carry the same headers.
    let problem = respond(
        &stack.get_api(),
        get_as("olga", &["observer"], "task_id", "not-a-uuid"),
    )
    .await;
    assert_eq!(problem.status(), 400);
    assert_eq!(problem.headers()["x-content-type-options"], "nosniff");
}

// 19. A keyed submission is two conditional puts, the claim then the task (a transaction would
// cost both twice): a submission that died between them is completed by the client's retry.
#[tokio::test]
async fn a_keyed_submission_that_died_between_claim_and_task_is_completed_by_its_retry() {
    let stack = TestStack::new().await;
    let body = r#"{"prompt":"Summarise the quarter."}"#;
    let api = stack.submit_api();
    let send = |key: &'static str| {
        respond(
            &api,
            submit_request(&token("alice", &["submitter"]), body, Some(key)),
        )
    };
    let first = send("key-1").await;
    assert_eq!(first.status(), 200, "{}", json_body(&first));
    let id = json_body(&first)["task_id"].as_str().unwrap().to_string();
    // The submission died after its claim: no task item, no message.
    stack
        .dynamodb
        .delete_item()
        .table_name(&stack.local.tables["TasksTable"])
        .key("task_id", AttributeValue::S(id.clone()))
        .send()
        .await
        .unwrap();
    stack.receive(stack.queue_url(), 30).await;

    let retry = send("key-1").await;
    assert_eq!(retry.status(), 200, "{}", json_body(&retry));
    assert_eq!(json_body(&retry)["task_id"], id, "the task the claim names");
    assert!(!retry.headers().contains_key("idempotent-replayed"));
    let task = stack
        .store()
        .get(TaskId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(task.unwrap().status, TaskStatus::Queued);
    let sent = stack.receive(stack.queue_url(), 30).await;
    assert_eq!(sent.len(), 1, "the retry enqueued it");
    assert!(sent[0].body().unwrap().contains(&id));

    // From then on the key replays.
    let again = send("key-1").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_body(&again)["task_id"], id);

    // Twins racing with one key make one task.
    let (a, b) = tokio::join!(send("key-2"), send("key-2"));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(json_body(&a)["task_id"], json_body(&b)["task_id"]);
    let tasks = stack.scan("TasksTable").await;
    assert_eq!(tasks.len(), 2, "key-1's task and key-2's");
}

#[tokio::test]
async fn ticket_changes_notes_and_audit_appends_ride_out_a_transaction_conflict() {
    use neuraforge_tests::inject_transaction_conflicts;
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;

    inject_transaction_conflicts(&stack, "ReviewsTable", 1).await;
    let assigned = act(
        &stack,
        TicketAction::Assign,
        "rita",
        &["reviewer"],
        &ticket,
        None,
    )
    .await;
    assert_eq!(assigned.status(), 200, "{}", json_body(&assigned));

    inject_transaction_conflicts(&stack, "ReviewsTable", 1).await;
    let noted = act(
        &stack,
        TicketAction::AddNote,
        "rita",
        &["reviewer"],
        &ticket,
        Some(r#"{"content":"checked"}"#),
    )
    .await;
    assert_eq!(noted.status(), 200, "{}", json_body(&noted));
}

// 15. A crash between opening the ticket and settling the task.
#[tokio::test]
async fn a_ticket_is_not_decided_before_its_task_settles_and_the_redelivery_repairs_it() {
    let stack = TestStack::new().await;
    let task = submit_as(&stack, "alice", &["submitter"], RISKY).await;
    let task_id = shared::tasks::TaskId::parse(task["task_id"].as_str().unwrap()).unwrap();
    // The worker claimed the task and opened its ticket, then died before settling it.
    let now = shared::time::now_millis();
    // Its 1 ms lease ran out a second ago.
    let claimed = stack.store().claim(task_id, now - 1_000, 1).await.unwrap();
    assert!(matches!(
        claimed,
        shared::tasks::leases::ClaimOutcome::Claimed(..)
    ));
    let mut ticket = neuraforge_tests::seeded_ticket(now);
    ticket.task_id = task_id;
    ticket.escalation_payload = serde_json::json!({"meta": {"submitted_by": "alice"}});
    stack.reviews().open(&ticket).await.unwrap();

    let resolve = || {
        act(
            &stack,
            TicketAction::Resolve,
            "rita",
            &["reviewer"],
            ticket.ticket_id.as_str(),
            Some(r#"{"status":"resolved"}"#),
        )
    };
    let early = resolve().await;
    assert_eq!(early.status(), 409, "{}", json_body(&early));
    assert_eq!(
        json_body(&early)["type"],
        "urn:neuraforge:problem:task-not-settled"
    );
    assert!(early.headers().contains_key("retry-after"));
    let still = stack
        .reviews()
        .get(ticket.ticket_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, shared::reviews::TicketStatus::Open);

    // The redelivery (the lease has run out) settles the task under the same open ticket.
    stack.deliver_once(30).await;
    let waiting = stack.store().get(task_id).await.unwrap().unwrap();
    assert_eq!(waiting.status, TaskStatus::AwaitingReview);
    assert_eq!(
        waiting.result.unwrap().review.unwrap().ticket_id,
        Some(ticket.ticket_id.clone())
    );

    let decided = resolve().await;
    assert_eq!(decided.status(), 200, "{}", json_body(&decided));
    assert_eq!(
        stack.store().get(task_id).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
}

// 9. Reads are limited too, without a DynamoDB write per read.
#[tokio::test]
async fn reads_are_rate_limited_per_principal_in_the_execution_environment() {
    let stack = TestStack::new().await;
    let task = stack
        .submit("alice", r#"{"prompt":"Summarise the quarter."}"#)
        .await;
    let settings = stack.settings_with(&[("RATE_LIMIT__READ__CAPACITY", "2")]);
    let api = shared::tasks::status::GetTaskApi {
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings).unwrap(),
        store: stack.store(),
        runs: stack.runs(),
    };
    let get = |who: &str| get_as(who, &["observer"], "task_id", &task.to_string());
    let first = respond(&api, get("olga")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-policy"], "\"read\";q=2;w=60");
    assert_eq!(respond(&api, get("olga")).await.status(), 200);
    let refused = respond(&api, get("olga")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(
        json_body(&refused)["type"],
        "urn:neuraforge:problem:rate-limited"
    );
    assert_eq!(
        respond(&api, get("rita")).await.status(),
        200,
        "others are not affected"
    );
    // No counter item: the read path writes nothing.
    let items = stack.scan("RateLimitsTable").await;
    assert!(
        items
            .iter()
            .all(|i| !i["limit_key"].as_s().unwrap().starts_with("read"))
    );
}

// 18. No task stays queued or in progress once its message was dead-lettered.
#[tokio::test]
async fn queue_health_fails_the_tasks_of_dead_lettered_messages_and_leaves_the_messages() {
    use shared::runtime::ScheduledJob;
    let stack = TestStack::new().await;
    let done = stack
        .submit("alice", r#"{"prompt":"Summarise the quarter."}"#)
        .await;
    stack.deliver_once(30).await;
    let stuck = stack.submit("alice", r#"{"prompt":"never run"}"#).await;
    // Both messages exhausted their receives (written straight to the DLQ here).
    for id in [done, stuck] {
        stack.dead_letter(id).await;
    }
    let before = stack.store().get(done).await.unwrap().unwrap().status;
    let job =
        shared::queue_health::QueueHealth::from_settings(&stack.sdk, &stack.settings()).unwrap();
    job.run_once().await.unwrap();

    let failed = stack.store().get(stuck).await.unwrap().unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(failed.last_error.unwrap().starts_with("dead_lettered"));
    assert_eq!(
        stack.store().get(done).await.unwrap().unwrap().status,
        before,
        "a settled task is left as it is"
    );
    assert_eq!(
        stack.queue_depth(stack.dlq_url()).await,
        2,
        "the messages stay for replay"
    );
}

// 13. A stalled dependency is an answer, not a Lambda time-out.
#[tokio::test]
async fn an_aws_call_to_a_stalled_dependency_gives_up_within_the_operation_time_out() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let sdk = shared::aws::configure(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .endpoint_url(format!("http://{address}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "k", "s", None, None, "t",
        ))
        .load()
        .await;
    let tables = shared::tasks::store::TaskTables::from_settings(&shared::config::Settings::new(
        |k| match k {
            "TASKS_TABLE" => Some("t".to_string()),
            _ => None,
        },
    ))
    .unwrap();
    let store = shared::tasks::store::TaskStore::new(&sdk, tables);
    let started = std::time::Instant::now();
    let err = store.get(shared::tasks::TaskId::new()).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= shared::aws::ATTEMPT_TIMEOUT
            && took < shared::aws::OPERATION_TIMEOUT + std::time::Duration::from_secs(1),
        "gave up after {took:?}"
    );
    // Unavailable: an API function answers 503 with Retry-After, a worker retries the message.
    assert!(
        matches!(err, shared::dynamo::StoreError::Unavailable(_)),
        "{err:?}"
    );
    held.abort();
}
