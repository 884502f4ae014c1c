//! GET /api/v1/reports/{task_id}/dossier.json — a task's dossier as a download (audited).
use shared::reviews::dossier::{DossierFormat, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    run("dossier-json", DossierFormat::Json).await
}
