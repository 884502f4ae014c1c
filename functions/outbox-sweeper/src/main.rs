//! Scheduled every minute: enqueues accepted tasks whose enqueue was never confirmed.
use shared::config::Settings;
use shared::queue::TaskQueue;
use shared::tasks::outbox::{OutboxConfig, OutboxSweeper};
use shared::tasks::store::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("outbox-sweeper");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let sweeper = OutboxSweeper {
        store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        queue: TaskQueue::from_settings(&sdk, &settings)?,
        config: OutboxConfig::from_settings(&settings)?,
    };
    shared::runtime::serve_schedule(metrics, sweeper).await
}
