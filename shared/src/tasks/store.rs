//! Tasks in DynamoDB. Every state change is a conditional write, so duplicate
//! or late deliveries cannot run a task twice or move it backwards.
//!
//! Item layout (tasks table, key `task_id`): scalar attributes for what
//! conditions and indexes read; `metadata` and `result` as JSON strings, so any
//! JSON a client sends is stored faithfully (DynamoDB numbers and maps cannot
//! hold every JSON value). The table's stream (keys only) carries each new
//! task to the enqueuer (`tasks::enqueue`).

use super::model::{EntryPoint, Task, TaskId, TaskStatus};
use crate::access;
use crate::auth::Principal;
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Item, StoreError, get_n, get_s, n, s};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Table names: `TASKS_TABLE`.
#[derive(Debug, Clone)]
pub struct TaskTables {
    pub tasks: String,
    pub retention: super::model::Retention,
}

impl TaskTables {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            tasks: settings.required("TASKS_TABLE")?,
            retention: super::model::Retention::from_settings(settings)?,
        })
    }
}

/// A submission made under an `Idempotency-Key`. Its task id follows from the caller and
/// the key ([`TaskId::for_idempotency_key`]), so the task's own conditional put is the
/// key's claim; the task keeps the body's fingerprint to tell a retry from a reuse.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// SHA-256 of the canonical request body.
    pub request_hash: String,
}

/// What became of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Written, under this id (a retried submission completes the task its claim names).
    Created(TaskId),
    /// The same key and body were seen before: this is the task they created.
    Replayed(TaskId),
    /// The same key came with another body.
    KeyReused,
}

#[derive(Clone)]
pub struct TaskStore {
    pub(super) client: Client,
    pub(super) tables: TaskTables,
}

impl TaskStore {
    pub fn new(sdk: &aws_config::SdkConfig, tables: TaskTables) -> Self {
        Self {
            client: Client::new(sdk),
            tables,
        }
    }

    pub fn tables(&self) -> &TaskTables {
        &self.tables
    }

