//! POST /api/v1/submit_task/stream — submits a task and streams its events
//! (Lambda response streaming; a separate binary from the buffered submit route).
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::orchestrator::store::{RunStore, RunTables};
use shared::orchestrator::stream::{StreamConfig, SubmitStreamApi};
use shared::queue::TaskQueue;
use shared::ratelimit::RateLimiter;
use shared::tasks::store::{TaskStore, TaskTables};
use shared::tasks::submit::{SubmitConfig, SubmitTaskApi};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("submit-task-stream");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = std::sync::Arc::new(SubmitStreamApi {
        submit: SubmitTaskApi {
            auth: auth.clone(),
            limiter: RateLimiter::from_settings(&sdk, &settings)?,
            store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
            queue: TaskQueue::from_settings(&sdk, &settings)?,
            config: SubmitConfig::from_settings(&settings)?,
        },
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        config: StreamConfig::default(),
        auditor: Some(Auditor {
            log: AuditLog::from_settings(&sdk, &settings)?,
            auth,
        }),
    });
    shared::http::serve_streaming(metrics, move |request| {
        let api = api.clone();
        async move { api.respond(request).await }
    })
    .await
}
