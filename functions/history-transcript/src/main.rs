//! GET|PUT /api/v1/history/{task_id}/transcript — the console's transcript of the caller's task (writes rate limited).
use shared::tasks::history::TranscriptApi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    shared::http::run("history-transcript", TranscriptApi::from_settings).await
}
