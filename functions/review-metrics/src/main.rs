//! GET /api/v1/reviews/metrics — reviewer analytics from aggregates and indexes (audited).
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::reviews::metrics::{ReviewMetricsApi, sla_minutes};
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("review-metrics");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = ReviewMetricsApi {
        auth: auth.clone(),
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
        sla_minutes: sla_minutes(&settings)?,
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
