//! GET /api/v1/tasks/{task_id}/events — the task's events as Server-Sent Events
//! (Lambda response streaming; a separate binary from the buffered routes).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::ratelimit::{ReadLimiter, StreamSlots};
use shared::tasks::stream::{StreamConfig, TaskEventsApi};
use shared::tasks::{RunStore, RunTables, TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("task-events");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = TaskEventsApi {
        reads: ReadLimiter::from_settings(&settings)?,
        slots: StreamSlots::from_settings(&sdk, &settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        config: StreamConfig::from_settings(&settings)?,
    };
    shared::http::serve_streaming(metrics, pipeline, api).await
}
