//! The run's recorder: writes events in order, skipping those a previous
//! delivery already wrote, and memoizes agent replies and tool results in the
//! runs table so that a replay computes the same steps.
//!
//! Events are written a step at a time: each is numbered when it happens and held
//! until [`Recorder::flush`], which the run calls before anything slow (a model's
//! turn over the network, a network tool) and when it ends, so readers see a step's
//! events together and soon, at one write per step (or per run, when nothing in it is
//! slow) instead of one per event.

use crate::dynamo::StoreError;
use crate::tasks::EventPayload;
use crate::tasks::Read;
use crate::tasks::{GuardrailDecision, RunStore, TaskEvent, TaskId, event_names as names};
use crate::telemetry::names as metric;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Events a replay reads back before it goes on.
const MAX_EVENTS_REPLAYED: usize = 10_000;

pub(super) struct Recorder<'a> {
    pub store: &'a RunStore,
    pub task_id: TaskId,
    pub run_id: String,
    existing: Vec<TaskEvent>,
    cursor: usize,
    next_sequence: u64,
    /// Memoized agent replies and tool results, by key.
    memos: HashMap<String, Value>,
    /// Numbered, not yet written.
    pending: Vec<TaskEvent>,
    pending_bytes: usize,
}

/// A page is written before it holds this much (DynamoDB items stop at 400 KB).
const MAX_PAGE_BYTES: usize = 256 * 1024;

impl<'a> Recorder<'a> {
    pub async fn load(
        store: &'a RunStore,
        task_id: TaskId,
        run_id: String,
    ) -> Result<Self, StoreError> {
        let existing = store
            .events_after(task_id, 0, MAX_EVENTS_REPLAYED, Read::Latest)
            .await?;
        let memos = store
            .items(&run_id, "memo#", None, 100)
            .await?
            .items
            .into_iter()
            .filter_map(|m| Some((m.get("key")?.as_str()?.to_string(), m.get("value")?.clone())))
            .collect();
        let next_sequence = existing.last().map_or(1, |e| e.sequence + 1);
        // A reopened task's new run follows its history: what it replays (after a crash) is
        // only what it recorded since the reopening.
        let cursor = existing
            .iter()
            .rposition(|e| e.event == names::TASK_REOPENED)
            .map_or(0, |at| at + 1);
        Ok(Self {
            store,
            task_id,
            run_id,
            existing,
            cursor,
            next_sequence,
            memos,
            pending: Vec::new(),
            pending_bytes: 0,
        })
    }

    /// Whether the last event recorded so far is `task_failed`.
    pub fn ended_failed(&self) -> bool {
        self.existing
            .last()
            .is_some_and(|e| e.event == names::TASK_FAILED)
    }

    /// Records what happens next after everything already recorded (no replay).
    pub fn append_only(&mut self) {
        self.cursor = self.existing.len();
    }

    /// Writes the events held since the last flush, as one item.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.store.append_events(&self.pending).await?;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Records an event (or finds it already recorded) and returns its sequence number.
    pub async fn emit<P: EventPayload>(&mut self, payload: &P) -> Result<u64, StoreError> {
        let (event, payload) = (P::NAME, payload.to_payload());
        if let Some(old) = self.existing.get(self.cursor) {
            if old.event == event && old.payload == payload {
                self.cursor += 1;
                return Ok(old.sequence);
            }
            // The previous delivery ended on a retryable failure: keep it as history and go on after it.
            let rest = &self.existing[self.cursor..];
            let ended_on_retry =
                rest.len() == 1 && rest[0].payload.get("retryable") == Some(&Value::Bool(true));
            if !ended_on_retry {
                tracing::error!(
                    task_id = %self.task_id, expected = %old.event, got = event,
                    "replay diverged from the recorded events"
                );
            }
            self.cursor = self.existing.len();
        }
        let record = TaskEvent::new(
            self.task_id,
            Some(self.run_id.clone()),
            self.next_sequence,
            event,
            payload,
            crate::time::now_millis(),
        );
        let sequence = record.sequence;
        self.pending_bytes += record.payload.to_string().len() + 256;
        self.pending.push(record);
        self.next_sequence += 1;
        if self.pending_bytes >= MAX_PAGE_BYTES {
            self.flush().await?;
        }
        Ok(sequence)
    }

    /// A value an earlier delivery memoized under `key`.
    pub fn cached<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.memos
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Memoizes `value` under `key`; if another delivery got there first, its value wins.
    pub async fn remember<T: Serialize + DeserializeOwned>(
        &mut self,
        key: String,
        value: T,
    ) -> Result<T, StoreError> {
        let value = serde_json::to_value(value).map_err(|e| StoreError::Internal(e.to_string()))?;
        let stored = self
            .store
            .put_item_once(
                &self.run_id,
                &format!("memo#{key}"),
                &json!({"key": key, "value": value}),
            )
            .await?;
        let value = stored.get("value").cloned().unwrap_or(value);
        self.memos.insert(key, value.clone());
        serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// Records a guardrail decision: its metric and its event (the log is its one copy).
    pub async fn decision(&mut self, d: &GuardrailDecision) -> Result<(), StoreError> {
        metrics::counter!(
            metric::GUARDRAIL_DECISIONS,
            "decision" => d.decision.as_str(),
            "policy_id" => d.policy_id.clone()
        )
        .increment(1);
        self.emit(d).await.map(|_| ())
    }
}
