//! POST /api/v1/submit_task — records a task and puts it on the tasks queue.
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::orchestrator::settings::metadata_choices;
use shared::tasks::ledger::SubmissionLedger;
use shared::tasks::submit::{SubmitConfig, SubmitTaskApi};
use shared::tasks::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("submit-task");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = SubmitTaskApi {
        ledger: SubmissionLedger::from_settings(&sdk, &settings)?,
        store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        config: SubmitConfig::from_settings(&settings, metadata_choices())?,
    };
    shared::http::serve(metrics, pipeline, api).await
}
