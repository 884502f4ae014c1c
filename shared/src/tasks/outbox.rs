//! The outbox sweeper: enqueues accepted tasks that no worker has claimed.
//!
//! A submission writes the task with an outbox marker (`outbox_shard`,
//! `outbox_since`) in the same write that accepts it, then sends the message; the
//! worker's claim removes the marker. A marker older than the grace therefore means
//! the message was lost (the function died before sending, or SQS failed; a failed
//! send makes the marker due at once) or is still waiting behind a backlog. This
//! sweeper (a scheduled function) finds such tasks through the sparse `outbox` index,
//! sends their messages again and moves their markers to now, so a task waiting in a
//! backlog is sent at most once per grace. The worker's conditional claim makes any
//! duplicate harmless.

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
    /// A marker younger than this may belong to a submission still in flight, or a task
    /// waiting its turn on the queue.
    pub grace: Duration,
    /// At most this many tasks per run, so one run fits its timeout.
    pub max_per_run: usize,
}

impl OutboxConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            grace: Duration::from_secs(settings.bounded_or(
                "OUTBOX__GRACE_SECONDS",
                120,
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
            let now = crate::time::now_millis();
            for task_id in &sent {
                self.store.move_outbox_marker(*task_id, now).await?;
                tracing::info!(%task_id, "outbox sweeper enqueued task");
            }
            report.enqueued += sent.len();
            report.failed += pending.len() - sent.len();
        }
        metrics::counter!(names::OUTBOX_REENQUEUED).increment(report.enqueued as u64);
        Ok(report)
    }
}
