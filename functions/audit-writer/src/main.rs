//! SQS-triggered: appends the audit records that could not be written when
//! their request was answered. Retried deliveries are harmless: a request id
//! is recorded once.
use shared::audit::AuditLog;
use shared::config::Settings;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    let metrics = shared::telemetry::init("audit-writer");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    shared::runtime::serve_audit_writer(metrics, AuditLog::from_settings(&sdk, &settings)?).await
}
