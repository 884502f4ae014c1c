//! GET /api/v1/history/recent — the caller's recent tasks, newest first (v1's console history).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::tasks::history::RecentApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("history-recent");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = RecentApi::from_settings(&sdk, &settings)?;
    shared::http::serve(metrics, pipeline, api).await
}
