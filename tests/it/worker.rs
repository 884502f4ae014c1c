//! The task worker against a real moto queue and table: conditional
//! transitions, duplicates, leases, partial batch failures, the dead-letter queue.

use neuraforge_tests::TestStack;
use shared::tasks::TaskId;
use shared::tasks::leases::{ClaimOutcome, LeaseWrite, Settle};
use shared::tasks::model::{FailureClass, TaskMessage, TaskStatus};
use shared::tasks::worker::MessageOutcome;

async fn submit(stack: &TestStack, body: &str) -> TaskId {
    stack.submit("alice", body).await
}

async fn send_raw(stack: &TestStack, body: &str) {
    stack
        .sqs
        .send_message()
        .queue_url(stack.queue_url())
        .message_body(body)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_queued_task_runs_to_completed_with_its_result() {
    let stack = TestStack::new().await;
    let id = submit(
        &stack,
        r#"{"prompt":"Sales rose 10 percent. Sales matter."}"#,
    )
    .await;
    let (messages, batch) = stack.deliver_once(30).await;
    assert_eq!(messages.len(), 1);
    assert!(batch.batch_item_failures.is_empty());

    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.attempts, 1);
    assert!(task.started_at.is_some() && task.finished_at >= task.started_at);
    let result = task.result.unwrap();
    assert_eq!(result.outputs[0].agent, "finance_agent");
    let content = result.outputs[0].content.as_str();
    assert!(
        content.contains("1 figure(s) in the prompt (10)"),
        "{content}"
    );
    assert!(result.run_id.is_some());
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);
}

#[tokio::test]
async fn a_duplicate_message_never_runs_a_task_twice() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"only once"}"#).await;
    stack
        .queue()
        .send(&TaskMessage {
            task_id: id,
            request_id: None,
        })
        .await
        .unwrap();

    let (messages, batch) = stack.deliver_once(30).await;
    assert_eq!(messages.len(), 2, "both copies arrive in one batch");
    assert!(
        batch.batch_item_failures.is_empty(),
        "the duplicate is settled, not retried"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 1));
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);
}

#[tokio::test]
async fn a_late_redelivery_never_moves_a_finished_task_backwards() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"finished"}"#).await;
    stack.deliver_once(30).await;
    let before = stack.store().get(id).await.unwrap().unwrap();

    stack
        .queue()
        .send(&TaskMessage {
            task_id: id,
            request_id: None,
        })
        .await
        .unwrap();
    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    let after = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(after, before, "nothing about the finished task changed");
}

#[tokio::test]
async fn a_task_whose_worker_died_is_taken_over_after_its_lease() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"crash me"}"#).await;
    let store = stack.store();
    // A first delivery claimed the task a second ago with a 1 ms lease and then "crashed".
    let a_second_ago = shared::time::now_millis() - 1_000;
    assert!(matches!(
        store.claim(id, a_second_ago, 1).await.unwrap(),
        ClaimOutcome::Claimed(..)
    ));

    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    let task = store.get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 2));
}

#[tokio::test]
async fn a_task_held_under_a_live_lease_is_left_to_its_owner() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"busy"}"#).await;
    let store = stack.store();
    assert!(matches!(
        store
            .claim(id, shared::time::now_millis(), 60_000)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(..)
    ));
    let (_, batch) = stack.deliver_once(30).await;
    assert!(
        batch.batch_item_failures.is_empty(),
        "the owner's own message comes back if it dies"
    );
    let task = store.get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::InProgress, 1));
}

#[tokio::test]
async fn a_stale_worker_cannot_overwrite_the_result_of_the_one_that_took_over() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"fenced"}"#).await;
    let store = stack.store();
    // The first claim's 1 ms lease ran out a second ago.
    let ClaimOutcome::Claimed(_, stale) = store
        .claim(id, shared::time::now_millis() - 1_000, 1)
        .await
        .unwrap()
    else {
        panic!("first claim");
    };
    let ClaimOutcome::Claimed(_, fresh) = store
        .claim(id, shared::time::now_millis(), 60_000)
        .await
        .unwrap()
    else {
        panic!("takeover claim");
    };
    let stale_failed = Settle::Failed("stale worker", &[]);
    let now = shared::time::now_millis();
    assert_eq!(
        store.finish(&stale, stale_failed, now).await.unwrap(),
        LeaseWrite::LeaseLost
    );
    assert_eq!(
        store.release(&stale, "stale", &[], now).await.unwrap(),
        LeaseWrite::LeaseLost
    );
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        TaskStatus::InProgress
    );
    let fresh_failed = Settle::Failed("fresh worker failed it", &[]);
    assert_eq!(
        store.finish(&fresh, fresh_failed, now).await.unwrap(),
        LeaseWrite::Written
    );
    let task = store.get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.last_error.as_deref(), Some("fresh worker failed it"));
}

