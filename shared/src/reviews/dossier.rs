//! `GET /api/v1/reports/{task_id}/dossier.json` and `dossier.md`: everything
//! known about a task, as a download: the task, its run, negotiation snapshots,
//! guardrail decisions, events, and its review ticket with notes and history.

use super::store::ReviewStore;
use crate::auth::{Authenticator, scopes};
use crate::http::ApiHandler;
use crate::http::problem::ApiError;
use crate::orchestrator::engine::run_id_for;
use crate::orchestrator::store::RunStore;
use crate::routes::{self, Route};
use crate::tasks::TaskId;
use crate::tasks::status::{MAX_EVENTS_IN_VIEW, TASK_NOT_FOUND, task_id_param, task_view};
use crate::tasks::store::TaskStore;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DossierFormat {
    Json,
    Markdown,
}

pub struct DossierApi {
    pub format: DossierFormat,
    pub auth: Authenticator,
    pub tasks: TaskStore,
    pub runs: RunStore,
    pub tickets: ReviewStore,
}

/// The `main` of both dossier routes: build once, then serve with the audit log.
pub async fn run(function: &'static str, format: DossierFormat) -> Result<(), lambda_http::Error> {
    use crate::orchestrator::store::RunTables;
    use crate::tasks::store::TaskTables;
    let metrics = crate::telemetry::init(function);
    let settings = crate::config::Settings::from_env();
    let sdk = crate::aws::load().await;
    let auth = crate::auth::load(&sdk, &settings).await?;
    let api = DossierApi {
        format,
        auth: auth.clone(),
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
    };
    let auditor = crate::audit::Auditor {
        log: crate::audit::AuditLog::from_settings(&sdk, &settings)?,
        auth,
    };
    crate::http::serve_audited(metrics, api, Some(auditor)).await
}

impl DossierApi {
    /// The dossier of a task, as JSON.
    pub async fn dossier(&self, task_id: TaskId) -> Result<Value, ApiError> {
        let task = self
            .tasks
            .get(task_id)
            .await?
            .ok_or(ApiError::NotFound(TASK_NOT_FOUND))?;
        let events = self
            .runs
            .events_after(task_id, 0, MAX_EVENTS_IN_VIEW)
            .await?;
        let run_id = run_id_for(task_id);
        let run = self.runs.item(&run_id, "run").await?;
        let snapshots = self
            .runs
            .items(&run_id, "snapshot#", None, 100)
            .await?
            .items;
        let decisions = self
            .runs
            .items(&run_id, "decision#", None, 100)
            .await?
            .items;
        let ticket_id = task
            .result
            .as_ref()
            .and_then(|r| r.review.as_ref())
            .and_then(|r| r["ticket_id"].as_str().map(String::from));
        let review = match ticket_id {
            Some(id) => match self.tickets.get(&id).await? {
                Some(ticket) => Some(json!({
                    "ticket_id": ticket.ticket_id, "status": ticket.status.as_str(), "assigned_to": ticket.assigned_to,
                    "summary": ticket.summary, "sources": ticket.sources,
                    "notes": self.tickets.notes(&id).await?, "history": self.tickets.history(&id).await?,
                })),
                None => None,
            },
            None => None,
        };
        // A dossier is a download that travels: personal data in the prompt is redacted.
        let mut task_doc = task_view(&task, &[]);
        task_doc["prompt"] = json!(crate::orchestrator::guardrails::redact_pii(&task.prompt));
        Ok(json!({
            "task": task_doc,
            "run": run,
            "negotiation_snapshots": snapshots,
            "guardrail_decisions": decisions,
            "events": events,
            "review": review,
        }))
    }
}

/// The Markdown rendering of a dossier.
pub fn markdown(d: &Value) -> String {
    let task = &d["task"];
    let mut md = format!(
        "# Dossier: task {}\n\n- Status: **{}**\n- Submitted by: {}\n- Created: {}\n- Finished: {}\n\n## Prompt\n\n> {}\n",
        task["task_id"].as_str().unwrap_or("?"),
        task["status"].as_str().unwrap_or("?"),
        task["meta"]["submitted_by"].as_str().unwrap_or("–"),
        task["created_at"].as_str().unwrap_or("–"),
        task["finished_at"].as_str().unwrap_or("–"),
        crate::orchestrator::guardrails::redact_pii(task["prompt"].as_str().unwrap_or(""))
            .replace('\n', "\n> "),
    );
    md.push_str("\n## Outputs\n\n");
    for o in task["outputs"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- **{}**: {}\n",
            o["agent"].as_str().unwrap_or("?"),
            o["content"].as_str().unwrap_or("")
        ));
    }
    md.push_str("\n## Guardrail decisions\n\n");
    for g in d["guardrail_decisions"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- `{}` **{}** at {}: {}\n",
            g["policy_id"].as_str().unwrap_or("?"),
            g["decision"].as_str().unwrap_or("?"),
            g["stage"].as_str().unwrap_or("?"),
            g["reason"].as_str().unwrap_or("")
        ));
    }
    md.push_str("\n## Negotiation\n\n");
    for s in d["negotiation_snapshots"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- Round {}: leader {}, {} ({} supporters, {} dissenters)\n",
            s["round"],
            s["leader"].as_str().unwrap_or("?"),
            s["decision"].as_str().unwrap_or("?"),
            s["supporters"].as_array().map_or(0, Vec::len),
            s["dissenters"].as_array().map_or(0, Vec::len)
        ));
    }
    if let Some(review) = d["review"].as_object() {
        md.push_str(&format!(
            "\n## Review\n\nTicket `{}`: **{}**{}\n\n",
            review["ticket_id"].as_str().unwrap_or("?"),
            review["status"].as_str().unwrap_or("?"),
            review["summary"]
                .as_str()
                .map(|s| format!(" — {s}"))
                .unwrap_or_default()
        ));
        for h in review["history"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "- {} by {}\n",
                h["action"].as_str().unwrap_or("?"),
                h["by"].as_str().unwrap_or("?")
            ));
        }
        for n in review["notes"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "- Note by {} ({}): {}\n",
                n["author"].as_str().unwrap_or("?"),
                n["created_at"].as_str().unwrap_or(""),
                n["content"].as_str().unwrap_or("")
            ));
        }
    }
    md.push_str("\n## Events\n\n| # | event | at |\n|---|---|---|\n");
    for e in d["events"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            e["sequence"],
            e["event"].as_str().unwrap_or("?"),
            e["timestamp"].as_str().unwrap_or("")
        ));
    }
    md
}

impl ApiHandler for DossierApi {
    fn route(&self) -> &'static Route {
        match self.format {
            DossierFormat::Json => &routes::DOSSIER_JSON,
            DossierFormat::Markdown => &routes::DOSSIER_MARKDOWN,
        }
    }

    async fn handle(
        &self,
        request: Request,
        _request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let principal = self.auth.authenticate(request.headers())?;
        principal.require(scopes::REPORTS_READ)?;
        let task_id = task_id_param(&request)?;
        let dossier = self.dossier(task_id).await?;
        let (body, content_type, extension) = match self.format {
            DossierFormat::Json => (
                serde_json::to_string_pretty(&dossier)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                "application/json",
                "json",
            ),
            DossierFormat::Markdown => (markdown(&dossier), "text/markdown; charset=utf-8", "md"),
        };
        let mut response = Response::new(Body::Text(body));
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"dossier-{task_id}.{extension}\""
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        Ok(response)
    }
}
