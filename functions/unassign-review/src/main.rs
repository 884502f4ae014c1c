//! PATCH /api/v1/reviews/{ticket_id}/unassign — a reviewer action on one ticket (rate limited, audited).
use shared::reviews::api::{TicketAction, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda_http::Error> {
    run("unassign-review", TicketAction::Unassign).await
}
