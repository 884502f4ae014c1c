//! `GET /api/v1/reports/{task_id}/dossier.json` and `dossier.md`: everything
//! known about a task, as a download: the task, its run, negotiation snapshots,
//! guardrail decisions, events, and its review ticket with notes and history.

use super::store::ReviewStore;
use super::{Note, TicketStatus};
use crate::http::problem::ApiError;
use crate::http::{ApiHandler, Audit, Pipeline, RequestContext};
use crate::routes::{self, Route};
use crate::tasks::TicketId;
use crate::tasks::{
    MAX_EVENTS_IN_VIEW, Read, RunStore, TASK_NOT_FOUND, TaskEvent, TaskId, TaskStore, TaskView,
    event_names, payloads_of, run_id_for, run_with_ending, task_id_param, task_view,
};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DossierFormat {
    Json,
    Markdown,
}

pub struct DossierApi {
    pub format: DossierFormat,
    pub reads: crate::ratelimit::ReadLimiter,
    pub tasks: TaskStore,
    pub runs: RunStore,
    pub tickets: ReviewStore,
}

/// The `main` of both dossier routes: build once, then serve with the audit log.
pub async fn run(function: &'static str, format: DossierFormat) -> Result<(), lambda_http::Error> {
    use crate::tasks::{RunTables, TaskTables};
    let metrics = crate::telemetry::init(function);
    let settings = crate::config::Settings::from_env();
    let sdk = crate::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = DossierApi {
        format,
        reads: crate::ratelimit::ReadLimiter::from_settings(&settings)?,
        tasks: TaskStore::new(&sdk, TaskTables::from_settings(&settings)?),
        runs: RunStore::new(&sdk, RunTables::from_settings(&settings)?),
        tickets: ReviewStore::from_settings(&sdk, &settings)?,
    };
    crate::http::serve(metrics, pipeline, api).await
}

/// Everything known about a task, as a download (`dossier.json`; `dossier.md` renders it).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dossier {
    /// The task document, its prompt and metadata redacted.
    pub task: TaskView,
    /// The run, with how it ended (`status`, `outcome`); `null` before a worker claimed the task.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub run: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub negotiation_snapshots: Vec<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub guardrail_decisions: Vec<Value>,
    pub events: Vec<TaskEvent>,
    /// The review ticket the run raised, if any.
    pub review: Option<DossierReview>,
}

/// A dossier's review ticket, with its notes and history.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DossierReview {
    pub ticket_id: TicketId,
    pub status: TicketStatus,
    pub assigned_to: Option<String>,
    pub summary: Option<String>,
    pub sources: Vec<String>,
    pub notes: Vec<Note>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub history: Vec<Value>,
}

impl DossierApi {
    /// The dossier of a task, as JSON.
    pub async fn dossier(&self, task_id: TaskId) -> Result<Dossier, ApiError> {
        let task = self
            .tasks
            .get(task_id)
            .await?
            .ok_or(ApiError::NotFound(TASK_NOT_FOUND))?;
        let events = self
            .runs
            .events_after(task_id, 0, MAX_EVENTS_IN_VIEW, Read::Recent)
            .await?;
        let run_id = run_id_for(task_id);
        let run = self
            .runs
            .item(&run_id, "run")
            .await?
            .map(|run| run_with_ending(run, &events));
        let snapshots = payloads_of(&events, event_names::NEGOTIATION_ROUND);
        let decisions = payloads_of(&events, event_names::GUARDRAIL_TRIGGERED);
        let ticket_id = task
            .result
            .as_ref()
            .and_then(|r| r.review.as_ref())
            .and_then(|r| r.ticket_id.as_ref());
        let review = match ticket_id {
            Some(id) => match self.tickets.get(id.as_str()).await? {
                Some(ticket) => Some(DossierReview {
                    notes: self.tickets.notes(id.as_str()).await?,
                    history: self.tickets.history(id.as_str()).await?,
                    ticket_id: ticket.ticket_id,
                    status: ticket.status,
                    assigned_to: ticket.assigned_to,
                    summary: ticket.summary,
                    sources: ticket.sources,
                }),
                None => None,
            },
            None => None,
        };
        // A dossier is a download that travels: personal data in the prompt and metadata is redacted.
        let mut task_doc = task_view(&task, &[]);
        task_doc.redact();
        Ok(Dossier {
            task: task_doc,
            run,
            negotiation_snapshots: snapshots.into_iter().cloned().collect(),
            guardrail_decisions: decisions.into_iter().cloned().collect(),
            events,
            review,
        })
    }
}

