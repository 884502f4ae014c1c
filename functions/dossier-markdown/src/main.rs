//! GET /api/v1/reports/{task_id}/dossier.md — a task's dossier as a download (audited).
use shared::audit::{AuditLog, Auditor};
use shared::auth::Authenticator;
use shared::config::Settings;
use shared::orchestrator::store::{RunStore, RunTables};
use shared::reviews::dossier::{DossierApi, DossierFormat};
use shared::reviews::store::ReviewStore;
use shared::tasks::store::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("dossier-markdown");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let api = DossierApi {
        format: DossierFormat::Markdown,
        auth: Authenticator::from_settings(&settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth: Authenticator::from_settings(&settings)?,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
