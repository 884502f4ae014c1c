//! POST /api/v1/reviews/{ticket_id}/resolve — a reviewer action on one ticket (rate limited, audited).
use shared::audit::{AuditLog, Auditor};
use shared::auth::Authenticator;
use shared::config::Settings;
use shared::orchestrator::store::{RunStore, RunTables};
use shared::ratelimit::{RateLimitPolicy, RateLimiter};
use shared::reviews::api::{TicketAction, TicketApi};
use shared::reviews::decisions::Reviews;
use shared::reviews::store::ReviewStore;
use shared::tasks::store::{TaskStore, TaskTables};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    let metrics = shared::telemetry::init("resolve-review");
    let settings = Settings::from_env();
    let sdk = shared::aws::load().await;
    let api = TicketApi {
        action: TicketAction::Resolve,
        auth: Authenticator::from_settings(&settings)?,
        reviews: Reviews {
            tickets: ReviewStore::from_settings(&sdk, &settings)?,
            tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
            runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        },
        limiter: RateLimiter::from_settings(&sdk, &settings)?,
        rate_limit: RateLimitPolicy::review_action(&settings)?,
    };
    let auditor = Auditor {
        log: AuditLog::from_settings(&sdk, &settings)?,
        auth: Authenticator::from_settings(&settings)?,
    };
    shared::http::serve_audited(metrics, api, Some(auditor)).await
}
