//! Ticket changes: what the review event stream sends, and the attributes that put
//! the item recording a change (a history or note item) into the `changes` index
//! (partition `change_day`, the UTC day; sort `change_key`,
//! `<at: 15 digits of ms>#<ticket_id>#<item>`; the change's JSON in `change`).

use super::TicketStatus;
use super::totals::day_of;
use crate::dynamo::{Item, s};
use crate::tasks::TaskId;
use serde::{Deserialize, Serialize};

/// The index of changes (partition `change_day`, sort `change_key`).
pub const CHANGES_INDEX: &str = "changes";
pub(super) const DAY_MS: i64 = 86_400_000;

/// What happened to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Opened,
    Assigned,
    Unassigned,
    NoteAdded,
    Resolved,
    Dismissed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Assigned => "assigned",
            ChangeKind::Unassigned => "unassigned",
            ChangeKind::NoteAdded => "note_added",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Dismissed => "dismissed",
        }
    }

    /// The change a status transition is (`from` → `to`).
    pub fn of_transition(to: TicketStatus) -> Self {
        match to {
            TicketStatus::Open => ChangeKind::Unassigned,
            TicketStatus::InReview => ChangeKind::Assigned,
            TicketStatus::Resolved => ChangeKind::Resolved,
            TicketStatus::Dismissed => ChangeKind::Dismissed,
        }
    }
}

/// One ticket change, as the stream sends it (`data:`); `id` is the SSE id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketChange {
    pub id: String,
    pub event: ChangeKind,
    pub ticket_id: String,
    /// The ticket's task (a note's change names the ticket only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The ticket's status after the change (a note leaves it as it was: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    /// Who made the change (`system` for a ticket the worker opened).
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

impl TicketChange {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        event: ChangeKind,
        ticket_id: &str,
        item: &str,
        task_id: Option<TaskId>,
        status: Option<TicketStatus>,
        assigned_to: Option<&str>,
        by: &str,
        at_ms: i64,
    ) -> Self {
        Self {
            id: change_key(at_ms, ticket_id, item),
            event,
            ticket_id: ticket_id.to_string(),
            task_id,
            status,
            assigned_to: assigned_to.map(String::from),
            by: by.to_string(),
            at: crate::time::rfc3339(at_ms),
        }
    }

    /// The attributes that put the item recording this change into the `changes` index.
    pub fn index_attributes(&self, item: &mut Item) {
        let at = key_millis(&self.id).unwrap_or_default();
        item.insert("change_day".into(), s(&day_of(at)));
        item.insert("change_key".into(), s(&self.id));
        item.insert(
            "change".into(),
            s(&serde_json::to_string(self).unwrap_or_default()),
        );
    }

    /// The SSE message.
    pub fn sse_message(&self) -> String {
        let data = serde_json::to_string(self).unwrap_or_default();
        format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            self.id,
            self.event.as_str()
        )
    }
}

/// `<at: 15 digits>#<ticket_id>#<item>`: sorts by time, unique per item.
pub fn change_key(at_ms: i64, ticket_id: &str, item: &str) -> String {
    format!("{at_ms:015}#{ticket_id}#{item}")
}

/// The time of a change key (or of a bare 15-digit cursor).
pub(super) fn key_millis(key: &str) -> Option<i64> {
    let digits = key.get(..15)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || key.len() > 15 && !key[15..].starts_with('#')
    {
        return None;
    }
    digits.parse().ok()
}
