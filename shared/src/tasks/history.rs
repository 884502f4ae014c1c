//! v1's history routes, which the v1 console calls: the caller's recent tasks, a task's
//! results, and the chat transcript the console keeps beside a task. Owner-only: a task
//! someone else submitted answers `404` like an unknown one.
//!
//! - `GET /api/v1/history/recent`: the caller's tasks, newest first, from the caller's
//!   submission ledger (`tasks::ledger`: the submission limit's counter lists the tasks it
//!   admitted, so a submission writes no index entry), then one batch read of the page's
//!   tasks.
//! - `GET /api/v1/history/{task_id}`: the task's outputs in v1's `TaskResult` shape.
//! - `GET|PUT /api/v1/history/{task_id}/transcript`: the transcript, a run item beside the
//!   task's run (it expires with it); a `PUT` replaces it whole.

use super::document;
use super::ledger::{self, LedgerCursor, SubmissionLedger};
use super::model::{Task, TaskId};
use super::runs::{RunStore, RunTables, run_id_for};
use super::status::{TASK_NOT_FOUND, task_id_param};
use super::store::{TaskStore, TaskTables};
use crate::auth::Principal;
use crate::config::{ConfigError, Settings};
use crate::http::problem::{ApiError, FieldError};
use crate::http::{ApiHandler, RequestContext, body_bytes, cursor, json_response};
use crate::ratelimit::{RateLimitPolicy, RateLimiter, ReadLimiter};
use crate::routes::{self, Route};
use crate::time::rfc3339;
use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// v1's answer when a task has no outputs yet.
pub const NO_RESULTS: &str = "No results available";
/// `limit` of the recent list: v1's default and most.
pub const RECENT_DEFAULT: usize = 5;
pub const RECENT_MAX: usize = 25;
/// Ledger entries a recent-list page reads at most per task it asks for.
pub const LEDGER_ENTRIES_PER_PAGE: usize = 4;
/// Transcript bounds: the item stays far below DynamoDB's 400 KB (the body limit is 256 KiB).
pub const MAX_MESSAGES: usize = 500;
pub const MAX_CONTENT_CHARS: usize = 32_000;
pub const MAX_LABEL_CHARS: usize = 64;
/// The run item that holds a task's transcript.
const TRANSCRIPT_ITEM: &str = "transcript";

/// One of the caller's recent tasks (v1's `RecentTaskActivity`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentActivity {
    pub task_id: TaskId,
    /// The winning (or latest) answer's start, else the prompt's.
    pub summary: String,
    pub agent: Option<String>,
    pub status: String,
    pub confidence: Option<f64>,
    /// RFC 3339: when the task last changed.
    pub timestamp: String,
}

/// One agent's output (v1's `TaskResult`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryResult {
    pub task_id: TaskId,
    pub agent: String,
    /// `{text, metadata}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub content: Value,
    pub confidence: f64,
    pub timestamp: String,
}

/// One transcript message (v1's `TranscriptMessage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptMessage {
    /// Not blank.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"\S")
    )]
    pub role: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 32000))]
    pub content: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub timestamp: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub agent: Option<String>,
}

/// `PUT …/transcript`'s body (v1's `TranscriptUpdate`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptUpdate {
    #[cfg_attr(feature = "openapi", schema(max_items = 500))]
    pub messages: Vec<TranscriptMessage>,
}

/// A task as the recent list shows it.
pub fn recent_activity(task: &Task) -> RecentActivity {
    let output = task.result.as_ref().and_then(document::winning_output);
    let summary = output
        .and_then(|o| document::headline(&o.content))
        .or_else(|| document::headline(&crate::redact::redact_pii(&task.prompt)))
        .unwrap_or_else(|| format!("Task {}", task.task_id));
    RecentActivity {
        task_id: task.task_id,
        summary,
        agent: output.map(|o| o.agent.clone()),
        status: task.status.as_str().to_string(),
        confidence: output.map(|o| o.confidence),
        timestamp: rfc3339(task.updated_at),
    }
}

/// A task's outputs in v1's shape; `None` when it has none yet.
pub fn results(task: &Task) -> Option<Vec<HistoryResult>> {
    let outputs = task.result.as_ref().map(|r| &r.outputs)?;
    if outputs.is_empty() {
        return None;
    }
    let at = rfc3339(task.finished_at.unwrap_or(task.updated_at));
    Some(
        outputs
            .iter()
            .map(|o| HistoryResult {
                task_id: task.task_id,
                agent: o.agent.clone(),
                content: json!({"text": o.content, "metadata": {"status": o.status}}),
                confidence: o.confidence,
                timestamp: at.clone(),
            })
            .collect(),
    )
}

