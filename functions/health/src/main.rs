//! GET /api/v1/health — liveness. No AWS clients: nothing to build, nothing to wait for.
use shared::health::LivenessApi;
use shared::http::Pipeline;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("health");
    let pipeline = Pipeline::public(&shared::config::Settings::from_env())?;
    shared::http::serve(metrics, pipeline, LivenessApi).await
}
