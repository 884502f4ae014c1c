//! Review tickets on moto: opened from review requests (once per task), guarded
//! transitions as conditional writes, notes and history as their own items.

use neuraforge_tests::TestStack;
use shared::reviews::store::{Assignee, Change, Opened, Refused};
use shared::reviews::{TicketStatus, ticket_for};
use shared::tasks::TaskStatus;
use shared::tasks::model::TaskMessage;

const RISKY: &str = r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#;

fn change(to: TicketStatus, actor: &str) -> Change<'_> {
    Change {
        to,
        assign: Assignee::Keep,
        summary: None,
        actor,
        detail: serde_json::Value::Null,
    }
}

#[tokio::test]
async fn a_task_sent_to_review_opens_one_ticket_with_its_escalation_payload() {
    let stack = TestStack::new().await;
    let id = stack.submit("alice", RISKY).await;
    stack
        .queue()
        .send(&TaskMessage {
            task_id: id,
            request_id: None,
        })
        .await
        .unwrap();
    stack.deliver_once(30).await; // two deliveries of the same task in one batch
    assert_eq!(
        stack.store().get(id).await.unwrap().unwrap().status,
        TaskStatus::AwaitingReview
    );

    let open = stack
        .reviews()
        .by_status(TicketStatus::Open, 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "one ticket, however many deliveries");
    let ticket = &open[0];
    assert_eq!(ticket.task_id, id);
    assert_eq!(
        ticket.sources,
        vec!["guardrail:pii.v1", "guardrail:risk_threshold.v1"]
    );
    let payload = &ticket.escalation_payload;
    assert!(
        payload["prompt"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:card]"),
        "the card number is not in the ticket"
    );
    assert_eq!(payload["guardrails"][0]["policy_id"], "pii.v1");
    assert!(
        payload["meta"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("pii.v1")
    );
    let history = stack
        .reviews()
        .history(ticket.ticket_id.as_str())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["action"], "opened");
}

#[tokio::test]
async fn a_replayed_review_request_opens_the_same_ticket_and_a_second_one_is_refused() {
    let stack = TestStack::new().await;
    let id = stack.submit("alice", RISKY).await;
    stack.deliver_once(30).await;
    let task = stack.store().get(id).await.unwrap().unwrap();
    let result = task.result.clone().unwrap();
    let reviews = stack.reviews();
    let ticket = ticket_for(&task, &result, result.review.as_ref().unwrap(), 1);
    assert_eq!(
        reviews.open(&ticket).await.unwrap(),
        Opened::AlreadyOpen(ticket.ticket_id.clone())
    );
    let mut other = ticket.clone();
    other.ticket_id = shared::tasks::TicketId::from_raw(uuid::Uuid::new_v4().to_string());
    assert_eq!(
        reviews.open(&other).await.unwrap(),
        Opened::AlreadyOpen(ticket.ticket_id.clone()),
        "one open ticket per task"
    );
}

#[tokio::test]
async fn tickets_move_only_along_the_allowed_transitions_and_keep_their_history() {
    let stack = TestStack::new().await;
    stack.submit("alice", RISKY).await;
    stack.deliver_once(30).await;
    let reviews = stack.reviews();
    let id = reviews.by_status(TicketStatus::Open, 1).await.unwrap()[0]
        .ticket_id
        .to_string();

    let assign = Change {
        assign: Assignee::Set("rita"),
        ..change(TicketStatus::InReview, "rita")
    };
    let assigned = reviews.change(&id, &assign, 10).await.unwrap().unwrap();
    assert_eq!(
        (
            assigned.status,
            assigned.assigned_to.as_deref(),
            assigned.version
        ),
        (TicketStatus::InReview, Some("rita"), 2)
    );
    // in_review → in_review is not a transition.
    assert_eq!(
        reviews.change(&id, &assign, 11).await.unwrap(),
        Err(Refused::Conflict(TicketStatus::InReview))
    );

    let unassign = Change {
        assign: Assignee::Clear,
        ..change(TicketStatus::Open, "rita")
    };
    let back = reviews.change(&id, &unassign, 12).await.unwrap().unwrap();
    assert_eq!((back.status, back.assigned_to), (TicketStatus::Open, None));

    let resolve = Change {
        summary: Some("approved: refund is legitimate"),
        ..change(TicketStatus::Resolved, "rita")
    };
    let resolved = reviews.change(&id, &resolve, 13).await.unwrap().unwrap();
    assert_eq!(
        (resolved.status, resolved.summary.as_deref()),
        (
            TicketStatus::Resolved,
            Some("approved: refund is legitimate")
        )
    );
    for next in [
        TicketStatus::Open,
        TicketStatus::InReview,
        TicketStatus::Dismissed,
    ] {
        assert_eq!(
            reviews
                .change(&id, &change(next, "rita"), 14)
                .await
                .unwrap(),
            Err(Refused::Conflict(TicketStatus::Resolved)),
            "{next:?}"
        );
    }
    assert_eq!(
        reviews
            .change(
                "no-such-ticket",
                &change(TicketStatus::Resolved, "rita"),
                15
            )
            .await
            .unwrap(),
        Err(Refused::NotFound)
    );

    let actions: Vec<String> = reviews
        .history(&id)
        .await
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, vec!["opened", "in_review", "open", "resolved"]);
    assert!(
        reviews
            .by_status(TicketStatus::Open, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reviews
            .by_status(TicketStatus::Resolved, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn two_reviewers_acting_at_once_cannot_both_win() {
    let stack = TestStack::new().await;
    stack.submit("alice", RISKY).await;
    stack.deliver_once(30).await;
    let reviews = stack.reviews();
    let id = reviews.by_status(TicketStatus::Open, 1).await.unwrap()[0]
        .ticket_id
        .to_string();
    let claims = ["rita", "ravi", "rosa", "remy"].map(|who| {
        let reviews = reviews.clone();
        let id = id.clone();
        async move {
            let c = Change {
                assign: Assignee::Set(who),
                ..change(TicketStatus::InReview, who)
            };
            reviews.change(&id, &c, 20).await.unwrap()
        }
    });
    let results = futures_util::future::join_all(claims).await;
    let winners: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|t| t.assigned_to.as_deref())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| *r == Err(Refused::Conflict(TicketStatus::InReview)))
    );
    assert_eq!(
        reviews
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .assigned_to
            .as_deref(),
        Some(winners[0])
    );
}

