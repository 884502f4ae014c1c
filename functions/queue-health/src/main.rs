//! Scheduled every minute: emits queue depth by state and dead-lettered
//! messages per queue as EMF.
// The SQS client's nested futures inside the runtime's handler go past rustc's default layout depth.
#![recursion_limit = "256"]
use shared::config::Settings;
use shared::queue_health::QueueHealth;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("queue-health");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let job = QueueHealth::from_settings(&sdk, &settings)?;
    shared::runtime::serve_schedule(metrics, job).await
}