/// Checks a transcript update; every problem is named by its path (`messages.3.content`).
pub fn validate_transcript(body: &[u8]) -> Result<Vec<TranscriptMessage>, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let invalid = |field: String, message: &str| FieldError::new(&field, message);
    let Some(messages) = value.as_object().and_then(|o| o.get("messages")) else {
        let problem = match value.is_object() {
            true => invalid("messages".into(), crate::http::problem::REQUIRED),
            false => invalid("body".into(), "must be a JSON object"),
        };
        return Err(ApiError::Validation(vec![problem]));
    };
    let Some(list) = messages.as_array() else {
        return Err(ApiError::Validation(vec![invalid(
            "messages".into(),
            "must be a list",
        )]));
    };
    if list.len() > MAX_MESSAGES {
        let message = format!("must hold at most {MAX_MESSAGES} messages");
        return Err(ApiError::Validation(vec![invalid(
            "messages".into(),
            &message,
        )]));
    }
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let field = |name: &str| format!("messages.{i}.{name}");
        let Some(m) = m.as_object() else {
            errors.push(invalid(format!("messages.{i}"), "must be an object"));
            continue;
        };
        let text = |name: &str, required: bool, max: usize, errors: &mut Vec<FieldError>| match m
            .get(name)
        {
            None | Some(Value::Null) if required => {
                errors.push(invalid(field(name), crate::http::problem::REQUIRED));
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > max => {
                errors.push(invalid(
                    field(name),
                    &format!("must be at most {max} characters"),
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(invalid(field(name), "must be a string"));
                None
            }
        };
        let role = text("role", true, MAX_LABEL_CHARS, &mut errors);
        if role.as_deref().is_some_and(|r| r.trim().is_empty()) {
            errors.push(invalid(field("role"), "must not be empty"));
        }
        let content = text("content", true, MAX_CONTENT_CHARS, &mut errors);
        let timestamp = text("timestamp", false, MAX_LABEL_CHARS, &mut errors);
        let agent = text("agent", false, MAX_LABEL_CHARS, &mut errors);
        if let (Some(role), Some(content)) = (role, content) {
            out.push(TranscriptMessage {
                role,
                content,
                timestamp,
                agent,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(errors))
    }
}

impl RecentApi {
    pub fn from_settings(sdk: &SdkConfig, settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            reads: ReadLimiter::from_settings(settings)?,
            ledger: SubmissionLedger::from_settings(sdk, settings)?,
            store: TaskStore::new(sdk, TaskTables::from_settings(settings)?),
        })
    }

    /// Up to `limit` of the caller's tasks after `after`, newest first, and the cursor of
    /// the next page when more may follow. Ids that name no task (a submission refused
    /// after it was counted, an expired task) are passed over, reading on until the page
    /// is full, the ledger ends, or [`LEDGER_ENTRIES_PER_PAGE`] per task asked for were
    /// read: a ledger full of refused submissions gives short pages with a cursor, never
    /// an unbounded read.
    async fn page(
        &self,
        subject: &str,
        limit: usize,
        mut after: Option<LedgerCursor>,
    ) -> Result<(Vec<Task>, Option<LedgerCursor>), ApiError> {
        let mut tasks: Vec<Task> = Vec::new();
        let mut examined = 0;
        loop {
            let (listed, more) = self
                .ledger
                .recent(subject, limit - tasks.len(), after)
                .await?;
            // Once each: a batch read refuses a key twice (a replay lists its task again).
            let mut ids: Vec<TaskId> = Vec::new();
            for (_, id) in &listed {
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
            let found = self.store.get_many(&ids).await?;
            for (page, id) in &listed {
                if tasks.iter().any(|t| t.task_id == *id) {
                    continue;
                }
                // A replay lists its task again in a later window: the task stays where it
                // was created (its window began before the task's `created_at`).
                let window_began = ledger::window_start_millis(*page);
                if let Some(task) = found.get(id).filter(|t| t.submitted_by == subject)
                    && window_began <= task.created_at
                {
                    tasks.push(task.clone());
                }
            }
            after = listed.last().copied().or(after);
            examined += listed.len();
            if !more {
                return Ok((tasks, None));
            }
            if tasks.len() == limit || examined >= limit * LEDGER_ENTRIES_PER_PAGE {
                return Ok((tasks, after));
            }
        }
    }
}

impl ResultsApi {
    pub fn from_settings(sdk: &SdkConfig, settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            reads: ReadLimiter::from_settings(settings)?,
            store: TaskStore::new(sdk, TaskTables::from_settings(settings)?),
        })
    }
}

