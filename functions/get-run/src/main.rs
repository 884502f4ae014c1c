//! GET /api/v1/orchestrator/runs/{run_id} — a run with its events, snapshots and decisions.
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::orchestrator::runs_api::GetRunApi;
use shared::orchestrator::store::{RunStore, RunTables};
use shared::tasks::store::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("get-run");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = GetRunApi {
        auth: auth.clone(),
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
