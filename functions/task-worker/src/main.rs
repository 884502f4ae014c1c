//! SQS-triggered task worker: runs each task through the orchestrator once to
//! a settled status and reports the messages to retry in `batchItemFailures`.
use shared::config::Settings;
use shared::orchestrator::engine::Orchestrator;
use shared::reviews::store::ReviewStore;
use shared::tasks::store::{TaskStore, TaskTables};
use shared::tasks::worker::{TaskWorker, WorkerConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("task-worker");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let worker = TaskWorker {
        store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        executor: Orchestrator::load(&sdk, &settings).await?,
        config: WorkerConfig::from_settings(&settings)?,
        reviews: ReviewStore::from_settings(&sdk, &settings)?,
    };
    shared::runtime::serve_sqs(metrics, worker).await
}
