//! `GET /api/v1/orchestrator/runs/{run_id}`: the v1 run detail, plus the run's
//! negotiation snapshots and guardrail decisions, each paged.

use super::events::{TaskEvent, names, payloads_of};
use super::model::TaskId;
use super::runs::Read;
use super::runs::RunStore;
use super::status::MAX_EVENTS_IN_VIEW;
use super::store::TaskStore;
use crate::access;
use crate::http::problem::ApiError;
use crate::http::{ApiHandler, RequestContext, json_response, path_param};
use crate::routes::{self, Route};
use crate::time::rfc3339;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Value, json};

pub const RUN_NOT_FOUND: &str = "Run not found";
pub const DEFAULT_PAGE: usize = 50;

/// `GET /api/v1/orchestrator/runs/{run_id}`: the v1 run detail.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    pub run_id: String,
    pub task_id: TaskId,
    pub status: RunStatus,
    pub state: RunState,
    /// RFC 3339 times.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The run's first events (at most 500); the task's event stream has them all.
    pub events: Vec<RunEvent>,
    pub telemetry: RunTelemetry,
    pub negotiation_snapshots: RunPage,
    pub guardrail_decisions: RunPage,
}

/// An event of the run detail: the event as streamed, with v1's keys beside it
/// (`event_type`, `agent`, `created_at`, as the v1 run detail named them).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEvent {
    #[serde(flatten)]
    pub event: TaskEvent,
    /// v1's name for `event`.
    pub event_type: String,
    /// The agent the event is about, if any.
    pub agent: Option<String>,
    /// v1's name for `timestamp`.
    pub created_at: String,
}

impl From<TaskEvent> for RunEvent {
    fn from(event: TaskEvent) -> Self {
        let event = event.for_clients();
        Self {
            event_type: event.event.clone(),
            agent: event.agent().map(str::to_string),
            created_at: event.timestamp.clone(),
            event,
        }
    }
}

/// How a run stands: `running` until it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    AwaitingReview,
}

/// The run's backend and how it ended.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunState {
    /// The executor that ran it (`llm` or `fixture`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub backend: Value,
    /// `null` while running; `{reason}` when failed; `{winner, summary}` otherwise.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub outcome: Value,
}

/// The v1 `telemetry` block, counted from the event log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunTelemetry {
    pub agents_started: usize,
    pub agents_completed: usize,
    pub agents_failed: usize,
    pub guardrail_events: usize,
    pub tool_invocations: usize,
    pub negotiation_events: usize,
    pub last_event_at: Option<String>,
    pub total_events: usize,
}

/// One page of a run's negotiation snapshots or guardrail decisions.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPage {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<Value>,
    /// Pass as `snapshots_cursor` / `decisions_cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// The v1 `telemetry` block, counted from the event log.
pub fn telemetry(events: &[TaskEvent]) -> RunTelemetry {
    let count = |name: &str| events.iter().filter(|e| e.event == name).count();
    RunTelemetry {
        agents_started: count(names::AGENT_STARTED),
        agents_completed: count(names::AGENT_COMPLETED),
        agents_failed: count(names::AGENT_FAILED),
        guardrail_events: count(names::GUARDRAIL_TRIGGERED),
        tool_invocations: count(names::TOOL_INVOKED),
        negotiation_events: count(names::NEGOTIATION_ROUND),
        last_event_at: events.last().map(|e| e.timestamp.clone()),
        total_events: events.len(),
    }
}

/// How a run stands, read from its events: `running` until its last terminal event
/// (`task_completed`, `review_requested`, `task_failed`; a later review decision is the
/// task's, not the run's), then that event's status, outcome and time.
pub fn run_ending(events: &[TaskEvent]) -> (RunStatus, Value, Option<String>) {
    let last = events.iter().rev().find(|e| {
        [
            names::TASK_COMPLETED,
            names::TASK_FAILED,
            names::REVIEW_REQUESTED,
        ]
        .contains(&e.event.as_str())
    });
    let Some(e) = last else {
        return (RunStatus::Running, Value::Null, None);
    };
    let (status, outcome) = match e.event.as_str() {
        names::TASK_FAILED => (RunStatus::Failed, json!({"reason": e.payload["reason"]})),
        names::TASK_COMPLETED => (
            RunStatus::Completed,
            json!({"winner": e.payload["winner"], "summary": e.payload["summary"]}),
        ),
        // Sent to review: the winner's answer is its agent_completed content.
        _ => {
            let winner = &e.payload["winner"];
            let summary = events
                .iter()
                .rev()
                .find(|c| c.event == names::AGENT_COMPLETED && c.agent() == winner.as_str())
                .map_or(json!(""), |c| c.payload["content"].clone());
            (
                RunStatus::AwaitingReview,
                json!({"winner": winner, "summary": summary}),
            )
        }
    };
    (status, outcome, Some(e.timestamp.clone()))
}

