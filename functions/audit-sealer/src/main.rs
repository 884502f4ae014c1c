//! Scheduled every five minutes: seals the audit log's records older than the grace
//! period into signed digests chained per shard, and moves the anchor in SSM.
use shared::audit::seal::Sealer;
use shared::config::Settings;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("audit-sealer");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let sealer = Sealer::from_settings(&sdk, &settings).await?;
    shared::runtime::serve_schedule(metrics, sealer).await
}
