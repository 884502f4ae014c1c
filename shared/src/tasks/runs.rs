//! Runs in DynamoDB.
//!
//! - Events table (`task_id`, `sequence`): the append-only event log. An event
//!   is written once (`attribute_not_exists(sequence)`); a replay that reaches
//!   an existing sequence finds it instead of writing a duplicate.
//! - Runs table (`run_id`, `item`): the run record (`run`), one item per
//!   negotiation snapshot (`snapshot#0001`) and guardrail decision
//!   (`decision#0001`), the dossier (`dossier`), and memos (`memo#…`) of
//!   agent replies and tool results, so that a replayed run reuses what an
//!   earlier delivery already obtained instead of asking again.
//!
//! Every item is small and bounded; nothing grows inside one item.

use super::events::TaskEvent;
use super::model::TaskId;
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Appended, Item, StoreError, condition_failed, get_s, n, s};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

/// An event in a page: what is its own (the task and run are the page's).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PagedEvent {
    event: String,
    sequence: u64,
    timestamp: String,
    payload: Value,
}

impl PagedEvent {
    fn of(e: &TaskEvent) -> Self {
        Self {
            event: e.event.clone(),
            sequence: e.sequence,
            timestamp: e.timestamp.clone(),
            payload: e.payload.clone(),
        }
    }

    /// The v1 envelope back, exactly as it was numbered.
    fn into_event(self, task_id: TaskId, run_id: Option<String>) -> TaskEvent {
        TaskEvent {
            version: 1,
            schema: super::events::SCHEMA.into(),
            kind: self.event.clone(),
            event: self.event,
            sequence: self.sequence,
            task_id,
            timestamp: self.timestamp,
            run_id,
            payload: self.payload,
        }
    }
}

/// How fresh a read of the event log must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Strongly consistent: everything written so far (a replay, the next sequence).
    Latest,
    /// Eventually consistent, at half the price: what a reader shows or streams. A
    /// partition's replica applies writes in order, so a stale read misses only the
    /// newest events, never one in the middle; the next poll finds them.
    Recent,
}

/// The run id of a task: stable, so every delivery of the task records into the same run.
pub fn run_id_for(task_id: TaskId) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6e657572_6166_6f72_6765_72756e730001);
    uuid::Uuid::new_v5(&NAMESPACE, task_id.to_string().as_bytes()).to_string()
}

/// A runs-table item: its key and its JSON body.
fn run_item(run_id: &str, key: &str, value: &Value, expires_at: i64) -> Result<Item, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(Item::from([
        ("run_id".into(), s(run_id)),
        ("item".into(), s(key)),
        ("body".into(), s(&body)),
        ("expires_at".into(), n(expires_at)),
    ]))
}

#[derive(Debug, Clone)]
pub struct RunTables {
    pub events: String,
    pub runs: String,
    pub retention: super::model::Retention,
}

impl RunTables {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            events: settings.required("EVENTS_TABLE")?,
            runs: settings.required("RUNS_TABLE")?,
            retention: super::model::Retention::from_settings(settings)?,
        })
    }
}

/// A page of run items and the cursor to the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// The sort key to continue after, if there is more.
    pub next: Option<String>,
}

#[derive(Clone)]
pub struct RunStore {
    client: Client,
    tables: RunTables,
}

impl RunStore {
    pub fn new(sdk: &aws_config::SdkConfig, tables: RunTables) -> Self {
        Self {
            client: Client::new(sdk),
            tables,
        }
    }

    /// When a record written now expires (the tables' TTL attribute).
    fn expires_at(&self) -> i64 {
        self.tables.retention.expires_at(crate::time::now_millis())
    }

    /// Appends an event, unless that sequence was already written (a replay).
    pub async fn append_event(&self, event: &TaskEvent) -> Result<Appended, StoreError> {
        self.append_events(std::slice::from_ref(event)).await
    }

