//! GET /api/v1/reviews — the review queue, oldest first, from the indexes (audited).
use shared::audit::{AuditLog, Auditor};
use shared::config::Settings;
use shared::reviews::api::ListTicketsApi;
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("list-reviews");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let auth = shared::auth::load(&sdk, &settings).await?;
    let api = ListTicketsApi {
        auth: auth.clone(),
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
