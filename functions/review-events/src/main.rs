//! GET /api/v1/reviews/events — ticket changes as Server-Sent Events (Lambda response
//! streaming), for the review console's live queue.
use shared::config::Settings;
use shared::http::{Audit, Pipeline};
use shared::ratelimit::{ReadLimiter, StreamSlots};
use shared::reviews::feed::{FeedConfig, ReviewEventsApi};
use shared::reviews::store::ReviewStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("review-events");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = ReviewEventsApi {
        reads: ReadLimiter::from_settings(&settings)?,
        slots: StreamSlots::from_settings(&sdk, &settings)?,
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
        config: FeedConfig::from_settings(&settings)?,
    };
    shared::http::serve_streaming(metrics, pipeline, api).await
}