#[tokio::test]
async fn notes_are_kept_in_order_as_their_own_items() {
    let stack = TestStack::new().await;
    stack.submit("alice", RISKY).await;
    stack.deliver_once(30).await;
    let reviews = stack.reviews();
    let id = reviews.by_status(TicketStatus::Open, 1).await.unwrap()[0]
        .ticket_id
        .to_string();
    reviews
        .add_note(&id, "rita", "checking the refund", 100)
        .await
        .unwrap()
        .unwrap();
    reviews
        .add_note(&id, "ravi", "customer confirmed", 200)
        .await
        .unwrap()
        .unwrap();
    let notes = reviews.notes(&id).await.unwrap();
    let texts: Vec<(&str, &str)> = notes
        .iter()
        .map(|n| (n.author.as_str(), n.content.as_str()))
        .collect();
    assert_eq!(
        texts,
        vec![
            ("rita", "checking the refund"),
            ("ravi", "customer confirmed")
        ]
    );
    assert_eq!(
        reviews.get(&id).await.unwrap().unwrap().version,
        1,
        "a note does not change the ticket item"
    );
}

mod decisions {
    use super::*;
    use shared::auth::Principal;
    use shared::http::problem::ApiError;
    use shared::reviews::decisions::{Outcome, Reviews};

    fn person(sub: &str, roles: &[&str]) -> Principal {
        let scopes = roles
            .iter()
            .flat_map(|r| shared::auth::role_scopes(r).iter().map(|s| s.to_string()))
            .collect();
        Principal {
            subject: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes,
        }
    }

    fn reviews(stack: &TestStack) -> Reviews {
        Reviews {
            tickets: stack.reviews(),
            tasks: stack.store(),
            runs: stack.runs(),
        }
    }

    async fn ticket_of_a_risky_task(stack: &TestStack) -> (shared::tasks::TaskId, String) {
        let id = stack.submit("alice", RISKY).await;
        stack.deliver_once(30).await;
        (
            id,
            stack
                .reviews()
                .by_status(TicketStatus::Open, 1)
                .await
                .unwrap()[0]
                .ticket_id
                .to_string(),
        )
    }

