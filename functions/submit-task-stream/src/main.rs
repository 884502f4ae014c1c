//! POST /api/v1/submit_task/stream — submits a task and streams its events
//! (Lambda response streaming; a separate binary from the buffered submit route).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::orchestrator::settings::metadata_choices;
use shared::tasks::ledger::SubmissionLedger;
use shared::tasks::stream::{StreamConfig, SubmitStreamApi};
use shared::tasks::submit::{SubmitConfig, SubmitTaskApi};
use shared::tasks::{RunStore, RunTables, TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("submit-task-stream");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = SubmitStreamApi {
        submit: SubmitTaskApi {
            ledger: SubmissionLedger::from_settings(&sdk, &settings)?,
            store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
            config: SubmitConfig::from_settings(&settings, metadata_choices())?,
        },
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        config: StreamConfig::from_settings(&settings)?,
    };
    shared::http::serve_streaming(metrics, pipeline, api).await
}
