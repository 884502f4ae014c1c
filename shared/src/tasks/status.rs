//! `GET /api/v1/tasks/{task_id}`: a task's real-time status in the v1 shape.

use super::document::{self, DossierRef, GuardrailsView, PlanView, ReportView};
use super::events::TaskEvent;
use super::events::V1Event;
use super::model::{Task, TaskId, TaskStatus};
use super::result::{AgentOutput, NegotiationSummary, TicketId};
use super::runs::Read;
use super::runs::{RunStore, run_id_for};
use super::store::TaskStore;
use crate::access;
use crate::auth::Principal;
use crate::http::problem::ApiError;
use crate::http::{ApiHandler, RequestContext, json_response, path_param};
use crate::routes::{self, Route};
use crate::time::rfc3339;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};

pub const TASK_NOT_FOUND: &str = "Task not found";

/// Events listed in a task document; the event stream has them all.
pub const MAX_EVENTS_IN_VIEW: usize = 500;

/// The v1 task document (`GET /api/v1/tasks/{task_id}`; the dossier's `task`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    pub task_id: TaskId,
    pub status: TaskStatus,
    /// Set once a worker has claimed the task.
    pub run_id: Option<String>,
    /// Redacted unless the caller submitted the task.
    pub prompt: String,
    /// Redacted unless the caller submitted the task.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    pub continuation_task_id: Option<TaskId>,
    pub outputs: Vec<AgentOutput>,
    /// v1's plan object; `null` until the run planned.
    pub plan: Option<PlanView>,
    pub negotiation: Option<NegotiationSummary>,
    pub guardrails: GuardrailsView,
    pub meta: TaskMeta,
    /// The dossier's summary and where the whole one is, once the run ended.
    pub dossier: Option<DossierRef>,
    /// v1's report object (with the Markdown report), once the run ended.
    pub report: Option<ReportView>,
    pub metrics: TaskMetrics,
    pub last_error: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The run's first events (at most 500); the event stream has them all.
    pub events: Vec<V1Event>,
}

/// Who ran a task and why it went to review.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskMeta {
    pub executor: Option<String>,
    pub attempts: u32,
    pub submitted_by: String,
    /// Why the run was sent to review.
    pub review: Option<Vec<String>>,
    pub review_ticket_id: Option<TicketId>,
}

/// A task's run in numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskMetrics {
    pub agents_completed: u32,
    pub agents_failed: u32,
    pub guardrail_events: u32,
    pub negotiation_rounds: u32,
}

/// The v1 task document, filled from the task and its run's events.
pub fn task_view(task: &Task, events: &[TaskEvent]) -> TaskView {
    let result = task.result.as_ref();
    let review = result.and_then(|r| r.review.as_ref());
    let run_id = result
        .and_then(|r| r.run_id.clone())
        .or_else(|| (task.status != TaskStatus::Queued).then(|| run_id_for(task.task_id)));
    TaskView {
        task_id: task.task_id,
        status: task.status,
        run_id,
        prompt: task.prompt.clone(),
        metadata: task.metadata.clone(),
        continuation_task_id: task.continuation_task_id,
        outputs: result.map(|r| r.outputs.clone()).unwrap_or_default(),
        plan: result.and_then(|r| document::plan(r, task.status)),
        negotiation: result.and_then(|r| r.negotiation.clone()),
        guardrails: document::guardrails(result),
        meta: TaskMeta {
            executor: result.map(|r| r.executor.clone()),
            attempts: task.attempts,
            submitted_by: task.submitted_by.clone(),
            review: review.map(|r| r.reasons.clone()),
            review_ticket_id: review.and_then(|r| r.ticket_id.clone()),
        },
        dossier: result.map(|r| document::dossier(r, task.task_id)),
        report: result.map(|r| document::report(r, task.task_id, task.status)),
        metrics: TaskMetrics {
            agents_completed: result.map_or(0, |r| r.agents_completed),
            agents_failed: result.map_or(0, |r| r.agents_failed),
            guardrail_events: result.map_or(0, |r| r.guardrail_events),
            negotiation_rounds: result.map_or(0, |r| r.negotiation_rounds),
        },
        last_error: task.last_error.clone(),
        created_at: rfc3339(task.created_at),
        updated_at: rfc3339(task.updated_at),
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.map(rfc3339),
        events: events.iter().map(TaskEvent::v1_view).collect(),
    }
}

/// The task document as `principal` may see it: the submitter reads their own prompt
/// and metadata; everyone else (observers, reviewers) the redacted form, as on every
/// other read surface (ticket, dossier, run events).
pub fn task_view_for(principal: &Principal, task: &Task, events: &[TaskEvent]) -> TaskView {
    let mut view = task_view(task, events);
    if !access::sees_unredacted(principal, &task.submitted_by) {
        view.redact();
    }
    view
}

impl TaskView {
    /// Replaces the prompt and metadata with their redacted forms.
    pub fn redact(&mut self) {
        use crate::redact::{redact_pii, redact_pii_json};
        self.prompt = redact_pii(&self.prompt);
        if let Value::Object(map) =
            redact_pii_json(&Value::Object(std::mem::take(&mut self.metadata)))
        {
            self.metadata = map;
        }
    }
}

/// The `task_id` path parameter, which must be a task id.
pub fn task_id_param(request: &Request) -> Result<TaskId, ApiError> {
    path_param(request, "task_id")
        .and_then(|raw| TaskId::parse(&raw))
        .ok_or_else(|| ApiError::BadRequest("task_id must be a UUID".into()))
}

pub struct GetTaskApi {
    pub reads: crate::ratelimit::ReadLimiter,
    pub store: TaskStore,
    pub runs: RunStore,
}

impl ApiHandler for GetTaskApi {
    fn route(&self) -> &'static Route {
        &routes::GET_TASK
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let (principal, rate) = access::admitted_reader(cx, &self.reads)?;
        let task_id = task_id_param(&request)?;
        // Both reads at once (the invocation is billed by the millisecond); the events of a
        // task the caller may not read are dropped unread.
        let (task, events) = tokio::join!(
            self.store.get_readable(task_id, principal),
            self.runs
                .events_after(task_id, 0, MAX_EVENTS_IN_VIEW, Read::Recent)
        );
        match task? {
            Some(task) => {
                let events = events?;
                let mut response =
                    json_response(StatusCode::OK, &task_view_for(principal, &task, &events))?;
                if let Some(rate) = rate {
                    rate.apply(response.headers_mut());
                }
                Ok(response)
            }
            _ => Err(ApiError::NotFound(TASK_NOT_FOUND)),
        }
    }
}
