//! The task worker: takes a batch of SQS messages and runs each task at most
//! once to a terminal status.
//!
//! Each message is claimed with a conditional write (`queued → in_progress`,
//! or an `in_progress` task whose lease ran out) and finished with another that
//! requires the same lease token, so duplicate, late or concurrent deliveries
//! never run a task twice or move it backwards. Only messages that should be
//! retried are reported in `batchItemFailures`; a message that keeps failing
//! reaches the dead-letter queue after `maxReceiveCount` receives.

use super::executor::{ExecutionContext, ExecutionError, TaskExecutor};
use super::leases::{ClaimOutcome, Lease, LeaseWrite, MAX_RESULT_BYTES, Settle};
use super::model::{FailedAttempt, FailureClass, MAX_FAILURES_KEPT, Task, TaskMessage, TaskStatus};
use super::result::{ReviewRequest, TaskResult, TicketId};
use super::store::TaskStore;
use crate::config::{ConfigError, Settings};
use crate::dynamo::StoreError;
use crate::telemetry::names;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a claim holds before another delivery may take the task over.
    /// Longer than the function timeout, shorter than the queue's visibility timeout.
    pub lease: Duration,
    /// The queue's `maxReceiveCount`: on that receive a transient failure is final.
    pub max_receive_count: u32,
    /// Messages of one batch processed at once.
    pub concurrency: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(90),
            max_receive_count: 5,
            concurrency: 4,
        }
    }
}

impl WorkerConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            lease: Duration::from_secs(settings.bounded_or(
                "TASK_WORKER__LEASE_SECONDS",
                d.lease.as_secs(),
                1..=3600,
            )?),
            max_receive_count: settings.bounded_or(
                "TASK_WORKER__MAX_RECEIVE_COUNT",
                d.max_receive_count,
                1..=1000,
            )?,
            concurrency: settings.bounded_or("TASK_WORKER__CONCURRENCY", d.concurrency, 1..=10)?,
        })
    }
}

/// What happened to one message. The first five delete it; the rest retry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Completed,
    /// A guardrail or the negotiation sent the task to human review.
    AwaitingReview,
    /// The task failed for good (recorded on the task); retrying cannot help.
    Failed,
    /// A duplicate or late delivery of a task that is settled or owned by another delivery.
    Duplicate,
    /// Our lease was taken over while we ran; the other delivery finishes the task.
    LeaseLost,
    /// Worth another try; the message returns to the queue.
    Retry(String),
    /// A transient failure on the last allowed receive: the task is failed and the message dead-lettered.
    GaveUp(String),
    /// The message can never be processed (bad body, unknown task): left for the dead-letter queue.
    Poison(String),
}

impl MessageOutcome {
    pub fn deletes_message(&self) -> bool {
        matches!(
            self,
            MessageOutcome::Completed
                | MessageOutcome::AwaitingReview
                | MessageOutcome::Failed
                | MessageOutcome::Duplicate
                | MessageOutcome::LeaseLost
        )
    }

    fn label(&self) -> &'static str {
        match self {
            MessageOutcome::Completed => "completed",
            MessageOutcome::AwaitingReview => "awaiting_review",
            MessageOutcome::Failed => "failed",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::LeaseLost => "lease_lost",
            MessageOutcome::Retry(_) => "retry",
            MessageOutcome::GaveUp(_) => "gave_up",
            MessageOutcome::Poison(_) => "poison",
        }
    }
}

/// The message attributes of a replayed message: the dead-lettered message's id, how many
/// times it was replayed, and by whom.
pub const REPLAY_OF: &str = "replay_of";
pub const REPLAY_COUNT: &str = "replay_count";
pub const REPLAYED_BY: &str = "replayed_by";

/// The task a task continues, as the worker finds it.
enum Parent {
    /// It continues nothing.
    None,
    /// Completed, and its continuer's submitter's own.
    Ready(Box<Task>),
    /// Missing, another's, failed, or not finished yet: the error says which, and whether a
    /// retry can help.
    Unusable(ExecutionError),
}

/// Kept free before the Lambda deadline to record an outcome: one store call at its
/// longest ([`crate::aws::OPERATION_TIMEOUT`]) and a second to spare.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(5);
/// The least execution time worth claiming a task for.
pub const MIN_EXECUTION: Duration = Duration::from_secs(5);

