//! GET /api/v1/history/recent — the caller's recent tasks, newest first (v1's console history).
use shared::tasks::history::RecentApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    shared::http::run("history-recent", RecentApi::from_settings).await
}
