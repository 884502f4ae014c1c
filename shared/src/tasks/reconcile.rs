//! Tasks whose message was dead-lettered never stay `queued` or `in_progress`.
//!
//! A message that exhausted its receives sits in the tasks dead-letter queue; its
//! task may still say `queued` (never claimed: the worker had no time left) or
//! `in_progress` (the worker died). The reconciler, run by `queue-health` only
//! while the dead-letter queue holds messages (so it costs nothing at idle), reads
//! them without consuming them (each is made visible again at once: operators
//! replay from the queue) and fails each such task with reason `dead_lettered`.
//! The write is conditional, so a task that settled meanwhile is left alone, and a
//! message read twice changes nothing the second time.

use super::leases::Transition;
use super::model::TaskMessage;
use super::store::TaskStore;
use crate::dynamo::StoreError;
use crate::queue::QueueError;
use aws_sdk_sqs::Client;
use std::collections::HashSet;

use super::model::DEAD_LETTERED;

pub struct DeadLetterReconciler {
    pub sqs: Client,
    pub dlq_url: String,
    pub store: TaskStore,
    /// Receives per run (10 messages each).
    pub max_batches: usize,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    pub messages: usize,
    /// Tasks moved to `failed`.
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeadLetterReconciler {
    pub async fn run(&self) -> Result<Reconciled, ReconcileError> {
        let mut seen = HashSet::new();
        let mut report = Reconciled::default();
        for _ in 0..self.max_batches {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(QueueError::from_sdk)?;
            let messages = received.messages();
            let fresh: Vec<_> = messages
                .iter()
                .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_string()))
                .collect();
            for message in &fresh {
                report.messages += 1;
                let task = message
                    .body()
                    .and_then(|b| serde_json::from_str::<TaskMessage>(b).ok());
                if let Some(task) = task {
                    let reason = format!(
                        "{DEAD_LETTERED}: the task's message exhausted its receives and waits in the dead-letter queue"
                    );
                    let now = crate::time::now_millis();
                    let failed = self.store.fail_stuck(task.task_id, &reason, now).await?;
                    if failed == Transition::Applied {
                        report.failed += 1;
                        tracing::warn!(task_id = %task.task_id, "dead-lettered task failed");
                    }
                }
            }
            // Back into view at once: the messages stay for operators to inspect and replay.
            for message in messages {
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .change_message_visibility()
                        .queue_url(&self.dlq_url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .map_err(QueueError::from_sdk)?;
                }
            }
            if fresh.is_empty() {
                break;
            }
        }
        Ok(report)
    }
}
