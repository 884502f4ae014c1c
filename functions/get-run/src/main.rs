//! GET /api/v1/orchestrator/runs/{run_id} — a run with its events, snapshots and decisions.
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::tasks::runs_api::GetRunApi;
use shared::tasks::{RunStore, RunTables, TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("get-run");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = GetRunApi {
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
    };
    shared::http::serve(metrics, pipeline, api).await
}