    #[tokio::test]
    async fn approving_completes_the_task_and_records_review_decided() {
        let stack = TestStack::new().await;
        let (task, ticket) = ticket_of_a_risky_task(&stack).await;
        let rita = person("rita", &["reviewer"]);
        let r = reviews(&stack);
        r.assign(&rita, &ticket, None, 10).await.unwrap();
        let resolved = r
            .resolve(
                &rita,
                &ticket,
                TicketStatus::Resolved,
                Outcome::Approve,
                Some("legitimate refund"),
                20,
            )
            .await
            .unwrap();
        assert_eq!(resolved.status, TicketStatus::Resolved);
        assert_eq!(
            stack.store().get(task).await.unwrap().unwrap().status,
            TaskStatus::Completed
        );
        let events = stack
            .runs()
            .events_after(task, 0, 100, shared::tasks::Read::Latest)
            .await
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.event, "review_decided");
        assert_eq!(
            (
                last.payload["outcome"].as_str(),
                last.payload["task_status"].as_str()
            ),
            (Some("approve"), Some("completed"))
        );
        assert_eq!(
            last.sequence,
            events.len() as u64,
            "appended after the run's events, no gap"
        );
    }

    #[tokio::test]
    async fn rejecting_fails_the_task_with_the_reviewers_summary_and_dismissing_completes_it() {
        let stack = TestStack::new().await;
        let r = reviews(&stack);
        let rita = person("rita", &["reviewer"]);
        let (task, ticket) = ticket_of_a_risky_task(&stack).await;
        r.resolve(
            &rita,
            &ticket,
            TicketStatus::Resolved,
            Outcome::Reject,
            Some("card data must not be processed"),
            20,
        )
        .await
        .unwrap();
        let failed = stack.store().get(task).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.last_error.as_deref()),
            (TaskStatus::Failed, Some("card data must not be processed"))
        );

        let (task2, ticket2) = ticket_of_a_risky_task(&stack).await;
        let dismissed = r
            .resolve(
                &rita,
                &ticket2,
                TicketStatus::Dismissed,
                Outcome::Approve,
                None,
                30,
            )
            .await
            .unwrap();
        assert_eq!(dismissed.status, TicketStatus::Dismissed);
        assert_eq!(
            stack.store().get(task2).await.unwrap().unwrap().status,
            TaskStatus::Completed
        );
    }

    #[tokio::test]
    async fn acting_on_someone_elses_ticket_needs_reviews_admin() {
        let stack = TestStack::new().await;
        let (_, ticket) = ticket_of_a_risky_task(&stack).await;
        let r = reviews(&stack);
        let (rita, ravi, ada, olga) = (
            person("rita", &["reviewer"]),
            person("ravi", &["reviewer"]),
            person("ada", &["review_admin"]),
            person("olga", &["observer"]),
        );
        assert!(
            matches!(
                r.assign(&olga, &ticket, None, 1).await,
                Err(ApiError::Forbidden)
            ),
            "observers only read"
        );
        assert!(
            matches!(
                r.assign(&rita, &ticket, Some("ravi"), 1).await,
                Err(ApiError::Forbidden)
            ),
            "only an admin assigns to someone else"
        );
        assert_eq!(
            r.assign(&ada, &ticket, Some("rita"), 2)
                .await
                .unwrap()
                .assigned_to
                .as_deref(),
            Some("rita")
        );
        assert!(
            matches!(
                r.unassign(&ravi, &ticket, None, 3).await,
                Err(ApiError::Forbidden)
            ),
            "ravi cannot unassign rita's ticket"
        );
        assert!(matches!(
            r.resolve(
                &ravi,
                &ticket,
                TicketStatus::Resolved,
                Outcome::Approve,
                None,
                4
            )
            .await,
            Err(ApiError::Forbidden)
        ));
        assert_eq!(
            r.unassign(&ada, &ticket, None, 5).await.unwrap().status,
            TicketStatus::Open,
            "an admin may"
        );
    }

    #[tokio::test]
    async fn a_second_decision_is_a_409_with_the_current_status_and_repairs_an_unsettled_task() {
        let stack = TestStack::new().await;
        let (task, ticket) = ticket_of_a_risky_task(&stack).await;
        let r = reviews(&stack);
        let rita = person("rita", &["reviewer"]);
        // A crash after the ticket was decided but before the task was settled.
        let decide = Change {
            to: TicketStatus::Resolved,
            assign: Assignee::Keep,
            summary: Some("approved"),
            actor: "rita",
            detail: serde_json::json!({"outcome": "approve"}),
        };
        stack
            .reviews()
            .change(&ticket, &decide, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stack.store().get(task).await.unwrap().unwrap().status,
            TaskStatus::AwaitingReview
        );

        let again = r
            .resolve(
                &rita,
                &ticket,
                TicketStatus::Resolved,
                Outcome::Approve,
                None,
                20,
            )
            .await;
        assert!(
            matches!(again, Err(ApiError::TicketConflict { status: "resolved" })),
            "{again:?}"
        );
        let problem = again.unwrap_err().to_response("r", "/x");
        assert_eq!(problem.status(), 409);
        assert_eq!(
            neuraforge_tests::json_body(&problem)["current_status"],
            "resolved"
        );
        assert_eq!(
            stack.store().get(task).await.unwrap().unwrap().status,
            TaskStatus::Completed,
            "the retry finished the task's part"
        );
        let decided = stack
            .runs()
            .events_after(task, 0, 100, shared::tasks::Read::Latest)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event == "review_decided")
            .count();
        assert_eq!(decided, 1);
        // And once more: the same 409, nothing changes, nothing is recorded twice.
        let third = r
            .resolve(
                &rita,
                &ticket,
                TicketStatus::Resolved,
                Outcome::Approve,
                None,
                30,
            )
            .await;
        assert!(
            matches!(third, Err(ApiError::TicketConflict { status: "resolved" })),
            "{third:?}"
        );
        let decided = stack
            .runs()
            .events_after(task, 0, 100, shared::tasks::Read::Latest)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event == "review_decided")
            .count();
        assert_eq!(decided, 1);
    }

    #[test]
    fn outcomes_default_to_approve_and_refuse_anything_else() {
        assert_eq!(Outcome::parse(None).unwrap(), Outcome::Approve);
        assert_eq!(Outcome::parse(Some("reject")).unwrap(), Outcome::Reject);
        assert!(matches!(
            Outcome::parse(Some("maybe")),
            Err(ApiError::Validation(_))
        ));
    }
}