    /// Records a new task with one conditional put. Under an idempotency key the task id
    /// is the key's, so a second submission with that key finds the first one's task
    /// (handed back by the failed condition, at no extra read): the same body is a replay,
    /// another body a reused key. `Created` carries the id the task was written under.
    pub async fn create(
        &self,
        task: &Task,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut item = task_to_item(task);
        if let Some(claim) = claim {
            item.insert("request_hash".into(), s(&claim.request_hash));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.tasks)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(task_id)")
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        let held = match put {
            Ok(_) => return Ok(CreateOutcome::Created(task.task_id)),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(taken)) => {
                    taken.item().cloned().unwrap_or_default()
                }
                _ => return Err(StoreError::from_sdk(err)),
            },
        };
        let (Some(claim), Some(held_by)) = (claim, get_s(&held, "submitted_by")) else {
            return Err(StoreError::Internal(
                "a new task id was already taken".into(),
            ));
        };
        // Ids follow from (caller, key): another caller's task here is a broken invariant.
        if held_by != task.submitted_by {
            return Err(StoreError::Internal(
                "an idempotency key's task id is another caller's".into(),
            ));
        }
        Ok(
            match get_s(&held, "request_hash") == Some(claim.request_hash.clone()) {
                true => CreateOutcome::Replayed(task.task_id),
                false => CreateOutcome::KeyReused,
            },
        )
    }

    /// Reads a task (strongly consistent: status must never appear to go back).
    pub async fn get(&self, task_id: TaskId) -> Result<Option<Task>, StoreError> {
        self.read(task_id, true).await
    }

    async fn read(&self, task_id: TaskId, consistent: bool) -> Result<Option<Task>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.tasks)
            .key("task_id", s(&task_id.to_string()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        output.item().map(item_to_task).transpose()
    }

    /// Only the task's status (a projection, eventually consistent: half a read unit
    /// however large the task), for callers that poll it.
    pub async fn status(&self, task_id: TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.tasks)
            .key("task_id", s(&task_id.to_string()))
            .projection_expression("#status")
            .expression_attribute_names("#status", "status")
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(output
            .item()
            .and_then(|item| get_s(item, "status"))
            .and_then(|raw| TaskStatus::parse(&raw)))
    }

    /// Tasks `queued` or `in_progress` whose last change is older than `cutoff_millis`: a
    /// scan of the whole table, for an operator's investigation (`nf-ops tasks stuck`),
    /// never a request path.
    pub async fn unsettled_since(&self, cutoff_millis: i64) -> Result<Vec<Task>, StoreError> {
        let mut found = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.tasks)
                .filter_expression("#status IN (:queued, :in_progress) AND updated_at < :cutoff")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":queued", s(TaskStatus::Queued.as_str()))
                .expression_attribute_values(":in_progress", s(TaskStatus::InProgress.as_str()))
                .expression_attribute_values(":cutoff", n(cutoff_millis))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in page.items() {
                found.push(item_to_task(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                found.sort_by_key(|t| t.updated_at);
                return Ok(found);
            }
        }
    }

    /// The task, if it exists and `principal` may read it: an unreadable task is as
    /// good as an unknown one (see [`access::may_read`]). Read eventually consistent (half
    /// the units; a status a moment old is what a poller gets anyway), and again strongly
    /// when not found, so that a task is readable as soon as its submission is answered.
    pub async fn get_readable(
        &self,
        task_id: TaskId,
        principal: &Principal,
    ) -> Result<Option<Task>, StoreError> {
        let task = match self.read(task_id, false).await? {
            Some(task) => Some(task),
            None => self.read(task_id, true).await?,
        };
        Ok(task.filter(|task| access::may_read(principal, &task.submitted_by)))
    }

    /// Tasks by id, eventually consistent, in one batch read per 100 (unprocessed keys asked again).
    pub(crate) async fn get_many(
        &self,
        ids: &[TaskId],
    ) -> Result<HashMap<TaskId, Task>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = HashMap::new();
        for chunk in ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([("task_id".to_string(), s(&id.to_string()))]))
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            for attempt in 0.. {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.tasks, request)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                let items = got.responses().and_then(|r| r.get(&self.tables.tasks));
                for item in items.into_iter().flatten() {
                    let task = item_to_task(item)?;
                    out.insert(task.task_id, task);
                }
                match got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.tables.tasks))
                {
                    Some(left) if !left.keys().is_empty() && attempt < 10 => {
                        request = left.clone();
                    }
                    Some(left) if !left.keys().is_empty() => {
                        return Err(StoreError::Unavailable(
                            "tasks could not be read in full".into(),
                        ));
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Readiness probe: the table exists and answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.tables.tasks)
            .send()
            .await
            .map(|_| ())
            .map_err(StoreError::from_sdk)
    }
}

fn task_to_item(task: &Task) -> Item {
    let mut item = Item::from([
        ("task_id".into(), s(&task.task_id.to_string())),
        ("status".into(), s(task.status.as_str())),
        ("prompt".into(), s(&task.prompt)),
        (
            "metadata".into(),
            s(&serde_json::Value::Object(task.metadata.clone()).to_string()),
        ),
        ("submitted_by".into(), s(&task.submitted_by)),
        ("request_id".into(), s(&task.request_id)),
        ("created_at".into(), n(task.created_at)),
        ("updated_at".into(), n(task.updated_at)),
        ("attempts".into(), n(task.attempts)),
        ("entry_point".into(), s(task.entry_point.as_str())),
    ]);
    if let Some(id) = task.continuation_task_id {
        item.insert("continuation_task_id".into(), s(&id.to_string()));
    }
    for (name, value) in [
        ("started_at", task.started_at),
        ("finished_at", task.finished_at),
    ] {
        if let Some(v) = value {
            item.insert(name.into(), n(v));
        }
    }
    if let Some(error) = &task.last_error {
        item.insert("last_error".into(), s(error));
    }
    if let Some(result) = &task.result {
        item.insert(
            "result".into(),
            s(&serde_json::to_string(result).unwrap_or_default()),
        );
    }
    item
}