/// The run item as readers see it: with how the run ended, from its events.
pub fn run_with_ending(mut run: Value, events: &[TaskEvent]) -> Value {
    let (status, outcome, _) = run_ending(events);
    run["status"] = json!(status);
    run["outcome"] = outcome;
    run
}

/// A page cursor names the last item returned (`snapshot#0002`: the second snapshot);
/// it must belong to the section. `0` when absent.
fn cursor(request: &Request, name: &str, prefix: &str) -> Result<usize, ApiError> {
    let params = request.query_string_parameters_ref();
    let Some(raw) = params.and_then(|p| p.first(name)) else {
        return Ok(0);
    };
    raw.strip_prefix(prefix)
        .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{name} is not a cursor this API gave out")))
}

/// One page of a section: the items after the `after`-th, and the cursor to go on.
fn page(items: &[&Value], after: usize, limit: usize, prefix: &str) -> RunPage {
    let shown: Vec<Value> = items
        .iter()
        .skip(after)
        .take(limit)
        .map(|v| (*v).clone())
        .collect();
    let end = after + shown.len();
    let next_cursor = (end < items.len()).then(|| format!("{prefix}{end:04}"));
    RunPage {
        items: shown,
        next_cursor,
    }
}

fn limit(request: &Request) -> Result<usize, ApiError> {
    crate::http::cursor::limit(request.query_string_parameters_ref(), DEFAULT_PAGE, 100)
}

pub struct GetRunApi {
    pub reads: crate::ratelimit::ReadLimiter,
    pub tasks: TaskStore,
    pub runs: RunStore,
}

impl ApiHandler for GetRunApi {
    fn route(&self) -> &'static Route {
        &routes::GET_RUN
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let (principal, rate) = access::admitted_reader(cx, &self.reads)?;
        let run_id = path_param(&request, "run_id")
            .filter(|raw| TaskId::parse(raw).is_some())
            .ok_or_else(|| ApiError::BadRequest("run_id must be a UUID".into()))?;
        let limit = limit(&request)?;
        let snapshots_after = cursor(&request, "snapshots_cursor", "snapshot#")?;
        let decisions_after = cursor(&request, "decisions_cursor", "decision#")?;

        let Some(run) = self.runs.item(&run_id, "run").await? else {
            return Err(ApiError::NotFound(RUN_NOT_FOUND));
        };
        let task_id = run["task_id"]
            .as_str()
            .and_then(TaskId::parse)
            .ok_or_else(|| ApiError::Internal("run without task".into()))?;
        // A run is visible exactly when its task is.
        if self.tasks.get_readable(task_id, principal).await?.is_none() {
            return Err(ApiError::NotFound(RUN_NOT_FOUND));
        }
        let events = self
            .runs
            .events_after(task_id, 0, MAX_EVENTS_IN_VIEW, Read::Recent)
            .await?;
        // Snapshots and decisions are kept once, in the event log.
        let snapshots = payloads_of(&events, names::NEGOTIATION_ROUND);
        let decisions = payloads_of(&events, names::GUARDRAIL_TRIGGERED);
        let at = |key: &str| run[key].as_i64().map(rfc3339);
        let (status, outcome, ended_at) = run_ending(&events);
        let mut response = json_response(
            StatusCode::OK,
            &RunView {
                task_id,
                status,
                state: RunState {
                    backend: run["backend"].clone(),
                    outcome,
                },
                created_at: at("started_at"),
                updated_at: ended_at.or_else(|| at("started_at")),
                telemetry: telemetry(&events),
                negotiation_snapshots: page(&snapshots, snapshots_after, limit, "snapshot#"),
                guardrail_decisions: page(&decisions, decisions_after, limit, "decision#"),
                events: events.into_iter().map(RunEvent::from).collect(),
                run_id,
            },
        )?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }
}