/// Where the worker hands a run's review request. The reviews domain implements
/// it: the request's ticket is opened (or found, on a replay) and its id returned.
pub trait ReviewDesk: Send + Sync {
    fn open_ticket(
        &self,
        task: &Task,
        result: &TaskResult,
        review: &ReviewRequest,
        now: i64,
    ) -> impl Future<Output = Result<TicketId, StoreError>> + Send;
}

pub struct TaskWorker<E, R> {
    pub store: TaskStore,
    pub executor: E,
    pub config: WorkerConfig,
    /// Where review requests become tickets.
    pub reviews: R,
}

impl<E: TaskExecutor, R: ReviewDesk> TaskWorker<E, R> {
    /// Processes a batch; the response names the messages to retry.
    /// `deadline` is when the invocation will be cut off (from the Lambda context).
    pub async fn handle_batch(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> SqsBatchResponse {
        let started = Instant::now();
        let outcomes: Vec<(String, MessageOutcome)> = futures_util::stream::iter(event.records)
            .map(|record| async move {
                let id = record.message_id.clone().unwrap_or_default();
                let outcome = self.process(&record, deadline).await;
                (id, outcome)
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;

        let mut response = SqsBatchResponse::default();
        for (message_id, outcome) in outcomes {
            metrics::counter!(names::TASK_MESSAGES, "outcome" => outcome.label()).increment(1);
            if !outcome.deletes_message() {
                response.add_failure(message_id);
            }
        }
        metrics::histogram!(names::WORKER_BATCH_DURATION).record(started.elapsed().as_secs_f64());
        response
    }

    /// Processes one message. Never panics on bad input; every path is an outcome.
    pub async fn process(&self, record: &SqsMessage, deadline: Option<Instant>) -> MessageOutcome {
        let message_id = record.message_id.as_deref().unwrap_or("");
        let Some(message) = record
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<TaskMessage>(body).ok())
        else {
            tracing::error!(message_id, "poison message: body is not a task message");
            return MessageOutcome::Poison("body is not a task message".into());
        };
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        // The span goes with this message's future (not entered on the thread): the batch's
        // messages run at once, and each line must name its own task.
        let span =
            tracing::info_span!("task", task_id = %message.task_id, message_id, receive_count);
        async {
            // A message an operator replayed from the dead-letter queue says so (`nf-ops dlq replay`).
            let attribute = |name: &str| {
                record
                    .message_attributes
                    .get(name)
                    .and_then(|a| a.string_value.clone())
            };
            if let Some(replay_of) = attribute(REPLAY_OF) {
                tracing::info!(
                    replay_of,
                    replay_count = attribute(REPLAY_COUNT),
                    replayed_by = attribute(REPLAYED_BY),
                    "replayed message"
                );
            }

            match self.run(&message, receive_count, deadline).await {
                Ok(outcome) => {
                    tracing::info!(outcome = outcome.label(), "message processed");
                    outcome
                }
                Err(err) => {
                    tracing::warn!(error = %err, "store error; message will be retried");
                    MessageOutcome::Retry(err.to_string())
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run(
        &self,
        message: &TaskMessage,
        receive_count: u32,
        deadline: Option<Instant>,
    ) -> Result<MessageOutcome, StoreError> {
        // A message reached late in the batch is not started without time to finish it:
        // it goes back to the queue untouched (no claim, no attempt counted).
        if let Some(left) = deadline.map(|d| d.saturating_duration_since(Instant::now()))
            && left < SETTLE_MARGIN + MIN_EXECUTION
        {
            return Ok(MessageOutcome::Retry(format!(
                "not started: {} ms left in this invocation",
                left.as_millis()
            )));
        }
        let now = crate::time::now_millis();
        let lease_millis = self.config.lease.as_millis() as i64;
        let (task, lease) = match self.store.claim(message.task_id, now, lease_millis).await? {
            ClaimOutcome::Claimed(task, lease) => (*task, lease),
            ClaimOutcome::NotFound => return Ok(MessageOutcome::Poison("task not found".into())),
            ClaimOutcome::Settled(status) => {
                tracing::info!(
                    status = status.as_str(),
                    "duplicate delivery of a settled task"
                );
                return Ok(MessageOutcome::Duplicate);
            }
            ClaimOutcome::HeldElsewhere => {
                // The delivery holding the lease owns the task; if it dies, its own message comes back.
                return Ok(MessageOutcome::Duplicate);
            }
        };

        let continuation = match self.parent_of(&task).await? {
            Parent::None => Ok(None),
            Parent::Ready(parent) => Ok(Some(*parent)),
            Parent::Unusable(err) => Err(err),
        };
        let result = match continuation {
            Err(err) => Err(err),
            Ok(continuation) => {
                let context = ExecutionContext {
                    continuation,
                    attempt: task.attempts,
                };
                self.execute_within_deadline(&task, &context, deadline)
                    .await
            }
        };
        let result = result.and_then(|r| {
            let size = serde_json::to_string(&r)
                .map(|s| s.len())
                .unwrap_or(usize::MAX);
            if size > MAX_RESULT_BYTES {
                Err(ExecutionError::Permanent(format!(
                    "result of {size} bytes exceeds the {MAX_RESULT_BYTES}-byte limit"
                )))
            } else {
                Ok(r)
            }
        });

        let now = crate::time::now_millis();
        match result {
            Ok(result) if result.review.is_some() => {
                // The ticket first: if we crash before settling, the redelivery finds it open.
                let mut result = result;
                if let Some(review) = &result.review {
                    let ticket_id = self
                        .reviews
                        .open_ticket(&task, &result, review, now)
                        .await?;
                    if let Some(review) = result.review.as_mut() {
                        review.ticket_id = Some(ticket_id);
                    }
                }
                let review = Settle::AwaitingReview(&result);
                self.settle(&task, &lease, review, now, MessageOutcome::AwaitingReview)
                    .await
            }
            Ok(result) => {
                let done = Settle::Completed(&result);
                self.settle(&task, &lease, done, now, MessageOutcome::Completed)
                    .await
            }
            Err(ExecutionError::Permanent(reason)) => {
                self.executor.record_failure(&task, &reason).await;
                let failures = failed_attempts(&task, now, FailureClass::Permanent, &reason);
                let failed = Settle::Failed(&reason, &failures);
                self.settle(&task, &lease, failed, now, MessageOutcome::Failed)
                    .await
            }
            Err(ExecutionError::Transient(reason))
                if receive_count >= self.config.max_receive_count =>
            {
                let message = format!(
                    "{}: gave up after {receive_count} attempts: {reason}",
                    super::model::DEAD_LETTERED
                );
                self.executor.record_failure(&task, &message).await;
                let failures = failed_attempts(&task, now, FailureClass::GaveUp, &reason);
                let outcome = MessageOutcome::GaveUp(message.clone());
                let failed = Settle::Failed(&message, &failures);
                self.settle(&task, &lease, failed, now, outcome).await
            }
            Err(ExecutionError::Transient(reason)) => {
                let failures = failed_attempts(&task, now, FailureClass::Transient, &reason);
                self.store.release(&lease, &reason, &failures, now).await?;
                Ok(MessageOutcome::Retry(reason))
            }
        }
    }

    /// Writes the terminal status; records task metrics only if this delivery still held the lease.
    async fn settle(
        &self,
        task: &Task,
        lease: &Lease,
        settle: Settle<'_>,
        now: i64,
        on_success: MessageOutcome,
    ) -> Result<MessageOutcome, StoreError> {
        if self.store.finish(lease, settle, now).await? == LeaseWrite::LeaseLost {
            tracing::warn!(
                "lease lost before the result was written; another delivery owns the task"
            );
            return Ok(MessageOutcome::LeaseLost);
        }
        let (status, agents) = match settle {
            Settle::Completed(r) => (TaskStatus::Completed, r.agents_completed),
            Settle::AwaitingReview(r) => (TaskStatus::AwaitingReview, r.agents_completed),
            Settle::Failed(..) => (TaskStatus::Failed, 0),
        };
        let latency = (now - task.created_at).max(0) as f64 / 1000.0;
        // The labels of the latency-by-status histogram: one EMF document. The exporter
        // serves v1's run counter and run latency from it (`infra/exporter/exporter.yaml`).
        metrics::counter!(names::TASKS_FINISHED,
            "entry_point" => task.entry_point.as_str(), "status" => status.as_str())
        .increment(1);
        // v1's histogram, with v1's entry point label (`api` for every HTTP submission).
        metrics::histogram!(names::TASK_LATENCY,
            "entry_point" => task.entry_point.v1_label(), "agent_count" => agent_count_label(agents))
        .record(latency);
        // The outcome breakdown is its own histogram: a label on the v1 one would change its series.
        metrics::histogram!(names::TASK_LATENCY_BY_STATUS,
            "entry_point" => task.entry_point.as_str(), "status" => status.as_str())
        .record(latency);
        Ok(on_success)
    }

    /// Loads the task this one continues: it must exist and have completed.
    async fn parent_of(&self, task: &Task) -> Result<Parent, StoreError> {
        let Some(parent_id) = task.continuation_task_id else {
            return Ok(Parent::None);
        };
        let parent = self.store.get(parent_id).await?;
        // Ownership is checked again here: the parent's output becomes part of this run.
        let parent = parent.filter(|p| crate::tasks::submit::may_continue(&task.submitted_by, p));
        Ok(match parent {
            None => Parent::Unusable(ExecutionError::Permanent(format!(
                "continuation task {parent_id} not found"
            ))),
            Some(parent) if parent.status == TaskStatus::Completed => {
                Parent::Ready(Box::new(parent))
            }
            Some(parent) if parent.status.is_terminal() => {
                Parent::Unusable(ExecutionError::Permanent(format!(
                    "continuation task {parent_id} {}",
                    parent.status.as_str()
                )))
            }
            Some(_) => Parent::Unusable(ExecutionError::Transient(format!(
                "continuation task {parent_id} has not finished yet"
            ))),
        })
    }

    /// Runs the executor, stopping early enough to record the outcome before Lambda cuts us off.
    async fn execute_within_deadline(
        &self,
        task: &Task,
        context: &ExecutionContext,
        deadline: Option<Instant>,
    ) -> Result<TaskResult, ExecutionError> {
        let budget = deadline
            .map(|d| {
                d.saturating_duration_since(Instant::now())
                    .saturating_sub(SETTLE_MARGIN)
            })
            .unwrap_or(self.config.lease);
        match tokio::time::timeout(budget, self.executor.execute(task, context)).await {
            Ok(result) => result,
            Err(_) => Err(ExecutionError::Transient(format!(
                "execution exceeded its {} ms budget",
                budget.as_millis()
            ))),
        }
    }
}

/// The v1 `agent_count` label: "0" … "5", then "5_plus".
/// The task's failed attempts with this one added (the claimed task's `attempts` numbers
/// it), up to [`MAX_FAILURES_KEPT`].
fn failed_attempts(task: &Task, now: i64, class: FailureClass, reason: &str) -> Vec<FailedAttempt> {
    let mut failures = task.failures.clone();
    if failures.len() < MAX_FAILURES_KEPT {
        failures.push(FailedAttempt::new(task.attempts, now, class, reason));
    }
    failures
}

pub fn agent_count_label(agents: u32) -> String {
    if agents > 5 {
        "5_plus".to_string()
    } else {
        agents.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_are_kept_up_to_a_bound_with_their_messages_cut() {
        let mut task = crate::tasks::model::sample_task();
        let long = "x".repeat(2_000);
        for attempt in 1..=30 {
            task.attempts = attempt;
            task.failures =
                failed_attempts(&task, i64::from(attempt), FailureClass::Transient, &long);
        }
        assert_eq!(task.failures.len(), MAX_FAILURES_KEPT);
        assert_eq!(
            task.failures.last().unwrap().attempt,
            MAX_FAILURES_KEPT as u32
        );
        assert!(
            task.failures.iter().all(
                |f| f.message.chars().count() == crate::tasks::model::MAX_FAILURE_MESSAGE_CHARS
            )
        );
    }

    #[test]
    fn only_settled_outcomes_delete_the_message() {
        assert!(MessageOutcome::Completed.deletes_message());
        assert!(MessageOutcome::AwaitingReview.deletes_message());
        assert!(MessageOutcome::Failed.deletes_message());
        assert!(MessageOutcome::Duplicate.deletes_message());
        assert!(MessageOutcome::LeaseLost.deletes_message());
        assert!(!MessageOutcome::Retry("x".into()).deletes_message());
        assert!(!MessageOutcome::GaveUp("x".into()).deletes_message());
        assert!(!MessageOutcome::Poison("x".into()).deletes_message());
    }

    #[test]
    fn agent_count_labels_follow_the_v1_buckets() {
        assert_eq!(agent_count_label(0), "0");
        assert_eq!(agent_count_label(5), "5");
        assert_eq!(agent_count_label(6), "5_plus");
    }
}
