//! GET /api/v1/history/{task_id} — the caller's task's results in v1's shape.
use shared::tasks::history::ResultsApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    shared::http::run("history-results", ResultsApi::from_settings).await
}
