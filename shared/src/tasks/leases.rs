//! A task's life after it is accepted, as conditional writes on its item: a
//! delivery claims it under a lease, then settles or releases it; a reviewer's
//! decision or a dead-lettered message settles it from outside. The lease token
//! fences out stale deliveries, so no write moves a task backwards.

use super::model::{FailedAttempt, Task, TaskId, TaskStatus};
use super::result::TaskResult;
use super::store::{TaskStore, item_to_task};
use crate::dynamo::{Conditional, StoreError, applied, condition_failed, n, s};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// Results larger than this fail the task instead of breaking the 400 KB item limit.
pub const MAX_RESULT_BYTES: usize = 128 * 1024;

/// How a claimed task ends.
#[derive(Debug, Clone, Copy)]
pub enum Settle<'a> {
    Completed(&'a TaskResult),
    AwaitingReview(&'a TaskResult),
    /// The reason, and the task's failed attempts with this one last.
    Failed(&'a str, &'a [FailedAttempt]),
}

/// A claim on a task by one delivery; the token fences out stale workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task_id: TaskId,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    Claimed(Box<Task>, Lease),
    NotFound,
    /// Already in a state the worker must not touch (terminal, or awaiting review).
    Settled(TaskStatus),
    /// Another delivery holds an unexpired lease.
    HeldElsewhere,
}

/// The statuses a dead-lettered task may be failed from.
pub const STUCK: [TaskStatus; 2] = [TaskStatus::Queued, TaskStatus::InProgress];

/// What a write under a lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseWrite {
    Written,
    /// Another delivery took the task over: nothing was written.
    LeaseLost,
}

/// What a transition from outside the worker (a review decision, a dead letter) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Applied,
    /// The task had already moved on: nothing was written.
    AlreadySettled,
}

impl Transition {
    fn of(write: Conditional) -> Result<Self, StoreError> {
        Ok(match write {
            Conditional::Applied => Transition::Applied,
            Conditional::ConditionFailed => Transition::AlreadySettled,
        })
    }
}

