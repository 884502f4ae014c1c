//! GET /api/v1/reports/{task_id}/dossier.md — a task's dossier as a download (audited).
use shared::reviews::dossier::{DossierFormat, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    run("dossier-markdown", DossierFormat::Markdown).await
}