    /// Appends consecutive events as one item, keyed by the last one's sequence, unless
    /// that item was already written (a replay). One event is stored as itself
    /// (`envelope`), several as a page (`page`, their envelopes in order): a step's
    /// events cost one write instead of one each.
    pub async fn append_events(&self, events: &[TaskEvent]) -> Result<Appended, StoreError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Appended::AlreadyRecorded);
        };
        let mut item = Item::from([
            ("task_id".into(), s(&last.task_id.to_string())),
            ("sequence".into(), n(last.sequence)),
            ("event".into(), s(&last.event)),
        ]);
        let body = if events.len() == 1 {
            ("envelope", serde_json::to_string(last))
        } else {
            // The envelope's fields every event of the task repeats are kept once: the key
            // holds the task, the item the run; each event keeps what is its own.
            item.insert("first".into(), n(first.sequence));
            let own: Vec<PagedEvent> = events.iter().map(PagedEvent::of).collect();
            ("page", serde_json::to_string(&own))
        };
        let text = body.1.map_err(|e| StoreError::Internal(e.to_string()))?;
        item.insert(body.0.into(), s(&text));
        if let Some(run_id) = &last.run_id {
            item.insert("run_id".into(), s(run_id));
        }
        item.insert("expires_at".into(), n(self.expires_at()));
        match self
            .client
            .put_item()
            .table_name(&self.tables.events)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#seq)")
            .expression_attribute_names("#seq", "sequence")
            .send()
            .await
        {
            Ok(_) => Ok(Appended::Written),
            Err(err) if condition_failed(&err) => Ok(Appended::AlreadyRecorded),
            Err(err) => Err(StoreError::from_sdk(err)),
        }
    }

    /// Events of a task with a sequence above `after`, in order, at most `limit`.
    /// (A page is keyed by its last event: the items above `after` hold every later event.)
    pub async fn events_after(
        &self,
        task_id: TaskId,
        after: u64,
        limit: usize,
        read: Read,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.events)
                .key_condition_expression("task_id = :t AND #seq > :after")
                .expression_attribute_names("#seq", "sequence")
                .expression_attribute_values(":t", s(&task_id.to_string()))
                .expression_attribute_values(":after", n(after))
                .consistent_read(read == Read::Latest)
                .limit((limit - out.len()).clamp(1, 500) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in page.items() {
                let bad = |e: serde_json::Error| StoreError::Internal(format!("bad event: {e}"));
                let events: Vec<TaskEvent> = match (get_s(item, "page"), get_s(item, "envelope")) {
                    (Some(page), _) => {
                        let run_id = get_s(item, "run_id");
                        let own: Vec<PagedEvent> = serde_json::from_str(&page).map_err(bad)?;
                        own.into_iter()
                            .map(|e| e.into_event(task_id, run_id.clone()))
                            .collect()
                    }
                    (None, Some(one)) => vec![serde_json::from_str(&one).map_err(bad)?],
                    (None, None) => {
                        return Err(StoreError::Internal("event item without events".into()));
                    }
                };
                out.extend(events.into_iter().filter(|e| e.sequence > after));
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// Writes a run item unless it exists; returns the stored value either way (first writer wins).
    pub async fn put_item_once(
        &self,
        run_id: &str,
        key: &str,
        value: &Value,
    ) -> Result<Value, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.runs)
            .set_item(Some(run_item(run_id, key, value, self.expires_at())?))
            .condition_expression("attribute_not_exists(run_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(value.clone()),
            Err(err) if condition_failed(&err) => Ok(self
                .item(run_id, key)
                .await?
                .unwrap_or_else(|| value.clone())),
            Err(err) => Err(StoreError::from_sdk(err)),
        }
    }

    /// Writes (or replaces) a run item.
    pub async fn put_item(&self, run_id: &str, key: &str, value: &Value) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.runs)
            .set_item(Some(run_item(run_id, key, value, self.expires_at())?))
            .send()
            .await
            .map(|_| ())
            .map_err(StoreError::from_sdk)
    }

    pub async fn item(&self, run_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.runs)
            .key("run_id", s(run_id))
            .key("item", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output
            .item()
            .and_then(|i| i.get("body"))
            .and_then(|b| b.as_s().ok())
            .map(|b| {
                serde_json::from_str(b)
                    .map_err(|e| StoreError::Internal(format!("bad run item: {e}")))
            })
            .transpose()
    }

    /// Run items whose key starts with `prefix`, in key order, after `cursor`.
    pub async fn items(
        &self,
        run_id: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.runs)
            .key_condition_expression("run_id = :r AND begins_with(#item, :p)")
            .expression_attribute_names("#item", "item")
            .expression_attribute_values(":r", s(run_id))
            .expression_attribute_values(":p", s(prefix))
            .consistent_read(true)
            .limit(limit.clamp(1, 100) as i32);
        if let Some(after) = cursor {
            request = request
                .exclusive_start_key("run_id", s(run_id))
                .exclusive_start_key("item", s(after));
        }
        let output = request.send().await.map_err(StoreError::from_sdk)?;
        let mut items = Vec::new();
        let mut last = None;
        for item in output.items() {
            let body = item
                .get("body")
                .and_then(|b| b.as_s().ok())
                .map_or("null", String::as_str);
            items.push(
                serde_json::from_str(body)
                    .map_err(|e| StoreError::Internal(format!("bad run item: {e}")))?,
            );
            last = item.get("item").and_then(|k| k.as_s().ok()).cloned();
        }
        let next = output.last_evaluated_key().and(last);
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paged_event_comes_back_as_the_envelope_it_was() {
        let task_id = TaskId::new();
        let run = Some(run_id_for(task_id));
        let event = TaskEvent::new(
            task_id,
            run.clone(),
            7,
            "agent_completed",
            serde_json::json!({"agent": "finance_agent", "content": "x"}),
            1_795_000_000_123,
        );
        let stored = serde_json::to_string(&PagedEvent::of(&event)).unwrap();
        assert!(
            !stored.contains(&task_id.to_string()),
            "the page keeps the task once: {stored}"
        );
        let back: PagedEvent = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.into_event(task_id, run), event);
    }

    #[test]
    fn run_ids_are_stable_per_task_and_distinct_across_tasks() {
        let a = TaskId::new();
        assert_eq!(run_id_for(a), run_id_for(a));
        assert_ne!(run_id_for(a), run_id_for(TaskId::new()));
        assert!(uuid::Uuid::parse_str(&run_id_for(a)).is_ok());
    }
}