impl TranscriptApi {
    pub fn from_settings(sdk: &SdkConfig, settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            reads: ReadLimiter::from_settings(settings)?,
            limiter: RateLimiter::from_settings(sdk, settings)?,
            rate_limit: RateLimitPolicy::transcript_write(settings)?,
            store: TaskStore::new(sdk, TaskTables::from_settings(settings)?),
            runs: RunStore::new(sdk, RunTables::from_settings(settings)?),
        })
    }
}

/// The caller's own task, or `404` (another's looks unknown).
async fn own_task(store: &TaskStore, principal: &Principal, id: TaskId) -> Result<Task, ApiError> {
    store
        .get_readable(id, principal)
        .await?
        .filter(|t| t.submitted_by == principal.subject)
        .ok_or(ApiError::NotFound(TASK_NOT_FOUND))
}

/// `GET /api/v1/history/recent`.
pub struct RecentApi {
    pub reads: ReadLimiter,
    pub ledger: SubmissionLedger,
    pub store: TaskStore,
}

impl ApiHandler for RecentApi {
    fn route(&self) -> &'static Route {
        &routes::HISTORY_RECENT
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let params = request.query_string_parameters();
        let limit = cursor::limit(Some(&params), RECENT_DEFAULT, RECENT_MAX)?;
        // The cursor is the ledger page and id of the last listed task.
        let after = match params.first("cursor") {
            Some(raw) => {
                let (page, id): (i64, String) = cursor::decode(raw)?;
                Some((page, TaskId::parse(&id).ok_or_else(cursor::not_ours)?))
            }
            None => None,
        };
        let (tasks, next) = self.page(&principal.subject, limit, after).await?;
        let body: Vec<RecentActivity> = tasks.iter().map(recent_activity).collect();
        let mut response = json_response(StatusCode::OK, &body)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        if let Some(next) = next {
            let token = cursor::encode(&(next.0, next.1.to_string()));
            cursor::link_next(
                response.headers_mut(),
                "/api/v1/history/recent",
                &params,
                &token,
            );
        }
        Ok(response)
    }
}

/// `GET /api/v1/history/{task_id}`.
pub struct ResultsApi {
    pub reads: ReadLimiter,
    pub store: TaskStore,
}

impl ApiHandler for ResultsApi {
    fn route(&self) -> &'static Route {
        &routes::HISTORY_RESULTS
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let task = own_task(&self.store, principal, task_id_param(&request)?).await?;
        let results = results(&task).ok_or(ApiError::NotFound(NO_RESULTS))?;
        let mut response = json_response(StatusCode::OK, &results)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }
}

/// `GET|PUT /api/v1/history/{task_id}/transcript`.
pub struct TranscriptApi {
    pub reads: ReadLimiter,
    pub limiter: RateLimiter,
    /// `RATE_LIMIT__TRANSCRIPT_WRITE__*`: 30 per 60 s.
    pub rate_limit: RateLimitPolicy,
    pub store: TaskStore,
    pub runs: RunStore,
}

impl ApiHandler for TranscriptApi {
    fn route(&self) -> &'static Route {
        &routes::HISTORY_TRANSCRIPT
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        let task_id = task_id_param(&request)?;
        let writing = request.method() == Method::PUT;
        let rate = if writing {
            let now = self.limiter.now_millis();
            self.limiter
                .admit(&self.rate_limit, &principal.subject, now)
                .await?
        } else {
            self.reads.admit(&principal.subject)?
        };
        // The body is checked before anything is read: a bad one writes and reads nothing.
        let update = writing
            .then(|| validate_transcript(body_bytes(&request)))
            .transpose()?;
        let task = own_task(&self.store, principal, task_id).await?;
        let run_id = run_id_for(task.task_id);
        let messages = match update {
            Some(messages) => {
                let value = json!({ "messages": messages });
                self.runs.put_item(&run_id, TRANSCRIPT_ITEM, &value).await?;
                messages
            }
            None => match self.runs.item(&run_id, TRANSCRIPT_ITEM).await? {
                Some(mut stored) => serde_json::from_value(stored["messages"].take())
                    .map_err(|e| ApiError::Internal(format!("bad transcript item: {e}")))?,
                None => Vec::new(),
            },
        };
        let mut response = json_response(StatusCode::OK, &messages)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }
}