pub(super) fn item_to_task(item: &Item) -> Result<Task, StoreError> {
    let corrupt = |what: &str| StoreError::Internal(format!("task item has no valid {what}"));
    let task_id = get_s(item, "task_id")
        .and_then(|raw| TaskId::parse(&raw))
        .ok_or_else(|| corrupt("task_id"))?;
    let status = get_s(item, "status")
        .and_then(|raw| TaskStatus::parse(&raw))
        .ok_or_else(|| corrupt("status"))?;
    let metadata = match get_s(item, "metadata") {
        Some(raw) => match serde_json::from_str(&raw) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(corrupt("metadata")),
        },
        None => Default::default(),
    };
    let result = match get_s(item, "result") {
        Some(raw) => Some(serde_json::from_str(&raw).map_err(|_| corrupt("result"))?),
        None => None,
    };
    Ok(Task {
        task_id,
        status,
        prompt: get_s(item, "prompt").unwrap_or_default(),
        metadata,
        continuation_task_id: get_s(item, "continuation_task_id")
            .and_then(|raw| TaskId::parse(&raw)),
        submitted_by: get_s(item, "submitted_by").unwrap_or_default(),
        request_id: get_s(item, "request_id").unwrap_or_default(),
        created_at: get_n(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        updated_at: get_n(item, "updated_at").ok_or_else(|| corrupt("updated_at"))?,
        started_at: get_n(item, "started_at"),
        finished_at: get_n(item, "finished_at"),
        attempts: get_n(item, "attempts").unwrap_or_default().max(0) as u32,
        result,
        last_error: get_s(item, "last_error"),
        failures: match get_s(item, "failures") {
            Some(raw) => serde_json::from_str(&raw).map_err(|_| corrupt("failures"))?,
            None => Vec::new(),
        },
        entry_point: EntryPoint::parse(get_s(item, "entry_point").as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::result::TaskResult;

    fn sample() -> Task {
        Task {
            task_id: TaskId::new(),
            status: TaskStatus::Completed,
            prompt: "Summarise 3 reports".into(),
            metadata: serde_json::json!({"team": "ops", "big": 1e300, "nested": {"list": [1, null, true]}})
                .as_object()
                .unwrap()
                .clone(),
            continuation_task_id: Some(TaskId::new()),
            submitted_by: "alice".into(),
            request_id: "req-1".into(),
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_001_000,
            started_at: Some(1_700_000_000_500),
            finished_at: Some(1_700_000_001_000),
            attempts: 2,
            result: Some(TaskResult {
                executor: "builtin".into(),
                outputs: vec![crate::tasks::AgentOutput {
                    agent: "a".into(),
                    status: "completed".into(),
                    content: "answer".into(),
                    confidence: 0.5,
                }],
                report: "# r".into(),
                agents_completed: 1,
                agents_failed: 0,
                run_id: Some("r".into()),
                plan: Some(vec![crate::tasks::PlanStep {
                    step: 1,
                    agent: "a".into(),
                    objective: "o".into(),
                    tools: vec![],
                }]),
                negotiation: None,
                guardrails: vec![],
                guardrail_events: 0,
                negotiation_rounds: 1,
                review: None,
            }),
            last_error: Some("transient: x".into()),
            failures: Vec::new(),
            entry_point: EntryPoint::SubmitTaskStream,
        }
    }

    #[test]
    fn a_task_survives_the_round_trip_through_an_item() {
        let task = sample();
        let item = task_to_item(&task);
        assert_eq!(item_to_task(&item).unwrap(), task);
    }

    #[test]
    fn optional_attributes_are_absent_not_null() {
        let mut task = sample();
        task.continuation_task_id = None;
        task.result = None;
        task.last_error = None;
        let item = task_to_item(&task);
        for absent in ["continuation_task_id", "result", "last_error"] {
            assert!(!item.contains_key(absent), "{absent} should be absent");
        }
    }

    #[test]
    fn a_corrupt_item_is_an_error_not_a_panic() {
        let mut item = task_to_item(&sample());
        item.insert("status".into(), s("exploded"));
        assert!(item_to_task(&item).is_err());
    }
}
