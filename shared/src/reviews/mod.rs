//! Human review: the tickets a guardrail or a deadlocked negotiation opens,
//! and the guarded transitions reviewers move them through.
//!
//! Statuses: `open → in_review` (assign), `in_review → open` (unassign),
//! `open | in_review → resolved | dismissed` (resolve). Every change is a
//! conditional write, so two reviewers acting at once cannot both win.

pub mod api;
pub mod changes;
pub mod decisions;
pub mod dossier;
pub mod feed;
pub mod listing;
pub mod metrics;
pub mod store;
pub mod totals;

use crate::dynamo::StoreError;
use crate::tasks::ReviewDesk;
use crate::tasks::{ReviewRequest, Task, TaskId, TaskResult, TicketId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    InReview,
    Resolved,
    Dismissed,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 4] = [
        TicketStatus::Open,
        TicketStatus::InReview,
        TicketStatus::Resolved,
        TicketStatus::Dismissed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::InReview => "in_review",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, TicketStatus::Resolved | TicketStatus::Dismissed)
    }

    /// The statuses a ticket may move to from this one.
    pub fn may_become(&self, next: TicketStatus) -> bool {
        use TicketStatus::*;
        matches!(
            (self, next),
            (Open, InReview) | (InReview, Open) | (Open | InReview, Resolved | Dismissed)
        )
    }
}

/// A note on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Note {
    pub note_id: String,
    pub author: String,
    pub content: String,
    pub created_at: String,
}

/// A ticket in the v1 shape (`notes` and `history` are read from their own items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket_id: TicketId,
    pub task_id: TaskId,
    pub status: TicketStatus,
    pub summary: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub assigned_to: Option<String>,
    /// Where the escalation came from (`guardrail:<policy>`, `negotiation`).
    pub sources: Vec<String>,
    /// The guardrail decisions, negotiation and outputs that raised it (v1 `escalation_payload`).
    pub escalation_payload: serde_json::Value,
    /// Bumped on every change.
    pub version: u64,
    /// Notes written on the ticket (counted on the ticket item as each is added).
    #[serde(default)]
    pub note_count: u32,
}

/// The ticket of a task's review request: the same request always names the same ticket.
pub fn ticket_id_for(task_id: TaskId, event_sequence: u64) -> TicketId {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6e657572_6166_6f72_6765_726576696577);
    let name = format!("{task_id}#{event_sequence}");
    TicketId::from_raw(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string())
}

/// The ticket a review request opens. Its id is derived from the task and the
/// `review_requested` event, so a replayed run opens the same ticket.
pub fn ticket_for(task: &Task, result: &TaskResult, review: &ReviewRequest, now: i64) -> Ticket {
    Ticket {
        ticket_id: ticket_id_for(task.task_id, review.event_sequence),
        task_id: task.task_id,
        status: TicketStatus::Open,
        summary: None,
        created_at: now,
        updated_at: now,
        assigned_to: None,
        sources: review.sources(),
        escalation_payload: serde_json::json!({
            "meta": {"run_id": result.run_id, "reasons": review.reasons, "submitted_by": task.submitted_by},
            "negotiation": result.negotiation,
            "guardrails": review.decisions,
            "prompt": crate::redact::redact_pii(&task.prompt),
            "outputs": result.outputs,
        }),
        version: 1,
        note_count: 0,
    }
}

/// The worker hands review requests here: the request's ticket is opened, or
/// found already open (a replayed run, another open ticket of the task).
impl ReviewDesk for store::ReviewStore {
    async fn open_ticket(
        &self,
        task: &Task,
        result: &TaskResult,
        review: &ReviewRequest,
        now: i64,
    ) -> Result<TicketId, StoreError> {
        let ticket = ticket_for(task, result, review, now);
        let opened = self.open(&ticket).await?;
        // Ids only: the ticket holds the run's outputs, which do not belong in logs.
        let (ticket_id, newly) = match opened {
            store::Opened::Opened(t) => (t.ticket_id, true),
            store::Opened::AlreadyOpen(id) => (id, false),
        };
        tracing::info!(%ticket_id, opened = newly, "review ticket");
        Ok(ticket_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_v1_transitions_are_allowed() {
        use TicketStatus::*;
        let allowed: Vec<(TicketStatus, TicketStatus)> = TicketStatus::ALL
            .iter()
            .flat_map(|a| TicketStatus::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Open, InReview),
                (Open, Resolved),
                (Open, Dismissed),
                (InReview, Open),
                (InReview, Resolved),
                (InReview, Dismissed)
            ]
        );
        assert!(Resolved.is_closed() && Dismissed.is_closed() && !Open.is_closed());
    }
}
