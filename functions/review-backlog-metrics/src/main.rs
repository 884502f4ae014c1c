//! Scheduled every minute: sends the reviewer backlog gauges (tickets by status
//! including unassigned, open count, oldest ticket age) as EMF while tickets wait.
use shared::config::Settings;
use shared::reviews::metrics::BacklogMetrics;
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("review-backlog-metrics");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let job = BacklogMetrics::new(ReviewStore::from_settings(&sdk, &settings)?);
    shared::runtime::serve_schedule(metrics, job).await
}
