//! GET /api/v1/tasks/{task_id}/events — the task's events as Server-Sent Events
//! (Lambda response streaming; a separate binary from the buffered routes).
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::orchestrator::store::{RunStore, RunTables};
use shared::orchestrator::stream::{StreamConfig, TaskEventsApi};
use shared::tasks::store::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("task-events");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = TaskEventsApi {
        auth: auth.clone(),
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        slots: shared::ratelimit::StreamSlots::from_settings(&sdk, &settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        config: StreamConfig::default(),
        route: &shared::routes::TASK_EVENTS,
        auditor: Some(Auditor {
            log: AuditLog::from_settings(&sdk, &settings)?,
            auth,
        }),
    };
    let api = std::sync::Arc::new(api);
    shared::http::serve_streaming(metrics, move |request| {
        let api = api.clone();
        async move { api.respond(request).await }
    })
    .await
}
