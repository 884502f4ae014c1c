//! The tasks table's stream (new tasks only): puts each accepted task on the tasks queue.
use shared::config::Settings;
use shared::queue::TaskQueue;
use shared::tasks::enqueue::TaskEnqueuer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("task-enqueuer");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let enqueuer = TaskEnqueuer {
        queue: TaskQueue::from_settings(&sdk, &settings)?,
    };
    shared::runtime::serve_enqueuer(metrics, enqueuer).await
}
