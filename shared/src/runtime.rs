//! Runtime loops for the non-HTTP functions: the SQS worker, the task enqueuer and the
//! scheduled jobs.

use crate::tasks::executor::TaskExecutor;
use crate::tasks::worker::{ReviewDesk, TaskWorker};
use crate::telemetry::Metrics;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::handler::run;
use std::sync::Arc;

pub async fn serve_sqs<E: TaskExecutor + 'static, R: ReviewDesk + 'static>(
    metrics: &'static Metrics,
    worker: TaskWorker<E, R>,
) -> Result<(), Error> {
    let worker = Arc::new(worker);
    run(metrics, move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move {
            let deadline = crate::time::deadline_instant(&event.context);
            Ok::<SqsBatchResponse, Error>(worker.handle_batch(event.payload, deadline).await)
        }
    })
    .await
}

/// A function woken by a schedule: it ignores the event's content and does one run.
pub trait ScheduledJob: Send + Sync + 'static {
    /// What a run did; it becomes the invocation's result (and the local stack's log line).
    type Report: serde::Serialize + Send;

    fn run_once(&self) -> impl Future<Output = Result<Self::Report, Error>> + Send;
}

impl ScheduledJob for crate::audit::seal::Sealer {
    type Report = crate::audit::seal::SealReport;

    async fn run_once(&self) -> Result<Self::Report, Error> {
        let report = self.seal_once(crate::time::now_millis()).await?;
        tracing::info!(
            digests = report.digests,
            records = report.records,
            "audit seal"
        );
        Ok(report)
    }
}

/// Serves the task enqueuer (the tasks table's stream).
pub async fn serve_enqueuer(
    metrics: &'static Metrics,
    enqueuer: crate::tasks::enqueue::TaskEnqueuer,
) -> Result<(), Error> {
    let enqueuer = Arc::new(enqueuer);
    run(
        metrics,
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
            let enqueuer = Arc::clone(&enqueuer);
            async move { Ok::<_, Error>(enqueuer.handle(event.payload).await) }
        },
    )
    .await
}

/// Serves a scheduled function. An error fails the invocation; the next scheduled run tries again.
pub async fn serve_schedule<J: ScheduledJob>(
    metrics: &'static Metrics,
    job: J,
) -> Result<(), Error> {
    let job = Arc::new(job);
    run(metrics, move |_event: LambdaEvent<serde_json::Value>| {
        let job = Arc::clone(&job);
        async move { job.run_once().await }
    })
    .await
}
