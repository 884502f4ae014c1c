//! Every sample event in `functions/*/events/` (the ones `sam local invoke -e`
//! and `cargo lambda invoke --data-file` use) runs through its real handler.

use aws_lambda_events::event::sqs::SqsEvent;
use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, next_chunk, workspace_root};
use shared::health::{LivenessApi, ReadinessApi};
use shared::lambda_http::request::from_str;
use shared::tasks::stream::{StreamConfig, SubmitStreamApi, TaskEventsApi};
use std::time::Duration;

/// A `200` event stream that starts with its `retry:` hint.
async fn opened_an_event_stream(
    response: shared::lambda_http::Response<shared::http::ChannelBody>,
) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    assert_eq!(
        next_chunk(&mut body).await.as_deref(),
        Some("retry: 2000\n\n")
    );
}

fn event(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

#[tokio::test]
async fn the_http_sample_events_reach_their_handlers() {
    let stack = TestStack::new().await;
    let submit = respond(
        &stack.submit_api(),
        from_str(&event("functions/submit-task/events/submit.json")).unwrap(),
    )
    .await;
    assert_eq!(submit.status(), 200, "{}", json_body(&submit));
    assert_eq!(json_body(&submit)["status"], "queued");

    let get = respond(
        &stack.get_api(),
        from_str(&event("functions/get-task/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(
        get.status(),
        404,
        "the sample id names no task: {}",
        json_body(&get)
    );
    assert_eq!(json_body(&get)["detail"], "Task not found");

    let run = respond(
        &stack.get_run_api(),
        from_str(&event("functions/get-run/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(
        run.status(),
        404,
        "the sample id names no run: {}",
        json_body(&run)
    );
    assert_eq!(json_body(&run)["detail"], "Run not found");

    // The history samples: the sample client's own tasks (its submission above), and a
    // task id it does not own (the transcript's PUT body is valid: 404, not 422).
    let recent = respond(
        &stack.history_recent_api(),
        from_str(&event("functions/history-recent/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(recent.status(), 200, "{}", json_body(&recent));
    assert_eq!(
        json_body(&recent)[0]["task_id"],
        json_body(&submit)["task_id"]
    );
    for (path, api) in [
        ("functions/history-results/events/get.json", 0),
        ("functions/history-transcript/events/get.json", 1),
        ("functions/history-transcript/events/put.json", 1),
    ] {
        let req = from_str(&event(path)).unwrap();
        let r = match api {
            0 => respond(&stack.history_results_api(), req).await,
            _ => respond(&stack.transcript_api(), req).await,
        };
        assert_eq!(r.status(), 404, "{path}: {}", json_body(&r));
        assert_eq!(json_body(&r)["detail"], "Task not found", "{path}");
    }

    let health = respond(
        &LivenessApi,
        from_str(&event("functions/health/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(health.status(), 200);

    let readiness = ReadinessApi {
        store: stack.store(),
        queue: stack.queue(),
        timeout: Duration::from_secs(2),
    };
    let ready = respond(
        &readiness,
        from_str(&event("functions/readiness/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn the_sqs_sample_event_reports_its_unprocessable_messages() {
    let stack = TestStack::new().await;
    let batch: SqsEvent =
        serde_json::from_str(&event("functions/task-worker/events/sqs-batch.json")).unwrap();
    let ids: Vec<String> = batch
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    let response = stack.worker().handle_batch(batch, None).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(ids.iter().all(|id| failed.contains(id)));
}

#[tokio::test]
async fn the_stream_sample_event_puts_its_new_tasks_on_the_queue() {
    let stack = TestStack::new().await;
    let batch: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_str(&event("functions/task-enqueuer/events/new-tasks.json")).unwrap();
    let response = stack.enqueuer_with(stack.queue()).handle(batch).await;
    assert!(response.batch_item_failures.is_empty());
    // Two INSERTs and a MODIFY: two messages, in the stream's order.
    let sent: Vec<String> = stack
        .receive(stack.queue_url(), 30)
        .await
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap())
        .map(|m| m["task_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sent,
        [
            "6f1c2c55-3f0e-4b8a-9b1e-2f4d8e0c1a01",
            "0b9f5d2e-7c3a-4e61-8d2f-5a6b7c8d9e02"
        ]
    );
}

#[tokio::test]
async fn the_streaming_sample_events_reach_their_handlers() {
    let stack = TestStack::new().await;
    let events = TaskEventsApi {
        reads: stack.reads(),
        slots: stack.slots(),
        tasks: stack.store(),
        runs: stack.runs(),
        config: StreamConfig::default(),
    };
    let response = neuraforge_tests::pipeline()
        .respond_streaming(
            &events,
            from_str(&event("functions/task-events/events/get.json")).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 404, "the sample id names no task");
    let mut body = response.into_body();
    assert!(
        next_chunk(&mut body)
            .await
            .unwrap()
            .contains("Task not found")
    );

    let submit = SubmitStreamApi {
        submit: stack.submit_api(),
        runs: stack.runs(),
        config: StreamConfig::default(),
    };
    let response = neuraforge_tests::pipeline()
        .respond_streaming(
            &submit,
            from_str(&event("functions/submit-task-stream/events/submit.json")).unwrap(),
        )
        .await;
    opened_an_event_stream(response).await;
    assert_eq!(
        stack.queue_depth(stack.queue_url()).await,
        1,
        "the task was submitted"
    );

    // The review event stream: a reviewer's token, a stream that opens.
    let reviews = shared::reviews::feed::ReviewEventsApi {
        reads: stack.reads(),
        slots: stack.slots(),
        tickets: stack.reviews(),
        config: shared::reviews::feed::FeedConfig::default(),
    };
    let response = neuraforge_tests::pipeline()
        .respond_streaming(
            &reviews,
            from_str(&event("functions/review-events/events/get.json")).unwrap(),
        )
        .await;
    opened_an_event_stream(response).await;
}

#[tokio::test]
async fn the_review_sample_events_reach_their_handlers() {
    use shared::reviews::api::TicketAction;
    let stack = TestStack::new().await;
    let list = shared::reviews::api::ListTicketsApi {
        reads: stack.reads(),
        tickets: stack.reviews(),
    };
    let listed = respond(
        &list,
        from_str(&event("functions/list-reviews/events/list.json")).unwrap(),
    )
    .await;
    assert_eq!(listed.status(), 200);
    assert_eq!(json_body(&listed), serde_json::json!([]));
    let metrics = shared::reviews::metrics::ReviewMetricsApi {
        reads: stack.reads(),
        tickets: stack.reviews(),
        sla_minutes: 120,
    };
    let figures = respond(
        &metrics,
        from_str(&event("functions/review-metrics/events/get.json")).unwrap(),
    )
    .await;
    assert_eq!(figures.status(), 200, "{}", json_body(&figures));
    assert_eq!(json_body(&figures)["totals"]["open"], 0);
    for (action, file) in [
        (TicketAction::Get, "functions/get-review/events/get.json"),
        (
            TicketAction::Assign,
            "functions/assign-review/events/assign.json",
        ),
        (
            TicketAction::Unassign,
            "functions/unassign-review/events/unassign.json",
        ),
        (
            TicketAction::AddNote,
            "functions/add-review-note/events/note.json",
        ),
        (
            TicketAction::Resolve,
            "functions/resolve-review/events/resolve.json",
        ),
    ] {
        let response = respond(&stack.ticket_api(action), from_str(&event(file)).unwrap()).await;
        assert_eq!(
            response.status(),
            404,
            "{file}: the sample ticket does not exist: {}",
            json_body(&response)
        );
        assert_eq!(
            json_body(&response)["detail"],
            "Review ticket not found",
            "{file}"
        );
    }
}