impl TaskStore {
    /// An `UpdateItem` on one task's item, conditions and expression still to come.
    fn update_task(
        &self,
        task_id: TaskId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.tables.tasks)
            .key("task_id", s(&task_id.to_string()))
    }

    /// Claims a task for one delivery: `queued → in_progress`, or takes over an
    /// `in_progress` task whose lease expired (its worker crashed or timed out).
    pub async fn claim(
        &self,
        task_id: TaskId,
        now: i64,
        lease_millis: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let result = self
            .update_task(task_id)
            .update_expression(
                "SET #status = :in_progress, lease_token = :token, lease_until = :until, \
                 updated_at = :now, started_at = if_not_exists(started_at, :now) \
                 ADD attempts :one",
            )
            .condition_expression(
                "attribute_exists(task_id) AND (#status = :queued OR \
                 (#status = :in_progress AND lease_until < :now))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(TaskStatus::InProgress.as_str()))
            .expression_attribute_values(":queued", s(TaskStatus::Queued.as_str()))
            .expression_attribute_values(":token", s(&token))
            .expression_attribute_values(":until", n(now + lease_millis))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output
                    .attributes()
                    .ok_or_else(|| StoreError::Internal("claim returned no item".into()))?;
                let task = item_to_task(item)?;
                Ok(ClaimOutcome::Claimed(
                    Box::new(task),
                    Lease { task_id, token },
                ))
            }
            Err(err) if condition_failed(&err) => {
                // Why did the claim fail? One consistent read tells.
                Ok(match self.get(task_id).await? {
                    None => ClaimOutcome::NotFound,
                    Some(task) if task.status == TaskStatus::InProgress => {
                        ClaimOutcome::HeldElsewhere
                    }
                    Some(task) => ClaimOutcome::Settled(task.status),
                })
            }
            Err(err) => Err(StoreError::from_sdk(err)),
        }
    }

    /// Settles a claimed task: `completed` or `awaiting_review` with its result, or
    /// `failed` with the reason; nothing is written if the lease was lost (another
    /// delivery took over).
    pub async fn finish(
        &self,
        lease: &Lease,
        settle: Settle<'_>,
        now: i64,
    ) -> Result<LeaseWrite, StoreError> {
        let (next, field, value) = match settle {
            Settle::Completed(result) | Settle::AwaitingReview(result) => (
                if matches!(settle, Settle::Completed(_)) {
                    TaskStatus::Completed
                } else {
                    TaskStatus::AwaitingReview
                },
                "result",
                serde_json::to_string(result).map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
            Settle::Failed(message, _) => (TaskStatus::Failed, "last_error", message.to_string()),
        };
        debug_assert!(TaskStatus::InProgress.may_become(next));
        // A settled task expires after the retention; one awaiting review waits for its decision.
        let (update, expires) = match next {
            TaskStatus::AwaitingReview => (
                "SET #status = :next, #field = :value, finished_at = :now, updated_at = :now \
                 REMOVE lease_token, lease_until",
                None,
            ),
            _ => (
                "SET #status = :next, #field = :value, finished_at = :now, updated_at = :now, \
                 expires_at = :expires REMOVE lease_token, lease_until",
                Some((":expires", n(self.tables.retention.expires_at(now)))),
            ),
        };
        let mut values = vec![
            (":next", s(next.as_str())),
            (":value", s(&value)),
            (":now", n(now)),
        ];
        values.extend(expires);
        let mut update = update.to_string();
        if let Settle::Failed(_, failures) = settle {
            update = update.replacen("SET ", "SET failures = :failures, ", 1);
            values.push((":failures", failures_value(failures)?));
        }
        self.update_leased(lease, &update, values, Some(field))
            .await
    }

    /// Settles a task that awaited review, as the reviewer decided: `completed`
    /// keeps its result, `failed` records the reviewer's reason. `AlreadySettled`
    /// if the task no longer awaits review (a retried decision).
    pub async fn settle_review(
        &self,
        task_id: TaskId,
        approved: bool,
        reason: &str,
        now: i64,
    ) -> Result<Transition, StoreError> {
        let (next, update) = if approved {
            (
                TaskStatus::Completed,
                "SET #status = :next, finished_at = :now, updated_at = :now, expires_at = :expires",
            )
        } else {
            (
                TaskStatus::Failed,
                "SET #status = :next, finished_at = :now, updated_at = :now, \
                 expires_at = :expires, last_error = :reason",
            )
        };
        let mut request = self
            .update_task(task_id)
            .update_expression(update)
            .condition_expression("#status = :awaiting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(":awaiting", s(TaskStatus::AwaitingReview.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(self.tables.retention.expires_at(now)));
        if !approved {
            request = request.expression_attribute_values(":reason", s(reason));
        }
        Transition::of(applied(request.send().await)?)
    }

    /// Fails a task that can no longer run (its message was dead-lettered) unless it
    /// settled meanwhile: `queued`/`in_progress` → `failed` with `reason`, as one
    /// conditional write. `Applied` if this call failed it.
    pub async fn fail_stuck(
        &self,
        task_id: TaskId,
        reason: &str,
        now: i64,
    ) -> Result<Transition, StoreError> {
        let [queued, in_progress] = STUCK;
        let result = self
            .update_task(task_id)
            .update_expression(
                "SET #status = :failed, finished_at = :now, updated_at = :now, \
                 expires_at = :expires, last_error = :reason REMOVE lease_token, lease_until",
            )
            .condition_expression("#status IN (:queued, :in_progress)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(TaskStatus::Failed.as_str()))
            .expression_attribute_values(":queued", s(queued.as_str()))
            .expression_attribute_values(":in_progress", s(in_progress.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(self.tables.retention.expires_at(now)))
            .expression_attribute_values(":reason", s(reason))
            .send()
            .await;
        Transition::of(applied(result)?)
    }

    /// Reopens a task that failed as dead-lettered, for its message's replay: `failed` →
    /// `queued`, its finish and expiry removed (its failures stay). `AlreadySettled` when
    /// it is not such a task (another replay reopened it first, or it failed for good).
    pub async fn reopen_dead_lettered(
        &self,
        task_id: TaskId,
        now: i64,
    ) -> Result<Transition, StoreError> {
        let result = self
            .update_task(task_id)
            .update_expression(
                "SET #status = :queued, updated_at = :now \
                 REMOVE finished_at, expires_at, lease_token, lease_until",
            )
            .condition_expression("#status = :failed AND begins_with(last_error, :dead)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":queued", s(TaskStatus::Queued.as_str()))
            .expression_attribute_values(":failed", s(TaskStatus::Failed.as_str()))
            .expression_attribute_values(":dead", s(super::model::DEAD_LETTERED))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        Transition::of(applied(result)?)
    }

    /// Gives a claimed task back for a retry: the lease ends now, the error is kept, and
    /// `failures` (the task's failed attempts, this one last) replace the recorded ones.
    pub async fn release(
        &self,
        lease: &Lease,
        error: &str,
        failures: &[FailedAttempt],
        now: i64,
    ) -> Result<LeaseWrite, StoreError> {
        self.update_leased(
            lease,
            "SET lease_until = :now, updated_at = :now, #field = :value, failures = :failures",
            vec![
                (":value", s(error)),
                (":now", n(now)),
                (":failures", failures_value(failures)?),
            ],
            Some("last_error"),
        )
        .await
    }

    async fn update_leased(
        &self,
        lease: &Lease,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
        field: Option<&str>,
    ) -> Result<LeaseWrite, StoreError> {
        let mut request = self
            .update_task(lease.task_id)
            .update_expression(update)
            .condition_expression("#status = :in_progress AND lease_token = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(TaskStatus::InProgress.as_str()))
            .expression_attribute_values(":token", s(&lease.token));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        // `result` is a DynamoDB reserved word: attribute names always go through a placeholder.
        if let Some(field) = field {
            request = request.expression_attribute_names("#field", field);
        }
        Ok(match applied(request.send().await)? {
            Conditional::Applied => LeaseWrite::Written,
            Conditional::ConditionFailed => LeaseWrite::LeaseLost,
        })
    }
}

/// Failed attempts as stored: a JSON string, like `result` (written whole under the lease,
/// which fences out any other writer).
fn failures_value(failures: &[FailedAttempt]) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(failures)
        .map(|json| s(&json))
        .map_err(|e| StoreError::Internal(e.to_string()))
}