#[tokio::test]
async fn only_the_failed_messages_of_a_batch_are_reported_for_retry() {
    let stack = TestStack::new().await;
    let good = submit(&stack, r#"{"prompt":"fine"}"#).await;
    send_raw(&stack, "this is not json").await;
    send_raw(&stack, &format!(r#"{{"task_id":"{}"}}"#, TaskId::new())).await;

    let (messages, batch) = stack.deliver_once(30).await;
    assert_eq!(messages.len(), 3);
    let failed: Vec<&str> = batch
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let bodies_of_failed: Vec<&str> = messages
        .iter()
        .filter(|m| failed.contains(&m.message_id().unwrap()))
        .map(|m| m.body().unwrap())
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        bodies_of_failed
            .iter()
            .all(|b| !b.contains(&good.to_string()))
    );
    assert_eq!(
        stack.store().get(good).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
    assert_eq!(
        stack.queue_depth(stack.queue_url()).await,
        2,
        "only the two bad messages remain"
    );
}

#[tokio::test]
async fn a_poison_message_lands_in_the_dead_letter_queue_after_max_receive_count() {
    let stack = TestStack::new().await;
    send_raw(&stack, "poison").await;
    let max_receives = stack.worker().config.max_receive_count as usize;
    let mut deliveries = 0;
    for _ in 0..max_receives + 2 {
        let (messages, batch) = stack.deliver_once(0).await;
        if messages.is_empty() {
            break;
        }
        assert_eq!(batch.batch_item_failures.len(), 1);
        deliveries += 1;
    }
    assert_eq!(
        deliveries, max_receives,
        "delivered exactly maxReceiveCount times"
    );
    let dead = stack.receive(stack.dlq_url(), 30).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("poison"));
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 0);
}

#[tokio::test]
async fn a_continuation_of_a_missing_task_fails_for_good_without_retries() {
    let stack = TestStack::new().await;
    // The API refuses such a submission (422); a task that reached the queue anyway (its
    // parent gone since) is written here past the API.
    let missing = TaskId::new();
    let queued = submit(&stack, r#"{"prompt":"go on"}"#).await;
    let mut task = stack.store().get(queued).await.unwrap().unwrap();
    task.task_id = TaskId::new();
    task.continuation_task_id = Some(missing);
    stack.store().create(&task, None).await.unwrap();
    let id = task.task_id;
    stack.purge(stack.queue_url()).await;
    send_raw(&stack, &format!(r#"{{"task_id":"{id}"}}"#)).await;
    let (_, batch) = stack.deliver_once(30).await;
    assert!(
        batch.batch_item_failures.is_empty(),
        "a permanent failure is settled, not retried"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    let failures: Vec<_> = task.failures.iter().map(|f| (f.attempt, f.class)).collect();
    assert_eq!(failures, [(1, FailureClass::Permanent)]);
    assert_eq!(
        task.last_error,
        Some(format!("continuation task {missing} not found"))
    );
    let log = stack
        .runs()
        .events_after(id, 0, 10, shared::tasks::Read::Latest)
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "the failure is the task's only event");
    assert_eq!(
        (log[0].event.as_str(), &log[0].payload["reason"]),
        (
            "task_failed",
            &serde_json::json!(format!("continuation task {missing} not found"))
        )
    );
}

#[tokio::test]
async fn a_continuation_carries_its_completed_parent() {
    let stack = TestStack::new().await;
    let parent = submit(&stack, r#"{"prompt":"first part"}"#).await;
    stack.deliver_once(30).await;
    let child = submit(
        &stack,
        &format!(r#"{{"prompt":"second part","continuation_task_id":"{parent}"}}"#),
    )
    .await;
    stack.deliver_once(30).await;
    let task = stack.store().get(child).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    let events = stack
        .runs()
        .events_after(child, 0, 100, shared::tasks::Read::Latest)
        .await
        .unwrap();
    assert_eq!(events[0].event, "task_started");
    assert_eq!(events[0].payload["continues"], parent.to_string());
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_fails_the_task_and_dead_letters_the_message() {
    let stack = TestStack::new().await;
    // The parent is claimed by a live worker and never finishes: the continuation must wait.
    let parent = submit(&stack, r#"{"prompt":"slow parent"}"#).await;
    stack.purge(stack.queue_url()).await;
    stack
        .store()
        .claim(parent, shared::time::now_millis(), 600_000)
        .await
        .unwrap();
    let child = submit(
        &stack,
        &format!(r#"{{"prompt":"waits","continuation_task_id":"{parent}"}}"#),
    )
    .await;

    let worker = stack.worker();
    let max = worker.config.max_receive_count;
    for attempt in 1..=max {
        let messages = stack.receive(stack.queue_url(), 0).await;
        assert_eq!(messages.len(), 1, "attempt {attempt}");
        let outcome = worker
            .process(&stack.sqs_event(&messages).records[0], None)
            .await;
        let task = stack.store().get(child).await.unwrap().unwrap();
        if attempt < max {
            assert!(
                matches!(outcome, MessageOutcome::Retry(_)),
                "attempt {attempt}: {outcome:?}"
            );
            assert_eq!(task.status, TaskStatus::InProgress);
            assert!(task.last_error.unwrap().contains("has not finished yet"));
        } else {
            assert!(matches!(outcome, MessageOutcome::GaveUp(_)), "{outcome:?}");
            assert_eq!(task.status, TaskStatus::Failed);
            assert!(
                task.last_error
                    .unwrap()
                    .starts_with(&format!("dead_lettered: gave up after {max} attempts"))
            );
        }
        // Every failed attempt is on the task, numbered, classed and timed, oldest first.
        let recorded: Vec<(u32, FailureClass)> =
            task.failures.iter().map(|f| (f.attempt, f.class)).collect();
        let expected: Vec<(u32, FailureClass)> = (1..=attempt)
            .map(|n| match n == max {
                true => (n, FailureClass::GaveUp),
                false => (n, FailureClass::Transient),
            })
            .collect();
        assert_eq!(recorded, expected, "attempt {attempt}");
        let last = task.failures.last().unwrap();
        assert!(last.message.contains("has not finished yet"), "{last:?}");
        assert!(last.at > 0);
    }
    assert!(stack.receive(stack.queue_url(), 0).await.is_empty());
    assert_eq!(stack.receive(stack.dlq_url(), 30).await.len(), 1);
}

/// An executor written for one test: it does what `run` says with the task.
struct Scripted<F>(F);

impl<F, Fut> shared::tasks::TaskExecutor for Scripted<F>
where
    F: Fn(shared::tasks::Task) -> Fut + Send + Sync,
    Fut: std::future::Future<
            Output = Result<shared::tasks::TaskResult, shared::tasks::ExecutionError>,
        > + Send,
{
    async fn execute(
        &self,
        task: &shared::tasks::Task,
        _context: &shared::tasks::ExecutionContext,
    ) -> Result<shared::tasks::TaskResult, shared::tasks::ExecutionError> {
        (self.0)(task.clone()).await
    }
}

fn result_with_report(report: String) -> shared::tasks::TaskResult {
    shared::tasks::TaskResult {
        executor: "test".into(),
        outputs: vec![],
        report,
        agents_completed: 0,
        agents_failed: 0,
        run_id: None,
        plan: None,
        negotiation: None,
        guardrails: vec![],
        guardrail_events: 0,
        negotiation_rounds: 0,
        review: None,
    }
}

/// One message for `id`, as SQS hands it to the worker.
fn message_for(id: TaskId) -> aws_lambda_events::event::sqs::SqsMessage {
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some(format!("m-{id}"));
    message.body = Some(serde_json::json!({ "task_id": id }).to_string());
    message
}

#[tokio::test]
async fn a_message_reached_without_time_to_finish_goes_back_untouched() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"late in the batch"}"#).await;
    let left = shared::tasks::worker::SETTLE_MARGIN + shared::tasks::worker::MIN_EXECUTION;
    let deadline = std::time::Instant::now() + left - std::time::Duration::from_millis(100);
    let outcome = stack
        .worker()
        .process(&message_for(id), Some(deadline))
        .await;
    assert!(
        matches!(outcome, MessageOutcome::Retry(ref why) if why.starts_with("not started")),
        "{outcome:?}"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(
        (task.status, task.attempts),
        (TaskStatus::Queued, 0),
        "not claimed"
    );
}

#[tokio::test]
async fn a_run_that_would_outlive_the_invocation_is_cut_short_and_released_for_a_retry() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"slow"}"#).await;
    let slow = Scripted(|_| async {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        Ok(result_with_report("never".into()))
    });
    // Just enough time to start: the run gets what is left minus the settle margin.
    let left = shared::tasks::worker::SETTLE_MARGIN
        + shared::tasks::worker::MIN_EXECUTION
        + std::time::Duration::from_millis(300);
    let deadline = std::time::Instant::now() + left;
    let started = std::time::Instant::now();
    let outcome = stack
        .worker_with(slow)
        .process(&message_for(id), Some(deadline))
        .await;
    assert!(started.elapsed() < left, "stopped before the deadline");
    assert!(
        matches!(outcome, MessageOutcome::Retry(ref why) if why.contains("budget")),
        "{outcome:?}"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::InProgress);
    assert!(task.last_error.unwrap().contains("budget"));
    // Released: the next delivery may claim it at once.
    assert!(matches!(
        stack
            .store()
            .claim(id, shared::time::now_millis(), 60_000)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(..)
    ));
}

#[tokio::test]
async fn a_result_over_the_size_cap_fails_the_task_for_good() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"verbose"}"#).await;
    let cap = shared::tasks::leases::MAX_RESULT_BYTES;
    let verbose = Scripted(move |_| async move { Ok(result_with_report("x".repeat(cap))) });
    let outcome = stack
        .worker_with(verbose)
        .process(&message_for(id), None)
        .await;
    assert!(matches!(outcome, MessageOutcome::Failed), "{outcome:?}");
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert!(task.result.is_none(), "nothing over the cap is written");
    assert!(
        task.last_error
            .unwrap()
            .contains(&format!("exceeds the {cap}-byte limit")),
    );
}

#[tokio::test]
async fn a_delivery_that_lost_its_lease_writes_nothing_over_the_new_owner() {
    let stack = TestStack::new().await;
    let id = submit(&stack, r#"{"prompt":"contested"}"#).await;
    let store = stack.store();
    // While this delivery runs, another takes the task over (as after a lease expiry).
    let usurper = Scripted(move |task: shared::tasks::Task| {
        let store = store.clone();
        async move {
            let far_ahead = shared::time::now_millis() + 3_600_000;
            let taken = store.claim(task.task_id, far_ahead, 60_000).await.unwrap();
            assert!(matches!(taken, ClaimOutcome::Claimed(..)));
            Ok(result_with_report("the old owner's result".into()))
        }
    });
    let outcome = stack
        .worker_with(usurper)
        .process(&message_for(id), None)
        .await;
    assert!(matches!(outcome, MessageOutcome::LeaseLost), "{outcome:?}");
    assert!(
        outcome.deletes_message(),
        "the new owner's message carries the task"
    );
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::InProgress);
    assert!(task.result.is_none());
}

#[tokio::test]
async fn a_continuation_of_a_failed_task_fails_and_of_an_unfinished_one_waits() {
    let stack = TestStack::new().await;
    let parent = submit(&stack, r#"{"prompt":"the parent"}"#).await;
    let child_of = |parent: TaskId| {
        let stack = &stack;
        async move {
            let mut child = stack.store().get(parent).await.unwrap().unwrap();
            child.task_id = TaskId::new();
            child.continuation_task_id = Some(parent);
            (child.status, child.last_error, child.finished_at) = (TaskStatus::Queued, None, None);
            stack.store().create(&child, None).await.unwrap();
            child.task_id
        }
    };
    // The parent has not finished: the child is retried, not failed.
    let waiting = child_of(parent).await;
    let outcome = stack.worker().process(&message_for(waiting), None).await;
    assert!(
        matches!(outcome, MessageOutcome::Retry(ref why) if why.contains("has not finished")),
        "{outcome:?}"
    );
    // The parent failed: the child fails for good.
    stack
        .store()
        .fail_stuck(parent, "it broke", shared::time::now_millis())
        .await
        .unwrap();
    let orphan = child_of(parent).await;
    let outcome = stack.worker().process(&message_for(orphan), None).await;
    assert!(matches!(outcome, MessageOutcome::Failed), "{outcome:?}");
    let task = stack.store().get(orphan).await.unwrap().unwrap();
    assert_eq!(
        task.last_error.unwrap(),
        format!("continuation task {parent} failed")
    );
}

#[tokio::test]
async fn settled_tasks_their_events_and_run_items_expire_after_the_retention_and_review_waits() {
    let stack = TestStack::new().await;
    let done = stack
        .submit("alice", r#"{"prompt":"Revenue grew 12 percent."}"#)
        .await;
    let waiting = stack
        .submit(
            "alice",
            r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#,
        )
        .await;
    let started = shared::time::now_millis() / 1000;
    stack.deliver_once(30).await;
    let ninety_days = 90 * 86_400;
    let expiry =
        |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
            item.get("expires_at")
                .map(|v| v.as_n().unwrap().parse::<i64>().unwrap() - started)
        };
    let within =
        |left: Option<i64>| left.is_some_and(|s| (ninety_days..ninety_days + 60).contains(&s));

    let tasks = stack.scan("TasksTable").await;
    let task = |id: TaskId| {
        tasks
            .iter()
            .find(|t| t["task_id"].as_s().unwrap() == &id.to_string())
            .unwrap()
    };
    assert_eq!(task(done)["status"].as_s().unwrap(), "completed");
    assert!(within(expiry(task(done))), "{:?}", expiry(task(done)));
    assert_eq!(task(waiting)["status"].as_s().unwrap(), "awaiting_review");
    assert_eq!(expiry(task(waiting)), None, "kept until a reviewer decides");
    for table in ["EventsTable", "RunsTable"] {
        let items = stack.scan(table).await;
        assert!(!items.is_empty());
        assert!(
            items.iter().all(|i| within(expiry(i))),
            "{table}: {items:?}"
        );
    }

    // Every table whose items carry `expires_at` lets DynamoDB's TTL delete them.
    let template =
        devstack::Template::load(&neuraforge_tests::workspace_root().join("template.yaml"))
            .unwrap();
    for table in ["TasksTable", "EventsTable", "RunsTable"] {
        let ttl = &template.resources[table].properties["TimeToLiveSpecification"];
        assert_eq!(ttl["AttributeName"], "expires_at", "{table}");
        assert_eq!(ttl["Enabled"], true, "{table}");
    }
}

/// What the runbooks' log queries filter on: every line of a message's processing carries
/// its own `span.task_id`, `span.message_id` and `span.receive_count`, even while the batch's
/// messages run at once, and a replayed message logs who replayed what.
#[tokio::test]
async fn each_worker_log_line_names_its_own_task_and_receive_count() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let stack = TestStack::new().await;
    let mut submitted = Vec::new();
    for prompt in [
        "Revenue 10. Summarise.",
        "Costs fell 3 percent.",
        "Compare 2 suppliers on price and risk.",
        "Forecast revenue of 300 + 45.",
    ] {
        let body = serde_json::json!({ "prompt": prompt }).to_string();
        submitted.push(submit(&stack, &body).await);
    }
    let mut event = stack.sqs_event(&stack.receive(stack.queue_url(), 30).await);
    assert_eq!(event.records.len(), 4, "one batch, run at once");
    let mut replay_of = aws_lambda_events::sqs::SqsMessageAttribute::default();
    replay_of.string_value = Some("original-message-id".into());
    replay_of.data_type = Some("String".into());
    event.records[1]
        .message_attributes
        .insert(shared::tasks::worker::REPLAY_OF.into(), replay_of);

    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = shared::telemetry::json_logs(move || sink.clone());
    {
        let _default = tracing::subscriber::set_default(subscriber);
        stack.worker().handle_batch(event.clone(), None).await;
    }
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut tasks = Vec::new();
    for record in &event.records {
        let message: TaskMessage = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
        let of_task: Vec<&serde_json::Value> = logged
            .iter()
            .filter(|l| l["span"]["task_id"] == message.task_id.to_string())
            .collect();
        assert!(
            of_task.iter().any(|l| l["message"] == "message processed"),
            "{text}"
        );
        for line in of_task {
            let message_id = record.message_id.as_deref().unwrap();
            assert_eq!(line["span"]["message_id"], message_id, "{line}");
            assert_eq!(line["span"]["receive_count"], 1, "{line}");
        }
        tasks.push(message.task_id);
    }
    tasks.sort();
    submitted.sort();
    assert_eq!(tasks, submitted);
    let replayed: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|l| l["message"] == "replayed message")
        .collect();
    assert_eq!(replayed.len(), 1, "{text}");
    assert_eq!(replayed[0]["replay_of"], "original-message-id");
    let replayed_task: TaskMessage =
        serde_json::from_str(event.records[1].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        replayed[0]["span"]["task_id"],
        replayed_task.task_id.to_string()
    );
}
