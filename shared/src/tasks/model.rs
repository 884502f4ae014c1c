//! What a task is and which states it may pass through.

use super::result::TaskResult;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A task id: a UUID in its canonical lowercase, hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskId(uuid::Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id of the task a caller's `Idempotency-Key` names: a name-based UUID of the
    /// caller's `sub` and the key, so every retry with the key puts the same item.
    pub fn for_idempotency_key(subject: &str, key: &str) -> Self {
        const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6e657572_6166_6f72_6765_6964656d706f);
        let name = format!("{subject}\u{0}{key}");
        Self(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }

    /// Accepts only the 36-character hyphenated form, so one task has one spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(raw).ok().map(Self)
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TaskId::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a task id"))
    }
}

/// A task's life cycle: `queued → in_progress → completed | failed`
/// (`awaiting_review` arrives with guardrails). Terminal states never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    InProgress,
    AwaitingReview,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::AwaitingReview => "awaiting_review",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            TaskStatus::Queued,
            TaskStatus::InProgress,
            TaskStatus::AwaitingReview,
            TaskStatus::Completed,
            TaskStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }

    /// Whether the worker may move a task from `self` to `next`. Used by the
    /// store's conditions and checked in tests against every pair.
    pub fn may_become(&self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Queued, InProgress)
                | (InProgress, Completed)
                | (InProgress, Failed)
                | (InProgress, AwaitingReview)
        )
    }
}

/// The route a task was submitted through (the v1 `entry_point` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryPoint {
    SubmitTask,
    SubmitTaskStream,
}

impl EntryPoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryPoint::SubmitTask => "submit_task",
            EntryPoint::SubmitTaskStream => "submit_task_stream",
        }
    }

    /// v1's `entry_point` label, on the metrics v1 named: `api` for any HTTP submission.
    pub fn v1_label(&self) -> &'static str {
        "api"
    }

    /// A stored label; tasks written before the label existed came through `submit_task`.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("submit_task_stream") => EntryPoint::SubmitTaskStream,
            _ => EntryPoint::SubmitTask,
        }
    }
}

/// A task as stored. Timestamps are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub prompt: String,
    pub metadata: Map<String, Value>,
    pub continuation_task_id: Option<TaskId>,
    /// The `sub` of the token that submitted it.
    pub submitted_by: String,
    /// The request id of the submission, for tracing.
    pub request_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: u32,
    pub result: Option<TaskResult>,
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first (at most [`MAX_FAILURES_KEPT`]): what an operator
    /// reads before replaying a dead-lettered task.
    pub failures: Vec<FailedAttempt>,
    /// The route that submitted it: the v1 `entry_point` label.
    pub entry_point: EntryPoint,
}

/// A queued task for unit tests.
#[cfg(test)]
pub(crate) fn sample_task() -> Task {
    Task {
        task_id: TaskId::new(),
        status: TaskStatus::Queued,
        prompt: "Summarise 3 reports".into(),
        metadata: Map::new(),
        continuation_task_id: None,
        submitted_by: "alice".into(),
        request_id: "req-1".into(),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        started_at: None,
        finished_at: None,
        attempts: 0,
        result: None,
        last_error: None,
        failures: Vec::new(),
        entry_point: EntryPoint::SubmitTask,
    }
}

/// How every dead-lettered failure's `last_error` begins (the worker's last attempt and the
/// dead-letter reconciler alike): what marks a failed task as one a replay may reopen.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// Failed attempts kept on a task; later ones are counted in `attempts` only.
pub const MAX_FAILURES_KEPT: usize = 20;

/// One failed attempt at running a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    /// The task's `attempts` when it failed (1 for the first claim).
    pub attempt: u32,
    /// Epoch milliseconds.
    pub at: i64,
    pub class: FailureClass,
    /// The error, cut to [`MAX_FAILURE_MESSAGE_CHARS`].
    pub message: String,
}

/// What kind of failure an attempt ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Worth another try: the message went back to the queue.
    Transient,
    /// Retrying cannot help: the task failed for good.
    Permanent,
    /// Transient, on the last allowed receive: the task failed and its message was dead-lettered.
    GaveUp,
}

pub const MAX_FAILURE_MESSAGE_CHARS: usize = 500;

impl FailedAttempt {
    pub fn new(attempt: u32, at: i64, class: FailureClass, message: &str) -> Self {
        Self {
            attempt,
            at,
            class,
            message: message.chars().take(MAX_FAILURE_MESSAGE_CHARS).collect(),
        }
    }
}

/// The body of a message on the tasks queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: TaskId,
    /// The submission's request id, carried for log correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_have_exactly_one_spelling() {
        let id = TaskId::new();
        assert_eq!(TaskId::parse(&id.to_string()), Some(id));
        assert_eq!(TaskId::parse(&id.to_string().to_uppercase()), Some(id));
        assert_eq!(TaskId::parse(&id.to_string().replace('-', "")), None);
        assert_eq!(TaskId::parse("not-a-uuid"), None);
        assert_eq!(TaskId::parse(""), None);
        assert_eq!(TaskId::parse(&format!("{{{id}}}")), None);
    }

    #[test]
    fn an_idempotency_keys_task_id_is_the_callers_own_and_stable() {
        let id = TaskId::for_idempotency_key("alice", "order-42");
        assert_eq!(id, TaskId::for_idempotency_key("alice", "order-42"));
        assert_ne!(id, TaskId::for_idempotency_key("bob", "order-42"));
        assert_ne!(id, TaskId::for_idempotency_key("alice", "order-43"));
        // No separator ambiguity: ("ab", "c") and ("a", "bc") are different callers' keys.
        assert_ne!(
            TaskId::for_idempotency_key("ab", "c"),
            TaskId::for_idempotency_key("a", "bc")
        );
        assert_eq!(TaskId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn the_worker_only_moves_tasks_forward() {
        use TaskStatus::*;
        let all = [Queued, InProgress, AwaitingReview, Completed, Failed];
        let allowed: Vec<(TaskStatus, TaskStatus)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Queued, InProgress),
                (InProgress, AwaitingReview),
                (InProgress, Completed),
                (InProgress, Failed),
            ]
        );
        for terminal in [Completed, Failed] {
            assert!(terminal.is_terminal());
            assert!(all.iter().all(|next| !terminal.may_become(*next)));
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [
            "queued",
            "in_progress",
            "awaiting_review",
            "completed",
            "failed",
        ] {
            assert_eq!(TaskStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(TaskStatus::parse("done"), None);
    }

    #[test]
    fn messages_refuse_a_body_without_a_valid_task_id() {
        assert!(serde_json::from_str::<TaskMessage>(r#"{"task_id":"nope"}"#).is_err());
        assert!(serde_json::from_str::<TaskMessage>(r#"{}"#).is_err());
    }
}

/// How long a task's records are kept (`TASKS__RETENTION_DAYS`, 90): each settled task,
/// event page and run item carries `expires_at`, the epoch second after which DynamoDB's
/// TTL deletes it, set in the write that creates or settles it (no write of its own). A
/// task awaiting review has none until it is decided; review tickets and the audit log
/// are kept (see `docs/architecture.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { days: 90 }
    }
}

impl Retention {
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            days: settings.bounded_or("TASKS__RETENTION_DAYS", 90, 1..=3650)?,
        })
    }

    /// The `expires_at` of a record written at `now_millis`.
    pub fn expires_at(&self, now_millis: i64) -> i64 {
        now_millis.max(0) / 1000 + i64::from(self.days) * 86_400
    }
}
