//! GET|PUT /api/v1/history/{task_id}/transcript — the console's transcript of the caller's task (writes rate limited).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::tasks::history::TranscriptApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("history-transcript");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = TranscriptApi::from_settings(&sdk, &settings)?;
    shared::http::serve(metrics, pipeline, api).await
}
