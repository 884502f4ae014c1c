//! GET /api/v1/health/ready — readiness: DynamoDB and SQS answer in time.
use shared::config::Settings;
use shared::health::ReadinessApi;
use shared::http::Pipeline;
use shared::queue::TaskQueue;
use shared::tasks::store::{TaskStore, TaskTables};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("readiness");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let api = ReadinessApi {
        store: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        queue: TaskQueue::from_settings(&sdk, &settings)?,
        timeout: Duration::from_millis(settings.bounded_or(
            "READINESS__TIMEOUT_MS",
            2000,
            100..=10_000,
        )?),
    };
    shared::http::serve(metrics, Pipeline::public(&settings)?, api).await
}
