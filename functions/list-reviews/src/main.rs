//! GET /api/v1/reviews — the review queue, oldest first, from the indexes (audited).
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::reviews::api::ListTicketsApi;
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("list-reviews");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = ListTicketsApi {
        reads: shared::ratelimit::ReadLimiter::from_settings(&settings)?,
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
    };
    shared::http::serve(metrics, pipeline, api).await
}
