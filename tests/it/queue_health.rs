//! The queue-health job on moto: depth by state and dead-lettered messages per queue.

use neuraforge_tests::TestStack;
use shared::queue_health::{QueueFigures, QueueHealth};
use shared::runtime::ScheduledJob;

async fn send(stack: &TestStack, url: &str, count: usize) {
    for i in 0..count {
        stack
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
}

/// A second queue and its dead-letter queue, made for the test: the job's settings
/// watching `tasks` and `extra`, and the extra dead-letter queue's URL.
async fn with_extra_queue(stack: &TestStack, dlq_url: Option<&str>) -> (QueueHealth, String) {
    let mut urls = Vec::new();
    for suffix in ["extra", "extra-dlq"] {
        let name = format!("{}-{suffix}", stack.local.stack_name);
        let made = stack
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap();
        urls.push(made.queue_url().unwrap().to_string());
    }
    let settings = stack.settings_with(&[
        ("QUEUE_HEALTH__QUEUES", "tasks,extra"),
        ("EXTRA_QUEUE_URL", &urls[0]),
        ("EXTRA_DLQ_URL", dlq_url.unwrap_or(&urls[1])),
    ]);
    let health = QueueHealth::from_settings(&stack.sdk, &settings).unwrap();
    (health, urls[1].clone())
}

#[tokio::test]
async fn the_job_reports_each_queue_and_what_its_dead_letter_queue_holds() {
    let stack = TestStack::new().await;
    let template = QueueHealth::from_settings(&stack.sdk, &stack.settings()).unwrap();
    let names: Vec<&str> = template.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, vec!["tasks"], "the template's QUEUE_HEALTH__QUEUES");
    let (health, extra_dlq) = with_extra_queue(&stack, None).await;

    send(&stack, stack.queue_url(), 3).await;
    stack.receive(stack.queue_url(), 30).await; // one batch now in flight
    send(&stack, stack.dlq_url(), 2).await;
    send(&stack, &extra_dlq, 1).await;

    let report = health.run_once().await.unwrap();
    assert!(report.reported, "messages are waiting: the gauges are sent");
    let figures = report.queues;
    let tasks = &figures["tasks"];
    assert_eq!(tasks.visible + tasks.in_flight, 3);
    assert!(tasks.in_flight >= 1, "{tasks:?}");
    assert_eq!(tasks.dead_lettered, 2);
    assert_eq!(
        figures["extra"],
        QueueFigures {
            dead_lettered: 1,
            ..QueueFigures::default()
        }
    );
}

#[tokio::test]
async fn a_queue_that_cannot_be_read_fails_the_run_but_the_others_are_reported() {
    let stack = TestStack::new().await;
    let unreachable = "http://127.0.0.1:1/000000000000/no-such-queue";
    let (health, _) = with_extra_queue(&stack, Some(unreachable)).await;
    let read = health.read().await;
    assert!(read.contains_key("tasks") && !read.contains_key("extra"));
    assert!(health.run_once().await.is_err());
}

#[tokio::test]
async fn the_job_sends_nothing_while_every_queue_is_empty() {
    let stack = TestStack::new().await;
    let (health, extra_dlq) = with_extra_queue(&stack, None).await;
    let reported = |r: shared::queue_health::QueueReport| r.reported;
    // Zeros once (a new environment cannot know what the last one sent), then silence.
    assert!(reported(health.run_once().await.unwrap()));
    assert!(!reported(health.run_once().await.unwrap()));
    send(&stack, &extra_dlq, 1).await;
    assert!(reported(health.run_once().await.unwrap()));
    // Emptied: zeros once more, so the last figures do not linger, then silence.
    stack.purge(&extra_dlq).await;
    assert!(reported(health.run_once().await.unwrap()));
    assert!(!reported(health.run_once().await.unwrap()));
}
