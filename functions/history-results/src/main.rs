//! GET /api/v1/history/{task_id} — the caller's task's results in v1's shape.
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::tasks::history::ResultsApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("history-results");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = ResultsApi::from_settings(&sdk, &settings)?;
    shared::http::serve(metrics, pipeline, api).await
}
