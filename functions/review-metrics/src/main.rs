//! GET /api/v1/reviews/metrics — reviewer analytics from aggregates and indexes (audited).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::reviews::metrics::{ReviewMetricsApi, sla_minutes};
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("review-metrics");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = ReviewMetricsApi {
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
        sla_minutes: sla_minutes(&settings)?,
    };
    shared::http::serve(metrics, pipeline, api).await
}
