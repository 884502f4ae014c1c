//! POST /api/v1/submit_task — records a task and puts it on the tasks queue.
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::queue::TaskQueue;
use shared::ratelimit::RateLimiter;
use shared::tasks::store::{TaskStore, TaskTables};
use shared::tasks::submit::{SubmitConfig, SubmitTaskApi};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("submit-task");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = SubmitTaskApi {
        auth: auth.clone(),
        limiter: RateLimiter::from_settings(&sdk, &settings)?,
        store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        queue: TaskQueue::from_settings(&sdk, &settings)?,
        config: SubmitConfig::from_settings(&settings)?,
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
