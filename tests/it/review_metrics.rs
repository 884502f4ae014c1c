//! Reviewer analytics on moto: `GET /api/v1/reviews/metrics` and the backlog
//! gauges, on a seeded history whose figures are worked out by hand below.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, request, seeded_ticket, token};
use shared::reviews::TicketStatus;
use shared::reviews::metrics::{BacklogMetrics, QueueSnapshot, ReviewMetricsApi, report};
use shared::reviews::store::{Assignee, Change, ReviewStore};
use shared::runtime::ScheduledJob;
use std::collections::BTreeMap;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

async fn open(store: &ReviewStore, created_at: i64) -> String {
    let t = seeded_ticket(created_at);
    store.open(&t).await.unwrap();
    t.ticket_id.to_string()
}

async fn assign(store: &ReviewStore, id: &str, who: &str, at: i64) {
    let change = Change {
        to: TicketStatus::InReview,
        assign: Assignee::Set(who),
        summary: None,
        actor: who,
        detail: serde_json::Value::Null,
    };
    store.change(id, &change, at).await.unwrap().unwrap();
}

async fn close(store: &ReviewStore, id: &str, to: TicketStatus, who: &str, at: i64) {
    let change = Change {
        to,
        assign: Assignee::Keep,
        summary: Some("decided"),
        actor: who,
        detail: serde_json::Value::Null,
    };
    store.change(id, &change, at).await.unwrap().unwrap();
}

/// The history, relative to `now`:
///
/// | ticket | created | what happened | resolution |
/// |---|---|---|---|
/// | A | now − 300 min | open, unassigned | |
/// | B | now − 60 min | open, unassigned | |
/// | C | now − 200 min | assigned to rita at now − 150 min | |
/// | D | now − 30 min | assigned to sam at now − 20 min | |
/// | E | now − 10 d | resolved by rita 90 min later (outside the 7 d window) | 90 |
/// | F | now − 3 d | assigned to rita, resolved by her 20 min after creation | 20 |
/// | G | now − 2 d | dismissed by sam 10 min later | 10 |
/// | H | now − 5 h | resolved by rita at now − 2 h (inside 24 h) | 180 |
/// | I | now − 30 h | resolved by sam at now − 25 h (outside 24 h) | 300 |
async fn seed(store: &ReviewStore, now: i64) {
    open(store, now - 300 * MIN).await;
    open(store, now - 60 * MIN).await;
    let c = open(store, now - 200 * MIN).await;
    assign(store, &c, "rita", now - 150 * MIN).await;
    let d = open(store, now - 30 * MIN).await;
    assign(store, &d, "sam", now - 20 * MIN).await;
    let e = open(store, now - 10 * DAY).await;
    close(
        store,
        &e,
        TicketStatus::Resolved,
        "rita",
        now - 10 * DAY + 90 * MIN,
    )
    .await;
    let f = open(store, now - 3 * DAY).await;
    assign(store, &f, "rita", now - 3 * DAY + 5 * MIN).await;
    close(
        store,
        &f,
        TicketStatus::Resolved,
        "rita",
        now - 3 * DAY + 20 * MIN,
    )
    .await;
    let g = open(store, now - 2 * DAY).await;
    close(
        store,
        &g,
        TicketStatus::Dismissed,
        "sam",
        now - 2 * DAY + 10 * MIN,
    )
    .await;
    let h = open(store, now - 5 * HOUR).await;
    close(store, &h, TicketStatus::Resolved, "rita", now - 2 * HOUR).await;
    let i = open(store, now - 30 * HOUR).await;
    close(store, &i, TicketStatus::Resolved, "sam", now - 25 * HOUR).await;
}

#[tokio::test]
async fn the_metrics_of_a_seeded_history_are_the_figures_worked_out_by_hand() {
    let stack = TestStack::new().await;
    let store = stack.reviews();
    let now = shared::time::now_millis();
    seed(&store, now).await;

    let figures = serde_json::to_value(report(
        &QueueSnapshot::read(&store, now).await.unwrap(),
        120,
    ))
    .unwrap();
    let expected = serde_json::json!({
        "generated_at": shared::time::rfc3339(now),
        // Open: A, B. In review: C, D. Resolved: E, F, H, I. Dismissed: G.
        "totals": {"open": 2, "in_review": 2, "resolved": 4, "dismissed": 1},
        "assignment": {"by_reviewer": {"rita": 1, "sam": 1}, "unassigned_open": 2},
        "aging": {
            "open_average_minutes": 180.0,      // (300 + 60) / 2
            "open_oldest_minutes": 300.0,       // A
            "in_review_average_minutes": 115.0, // (200 + 30) / 2
        },
        "resolution": {
            "average_minutes": 120.0, // (90 + 20 + 10 + 180 + 300) / 5
            // Histogram: 10 in (5,15], 20 in (15,30], 90 in (60,120], 180 in (120,240],
            // 300 in (240,480]. Rank 2.5 of 5 falls half way into (60,120]: 60 + 60 × 0.5.
            "median_minutes": 90.0,
            "completed_last_24h": 1, // H
        },
        "queue_health": {
            "backlog_pressure": 2.0, // 4 pending / 2 reviewers active in 7 d
            "sla_breaches": 2,       // A (300 min) and C (200 min) are past 120 min
            "escalations_pending": 4,
        },
        "trends": {
            "resolved_last_7d": 3,  // F, H, I
            "dismissed_last_7d": 1, // G
            "median_resolution_minutes_7d": 100.0, // 10, 20, 180, 300 → (20 + 180) / 2
        },
        "velocity": {
            "per_reviewer_last_7d": {"rita": 2, "sam": 2}, // rita F, H; sam G, I
            "median_resolution_minutes_last_7d": 100.0,
            "average_daily_closed_last_7d": 0.57, // 4 / 7
            "active_reviewers_last_7d": 2,
        },
    });
    assert_eq!(figures, expected);
}

