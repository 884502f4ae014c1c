//! GET /api/v1/health — liveness. No AWS clients: nothing to build, nothing to wait for.
use shared::health::LivenessApi;
use shared::http::Pipeline;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("health");
    shared::http::serve(metrics, Pipeline::open(), LivenessApi).await
}
