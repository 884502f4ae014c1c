//! `GET /api/v1/tasks/{task_id}`: a task's real-time status in the v1 shape.

use super::model::{Task, TaskId};
use super::store::TaskStore;
use crate::auth::{Authenticator, Principal, scopes};
use crate::http::problem::ApiError;
use crate::http::{ApiHandler, json_response, path_param};
use crate::routes::{self, Route};
use crate::time::rfc3339;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

pub const TASK_NOT_FOUND: &str = "Task not found";

/// The v1 task document. Fields the orchestrator fills later (`run_id`,
/// `plan`, `negotiation`, `guardrails`, `dossier`, `events`) are present and empty.
pub fn task_view(task: &Task) -> Value {
    let result = task.result.as_ref();
    json!({
        "task_id": task.task_id,
        "status": task.status.as_str(),
        "run_id": null,
        "prompt": task.prompt,
        "metadata": task.metadata,
        "continuation_task_id": task.continuation_task_id,
        "outputs": result.map(|r| r.outputs.clone()).unwrap_or_default(),
        "plan": null,
        "negotiation": null,
        "guardrails": null,
        "meta": {
            "executor": result.map(|r| r.executor.as_str()),
            "attempts": task.attempts,
        },
        "dossier": null,
        "report": result.map(|r| r.report.as_str()),
        "metrics": {
            "agents_completed": result.map_or(0, |r| r.agents_completed),
            "agents_failed": result.map_or(0, |r| r.agents_failed),
            "guardrail_events": 0,
            "negotiation_rounds": 0,
        },
        "last_error": task.last_error,
        "created_at": rfc3339(task.created_at),
        "updated_at": rfc3339(task.updated_at),
        "started_at": task.started_at.map(rfc3339),
        "finished_at": task.finished_at.map(rfc3339),
        "events": [],
    })
}

/// Readers (`tasks:read`) see every task; submitters see their own. A task the
/// caller may not see answers like an unknown one, so ids cannot be probed.
pub fn may_read(principal: &Principal, task: &Task) -> bool {
    principal.has_scope(scopes::TASKS_READ)
        || (principal.has_scope(scopes::TASKS_SUBMIT) && principal.subject == task.submitted_by)
}

pub struct GetTaskApi {
    pub auth: Authenticator,
    pub store: TaskStore,
}

impl ApiHandler for GetTaskApi {
    fn route(&self) -> &'static Route {
        &routes::GET_TASK
    }

    async fn handle(
        &self,
        request: Request,
        _request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let principal = self.auth.authenticate(request.headers())?;
        if !principal.has_scope(scopes::TASKS_READ) && !principal.has_scope(scopes::TASKS_SUBMIT) {
            return Err(ApiError::Forbidden);
        }
        let task_id = path_param(&request, "task_id")
            .and_then(|raw| TaskId::parse(&raw))
            .ok_or_else(|| ApiError::BadRequest("task_id must be a UUID".into()))?;
        match self.store.get(task_id).await? {
            Some(task) if may_read(&principal, &task) => {
                json_response(StatusCode::OK, &task_view(&task))
            }
            _ => Err(ApiError::NotFound(TASK_NOT_FOUND)),
        }
    }
}
