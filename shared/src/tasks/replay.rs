//! Replaying a dead-lettered task: the operators' `nf-ops dlq replay` reopens the task
//! (`failed` with reason `dead_lettered` → `queued`, one conditional write), notes it in
//! the task's event log (`task_reopened`), then sends the message back. The worker's
//! conditional claim still runs the task at most once, however often a message is sent.

use super::events::{EventPayload, TaskEvent};
use super::leases::Transition;
use super::model::{TaskId, TaskStatus};
use super::runs::{Read, RunStore, run_id_for};
use super::store::TaskStore;
use crate::dynamo::StoreError;
use serde::Serialize;

pub use super::model::DEAD_LETTERED;

/// `task_reopened`: who replayed which message.
#[derive(Debug, Serialize)]
pub struct TaskReopened<'a> {
    /// The dead-lettered message's id.
    pub replay_of: &'a str,
    /// The operator's identity (an IAM ARN).
    pub by: &'a str,
}

impl EventPayload for TaskReopened<'_> {
    const NAME: &'static str = super::events::names::TASK_REOPENED;
}

/// What a replay finds the task in, and so what it does with the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Readiness {
    /// Failed as dead-lettered: reopened now; the message goes back.
    Reopened,
    /// Still `queued` or `in_progress` (nothing marked it): the message goes back as it is.
    Unsettled,
    /// Settled some other way (completed, under review, failed for good): a replay would
    /// do nothing, so the message stays for the operator to purge.
    Settled { status: TaskStatus },
    /// No such task: the message stays.
    Missing,
}

impl Readiness {
    pub fn replays(&self) -> bool {
        matches!(self, Readiness::Reopened | Readiness::Unsettled)
    }
}

/// Readies `task_id` for its message's replay (see [`Readiness`]).
pub async fn reopen(
    tasks: &TaskStore,
    runs: &RunStore,
    task_id: TaskId,
    replay_of: &str,
    by: &str,
    now: i64,
) -> Result<Readiness, StoreError> {
    if tasks.reopen_dead_lettered(task_id, now).await? == Transition::Applied {
        let events = runs.events_after(task_id, 0, 10_000, Read::Latest).await?;
        let sequence = events.last().map_or(1, |e| e.sequence + 1);
        let reopened = TaskReopened { replay_of, by };
        let event = TaskEvent::of(task_id, Some(run_id_for(task_id)), sequence, &reopened, now);
        runs.append_event(&event).await?;
        return Ok(Readiness::Reopened);
    }
    Ok(match tasks.get(task_id).await? {
        None => Readiness::Missing,
        Some(task) if matches!(task.status, TaskStatus::Queued | TaskStatus::InProgress) => {
            Readiness::Unsettled
        }
        Some(task) => Readiness::Settled {
            status: task.status,
        },
    })
}
