//! Runtime loops for the non-HTTP functions: the SQS worker and the scheduled sweeper.

use crate::tasks::executor::TaskExecutor;
use crate::tasks::outbox::{OutboxSweeper, SweepReport};
use crate::tasks::worker::TaskWorker;
use crate::telemetry::Metrics;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::handler::run;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// When the invocation will be cut off, as an `Instant` (the context gives epoch milliseconds).
pub fn deadline_instant(context: &lambda_runtime::Context) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let left = context.deadline.checked_sub(now_ms)?;
    Some(Instant::now() + Duration::from_millis(left))
}

pub async fn serve_sqs<E: TaskExecutor + 'static>(
    metrics: &'static Metrics,
    worker: TaskWorker<E>,
) -> Result<(), Error> {
    let worker = Arc::new(worker);
    run(metrics, move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move {
            let deadline = deadline_instant(&event.context);
            Ok::<SqsBatchResponse, Error>(worker.handle_batch(event.payload, deadline).await)
        }
    })
    .await
}

/// The sweeper ignores the schedule event's content; it only needs to be woken.
pub async fn serve_schedule(
    metrics: &'static Metrics,
    sweeper: OutboxSweeper,
) -> Result<(), Error> {
    let sweeper = Arc::new(sweeper);
    run(metrics, move |_event: LambdaEvent<serde_json::Value>| {
        let sweeper = Arc::clone(&sweeper);
        async move {
            // A store error fails the invocation; the next scheduled run tries again.
            let report: SweepReport = sweeper.sweep().await?;
            tracing::info!(
                found = report.found,
                enqueued = report.enqueued,
                failed = report.failed,
                "outbox sweep"
            );
            Ok::<SweepReport, Error>(report)
        }
    })
    .await
}
