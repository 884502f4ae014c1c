//! The outbox sweeper: enqueues accepted tasks whose enqueue was not confirmed.
//!
//! A submission writes the task with an outbox marker (`outbox_shard`,
//! `outbox_since`) in the same write that accepts it, then sends the message
//! and removes the marker. If the function dies or SQS fails in between, the
//! marker stays, and this sweeper (a scheduled function) finds it through the
//! sparse `outbox` index and sends the message again. The worker's conditional
//! claim makes any resulting duplicate harmless.

use super::model::TaskMessage;
use super::store::TaskStore;
use crate::config::{ConfigError, Settings};
use crate::dynamo::StoreError;
use crate::queue::TaskQueue;
use crate::telemetry::names;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// A marker younger than this may belong to a submission still in flight.
    pub grace: Duration,
    /// At most this many tasks per run, so one run fits its timeout.
    pub max_per_run: usize,
}

impl OutboxConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            grace: Duration::from_secs(settings.bounded_or(
                "OUTBOX__GRACE_SECONDS",
                30,
                0..=3600,
            )?),
            max_per_run: settings.bounded_or("OUTBOX__MAX_PER_RUN", 1000, 1..=10_000)?,
        })
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub found: usize,
    pub enqueued: usize,
    pub failed: usize,
}

pub struct OutboxSweeper {
    pub store: TaskStore,
    pub queue: TaskQueue,
    pub config: OutboxConfig,
}

/// The 16 outbox shards, one per leading hex digit of a task id.
const SHARDS: &str = "0123456789abcdef";

impl OutboxSweeper {
    /// One sweep over every shard. A queue failure leaves markers in place for the next run.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let cutoff = crate::time::now_millis() - self.config.grace.as_millis() as i64;
        let mut report = SweepReport::default();
        for shard in SHARDS.chars() {
            let budget = self.config.max_per_run.saturating_sub(report.found);
            if budget == 0 {
                break;
            }
            let pending = self
                .store
                .pending_outbox(&shard.to_string(), cutoff, budget)
                .await?;
            if pending.is_empty() {
                continue;
            }
            report.found += pending.len();
            let messages: Vec<TaskMessage> = pending
                .iter()
                .map(|&task_id| TaskMessage {
                    task_id,
                    request_id: None,
                })
                .collect();
            let sent = match self.queue.send_all(&messages).await {
                Ok(sent) => sent,
                Err(err) => {
                    tracing::warn!(error = %err, shard = %shard, "outbox sweep could not enqueue");
                    Vec::new()
                }
            };
            for task_id in &sent {
                self.store.clear_outbox(*task_id).await?;
                tracing::info!(%task_id, "outbox sweeper enqueued task");
            }
            report.enqueued += sent.len();
            report.failed += pending.len() - sent.len();
        }
        metrics::counter!(names::OUTBOX_REENQUEUED).increment(report.enqueued as u64);
        Ok(report)
    }
}