#[tokio::test]
async fn the_metrics_route_answers_the_v1_shape_to_readers_only() {
    let stack = TestStack::new().await;
    let store = stack.reviews();
    seed(&store, shared::time::now_millis()).await;
    let api = ReviewMetricsApi {
        reads: stack.reads(),
        tickets: store,
        sla_minutes: 120,
    };
    let path = "/api/v1/reviews/metrics";
    let ok = respond(
        &api,
        request("GET", path, Some(&token("olga", &["observer"])), None).build(),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let body = json_body(&ok);
    let sections: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        sections,
        vec![
            "aging",
            "assignment",
            "generated_at",
            "queue_health",
            "resolution",
            "totals",
            "trends",
            "velocity"
        ]
    );
    assert_eq!(body["totals"]["resolved"], 4);
    assert_eq!(body["velocity"]["active_reviewers_last_7d"], 2);

    let submitter = respond(
        &api,
        request("GET", path, Some(&token("alice", &["submitter"])), None).build(),
    )
    .await;
    assert_eq!(submitter.status(), 403);
    let anonymous = respond(&api, request("GET", path, None, None).build()).await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_aggregates_follow_every_ticket_change_through_the_api() {
    use shared::reviews::api::TicketAction;
    let stack = TestStack::new().await;
    let ticket = stack.open_ticket().await;
    let totals = |stack: &TestStack| {
        let store = stack.reviews();
        async move { store.totals().await.unwrap().by_status }
    };
    // [open, in_review, resolved, dismissed]
    assert_eq!(totals(&stack).await, [1, 0, 0, 0]);
    let call = |action: TicketAction, body: Option<&'static str>| {
        let api = stack.ticket_api(action);
        let route = action.route();
        let req = request(
            route.methods[0],
            route.path,
            Some(&token("rita", &["reviewer"])),
            body,
        )
        .path_param("ticket_id", &ticket)
        .build();
        async move { respond(&api, req).await.status() }
    };
    assert_eq!(call(TicketAction::Assign, None).await, 200);
    assert_eq!(totals(&stack).await, [0, 1, 0, 0]);
    // A refused transition changes nothing.
    assert_eq!(call(TicketAction::Assign, None).await, 409);
    assert_eq!(totals(&stack).await, [0, 1, 0, 0]);
    assert_eq!(
        call(TicketAction::Resolve, Some(r#"{"status":"dismissed"}"#)).await,
        200
    );
    assert_eq!(totals(&stack).await, [0, 0, 0, 1]);
    let all = stack.reviews().totals().await.unwrap();
    assert_eq!(all.closed, 1);
    assert_eq!(all.resolution_buckets.iter().sum::<u64>(), 1);
    // Opening the same ticket again (a replayed review request) does not count twice.
    let decided = stack.reviews().get(&ticket).await.unwrap().unwrap();
    stack.reviews().open(&decided).await.unwrap();
    assert_eq!(totals(&stack).await, [0, 0, 0, 1]);
}

#[tokio::test]
async fn the_backlog_job_reports_the_queue_by_status_including_unassigned() {
    let stack = TestStack::new().await;
    let store = stack.reviews();
    let now = shared::time::now_millis();
    seed(&store, now).await;
    let report = BacklogMetrics::new(store).run_once().await.unwrap();
    assert!(report.reported, "tickets are waiting: the gauges are sent");
    let backlog = report.backlog;
    let expected: BTreeMap<&str, u64> = [
        ("open", 2),
        ("in_review", 2),
        ("resolved", 4),
        ("dismissed", 1),
        ("unassigned", 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(backlog.tickets, expected);
    assert_eq!(
        backlog.open, 4,
        "open and in review: waiting for a decision"
    );
    // A was created 300 minutes before `now`; the job ran a moment later.
    let a = 300.0 * 60.0;
    assert!(
        (a..a + 60.0).contains(&backlog.oldest_age_seconds),
        "{}",
        backlog.oldest_age_seconds
    );
}

#[tokio::test]
async fn the_backlog_job_sends_nothing_while_no_ticket_waits() {
    let stack = TestStack::new().await;
    let job = BacklogMetrics::new(stack.reviews());
    let reported = |r: shared::reviews::metrics::BacklogReport| (r.backlog.open, r.reported);
    // A new environment reports once (zeros: it cannot know what the last one sent), then
    // stays silent: no log line, no CloudWatch custom metric, while nothing waits.
    assert_eq!(reported(job.run_once().await.unwrap()), (0, true));
    assert_eq!(reported(job.run_once().await.unwrap()), (0, false));
    assert_eq!(reported(job.run_once().await.unwrap()), (0, false));
    seed(&stack.reviews(), shared::time::now_millis()).await;
    assert_eq!(reported(job.run_once().await.unwrap()), (4, true));
}