mod listing {
    use super::*;
    use shared::reviews::listing::{ListCursor, ListPage, ListQuery};
    use shared::reviews::store::ReviewStore;

    /// Nine tickets at t=1…9: in_review for t=2,5,8 (assigned to rita), resolved for t=3,6.
    async fn seeded(store: &ReviewStore) -> Vec<String> {
        let mut ids = Vec::new();
        for t in 1..=9 {
            let tk = neuraforge_tests::seeded_ticket(t);
            store.open(&tk).await.unwrap();
            if [2, 5, 8].contains(&t) {
                let c = Change {
                    assign: Assignee::Set("rita"),
                    ..change(TicketStatus::InReview, "rita")
                };
                store
                    .change(tk.ticket_id.as_str(), &c, t)
                    .await
                    .unwrap()
                    .unwrap();
            }
            if [3, 6].contains(&t) {
                store
                    .change(
                        tk.ticket_id.as_str(),
                        &change(TicketStatus::Resolved, "rita"),
                        t,
                    )
                    .await
                    .unwrap()
                    .unwrap();
            }
            ids.push(tk.ticket_id.to_string());
        }
        ids
    }

    async fn all_pages(store: &ReviewStore, query: &ListQuery) -> (Vec<i64>, usize) {
        let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, ListCursor::new());
        loop {
            let ListPage { tickets, next } = store.list(query, &cursor).await.unwrap();
            pages += 1;
            assert!(tickets.len() <= query.limit);
            seen.extend(tickets.iter().map(|t| t.created_at));
            match next {
                Some(n) => cursor = n,
                None => return (seen, pages),
            }
            assert!(pages < 20, "paging never ended");
        }
    }

    #[tokio::test]
    async fn every_status_pages_oldest_first_without_gaps_or_repeats() {
        let stack = TestStack::new().await;
        let store = stack.reviews();
        seeded(&store).await;
        let (seen, pages) = all_pages(
            &store,
            &ListQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(seen, (1..=9).collect::<Vec<_>>());
        assert!(pages >= 5);
    }

    #[tokio::test]
    async fn filters_by_status_assignee_and_age_use_the_indexes() {
        let stack = TestStack::new().await;
        seeded(&stack.reviews()).await;
        // Every listing below goes through a client that records what it asks DynamoDB.
        let recorder = neuraforge_tests::recorder::Recorder::default();
        let store = stack.with_sdk(recorder.sdk(&stack.sdk)).reviews();
        let open = all_pages(
            &store,
            &ListQuery {
                statuses: vec![TicketStatus::Open],
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .0;
        assert_eq!(open, vec![1, 4, 7, 9]);
        let active = all_pages(
            &store,
            &ListQuery {
                statuses: vec![TicketStatus::Open, TicketStatus::InReview],
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .0;
        assert_eq!(active, vec![1, 2, 4, 5, 7, 8, 9]);
        let ritas = all_pages(
            &store,
            &ListQuery {
                assignee: Some("rita".into()),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .0;
        assert_eq!(ritas, vec![2, 5, 8]);
        let old_open = all_pages(
            &store,
            &ListQuery {
                statuses: vec![TicketStatus::Open],
                created_before: Some(4),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .0;
        assert_eq!(old_open, vec![1, 4]);
        assert!(recorder.requests("Scan").is_empty(), "no listing scans");
        let queries = recorder.requests("Query");
        assert!(!queries.is_empty());
        for query in &queries {
            assert!(
                matches!(
                    query["IndexName"].as_str(),
                    Some("by-status" | "by-assignee")
                ),
                "{query}"
            );
        }
        assert!(
            queries.iter().any(|q| q["KeyConditionExpression"]
                .as_str()
                .unwrap()
                .contains("created_at <=")),
            "the age filter is part of the key condition, not a filter after reading"
        );
    }
}