/// Untrusted text made inert for Markdown: HTML becomes entities (no `<img onerror>`,
/// no `<script>`), the punctuation of links, images, code, `*` emphasis, headings and
/// tables is backslash-escaped (no links, so no `javascript:` URLs), control characters
/// (`\r` among them) are dropped and line breaks become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A field of a dossier part, escaped.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape_markdown(s),
        Value::Null => "–".to_string(),
        other => escape_markdown(&other.to_string()),
    }
}

/// The Markdown rendering of a dossier. Every value from a request, a token or a model
/// goes through [`escape_markdown`]; only the headings and layout are Markdown.
pub fn markdown(d: &Value) -> String {
    let task = &d["task"];
    // The prompt keeps its lines, each quoted and escaped.
    let prompt = task["prompt"]
        .as_str()
        .unwrap_or("")
        .lines()
        .map(escape_markdown)
        .collect::<Vec<_>>()
        .join("\n> ");
    let mut md = format!(
        "# Dossier: task {}\n\n- Status: **{}**\n- Submitted by: {}\n- Created: {}\n\
         - Finished: {}\n\n## Prompt\n\n> {}\n",
        text(&task["task_id"]),
        text(&task["status"]),
        text(&task["meta"]["submitted_by"]),
        text(&task["created_at"]),
        text(&task["finished_at"]),
        prompt,
    );
    md.push_str("\n## Outputs\n\n");
    for o in task["outputs"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- **{}**: {}\n",
            text(&o["agent"]),
            text(&o["content"])
        ));
    }
    md.push_str("\n## Guardrail decisions\n\n");
    for g in d["guardrail_decisions"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- {} **{}** at {}: {}\n",
            text(&g["policy_id"]),
            text(&g["decision"]),
            text(&g["stage"]),
            text(&g["reason"])
        ));
    }
    md.push_str("\n## Negotiation\n\n");
    for s in d["negotiation_snapshots"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- Round {}: leader {}, {} ({} supporters, {} dissenters)\n",
            text(&s["round"]),
            text(&s["leader"]),
            text(&s["decision"]),
            s["supporters"].as_array().map_or(0, Vec::len),
            s["dissenters"].as_array().map_or(0, Vec::len)
        ));
    }
    if let Some(review) = d["review"].as_object() {
        md.push_str(&format!(
            "\n## Review\n\nTicket {}: **{}**{}\n\n",
            text(&review["ticket_id"]),
            text(&review["status"]),
            review["summary"]
                .as_str()
                .map(|s| format!(" — {}", escape_markdown(s)))
                .unwrap_or_default()
        ));
        for h in review["history"].as_array().into_iter().flatten() {
            md.push_str(&format!("- {} by {}\n", text(&h["action"]), text(&h["by"])));
        }
        for n in review["notes"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "- Note by {} ({}): {}\n",
                text(&n["author"]),
                text(&n["created_at"]),
                text(&n["content"])
            ));
        }
    }
    md.push_str("\n## Events\n\n| # | event | at |\n|---|---|---|\n");
    for e in d["events"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            text(&e["sequence"]),
            text(&e["event"]),
            text(&e["timestamp"])
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
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let task_id = task_id_param(&request)?;
        let dossier = self.dossier(task_id).await?;
        let (body, content_type, extension) = match self.format {
            DossierFormat::Json => (
                serde_json::to_string_pretty(&dossier)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                "application/json",
                "json",
            ),
            DossierFormat::Markdown => (
                markdown(&serde_json::to_value(&dossier).unwrap_or_default()),
                "text/markdown; charset=utf-8",
                "md",
            ),
        };
        let mut response = Response::new(Body::Text(body));
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        if let Some(rate) = rate {
            rate.apply(h);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_links_and_carriage_returns_do_not_survive_escaping() {
        let hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) a\rb **bold**";
        let escaped = escape_markdown(hostile);
        assert!(
            !escaped.contains('<') && !escaped.contains('\r'),
            "{escaped}"
        );
        assert!(
            !escaped.contains("](") && escaped.contains("\\[click\\]\\(javascript:"),
            "{escaped}"
        );
        assert!(
            escaped.contains("&lt;img") && escaped.contains("\\*\\*bold\\*\\*"),
            "{escaped}"
        );
    }
}
