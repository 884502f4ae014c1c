//! The v1 review routes for one ticket: get, assign, unassign, notes, resolve.
//! Thin: parse, authorize, call [`Reviews`], answer the ticket in the v1 shape.
//! Reviewer actions are rate limited (`RATE_LIMIT__REVIEW_ACTION__*`).

use super::Note;
use super::decisions::{Outcome, Reviews, TICKET_NOT_FOUND};
use super::store::{MAX_NOTES_PER_TICKET, NoteRefused};
use super::{Ticket, TicketStatus};
use crate::auth::{Principal, scopes};
use crate::http::problem::{ApiError, FieldError};
use crate::http::{
    ApiHandler, Audit, Pipeline, RequestContext, body_bytes, json_response, path_param,
};
use crate::ratelimit::{RateLimitPolicy, RateLimiter};
use crate::routes::{self, Route};
use crate::tasks::{TaskId, TicketId};
use crate::time::rfc3339;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// Which route a [`TicketApi`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketAction {
    Get,
    Assign,
    Unassign,
    AddNote,
    Resolve,
}

impl TicketAction {
    pub fn route(&self) -> &'static Route {
        match self {
            TicketAction::Get => &routes::GET_REVIEW,
            TicketAction::Assign => &routes::ASSIGN_REVIEW,
            TicketAction::Unassign => &routes::UNASSIGN_REVIEW,
            TicketAction::AddNote => &routes::ADD_REVIEW_NOTE,
            TicketAction::Resolve => &routes::RESOLVE_REVIEW,
        }
    }
}

pub struct TicketApi {
    pub action: TicketAction,
    pub reviews: Reviews,
    pub limiter: RateLimiter,
    /// Reads (`GET` a ticket): in-process, approximate (see [`crate::ratelimit::ReadLimiter`]).
    pub reads: crate::ratelimit::ReadLimiter,
    /// `RATE_LIMIT__REVIEW_ACTION__*`: 90 per 60 s (the v1 defaults).
    pub rate_limit: RateLimitPolicy,
}

impl TicketApi {
    /// Everything one ticket route needs, from its settings.
    pub fn from_settings(
        action: TicketAction,
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::Settings,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::tasks::{RunStore, RunTables, TaskStore, TaskTables};
        Ok(Self {
            action,
            reviews: Reviews {
                tickets: super::store::ReviewStore::from_settings(sdk, settings)?,
                tasks: TaskStore::new(sdk, TaskTables::from_settings(settings)?),
                runs: RunStore::new(sdk, RunTables::from_settings(settings)?),
            },
            limiter: RateLimiter::from_settings(sdk, settings)?,
            reads: crate::ratelimit::ReadLimiter::from_settings(settings)?,
            rate_limit: RateLimitPolicy::review_action(settings)?,
        })
    }
}

/// The `main` of every ticket route: build once, then serve with the audit log.
pub async fn run(function: &'static str, action: TicketAction) -> Result<(), lambda_http::Error> {
    let metrics = crate::telemetry::init(function);
    let settings = crate::config::Settings::from_env();
    let sdk = crate::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let api = TicketApi::from_settings(action, &sdk, &settings)?;
    crate::http::serve(metrics, pipeline, api).await
}

/// A ticket in the v1 shape, as the queue lists it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketSummary {
    pub ticket_id: TicketId,
    pub task_id: TaskId,
    pub status: TicketStatus,
    pub summary: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub updated_at: String,
    pub assigned_to: Option<String>,
    /// Where the escalation came from (`guardrail:<policy>`, `negotiation`).
    pub sources: Vec<String>,
    /// The guardrail decisions, negotiation and outputs that raised it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub escalation_payload: Value,
}

/// A queue entry (`GET /api/v1/reviews`): the ticket with its newest notes (v1's console
/// counts and shows them); `note_count` says how many there are in all.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketListItem {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    /// The newest notes, newest first: at most [`LIST_NOTES`] (get the ticket for all).
    pub notes: Vec<Note>,
    pub note_count: u32,
}

/// Notes a queue entry carries.
pub const LIST_NOTES: usize = 5;

/// One ticket with its notes and history (`GET /api/v1/reviews/{ticket_id}` and every action).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketView {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    pub notes: Vec<Note>,
    /// What happened to the ticket, oldest first: `{action, by, at, …}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub history: Vec<Value>,
}

/// The ticket in the v1 shape, with its notes and history.
pub async fn ticket_view(reviews: &Reviews, ticket: &Ticket) -> Result<TicketView, ApiError> {
    Ok(TicketView {
        notes: reviews.tickets.notes(ticket.ticket_id.as_str()).await?,
        history: reviews.tickets.history(ticket.ticket_id.as_str()).await?,
        ticket: list_item(ticket),
    })
}

/// A JSON object body; an empty body is an empty object.
fn object_body(request: &Request) -> Result<Map<String, Value>, ApiError> {
    let bytes = body_bytes(request);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?
    {
        Value::Object(map) => Ok(map),
        _ => Err(invalid("body", "must be a JSON object")),
    }
}

/// An optional string field: absent or null is `None`; anything but a string is a 422.
fn optional_string<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::Validation(vec![FieldError::new(
            field,
            "must be a string",
        )])),
    }
}

/// The longest note `content`, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// The longest resolution `summary`, in characters (it is copied to the history and the task).
pub const MAX_SUMMARY_CHARS: usize = 4_000;
/// The longest unassign `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// A 422 when a text field is longer than `max` characters.
fn within(text: &str, field: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        Err(invalid(field, &format!("must be at most {max} characters")))
    } else {
        Ok(())
    }
}

/// A 422 naming one field.
fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new(field, message)])
}

/// v1 bodies may name a person (`author`, `reviewer_id`); here it may only be the caller.
fn caller_or_absent(
    body: &Map<String, Value>,
    field: &str,
    principal: &Principal,
) -> Result<(), ApiError> {
    match optional_string(body, field)? {
        Some(who) if who != principal.subject => {
            Err(invalid(field, "must be the caller (or absent)"))
        }
        _ => Ok(()),
    }
}

impl TicketApi {
    async fn act(
        &self,
        principal: &Principal,
        request: &Request,
        ticket_id: &str,
    ) -> Result<Ticket, ApiError> {
        let now = crate::time::now_millis();
        let body = object_body(request)?;
        match self.action {
            TicketAction::Get => self
                .reviews
                .tickets
                .get(ticket_id)
                .await?
                .ok_or(ApiError::NotFound(TICKET_NOT_FOUND)),
            TicketAction::Assign => {
                let reviewer = optional_string(&body, "reviewer_id")?;
                self.reviews
                    .assign(principal, ticket_id, reviewer, now)
                    .await
            }
            TicketAction::Unassign => {
                let reason = optional_string(&body, "reason")?;
                if let Some(reason) = reason {
                    within(reason, "reason", MAX_REASON_CHARS)?;
                }
                self.reviews
                    .unassign(principal, ticket_id, reason, now)
                    .await
            }
            TicketAction::AddNote => {
                let content = match optional_string(&body, "content")? {
                    Some(c) if !c.trim().is_empty() => {
                        within(c, "content", MAX_NOTE_CHARS)?;
                        c
                    }
                    _ => {
                        return Err(invalid("content", "must not be empty"));
                    }
                };
                caller_or_absent(&body, "author", principal)?;
                let added = self
                    .reviews
                    .tickets
                    .add_note(ticket_id, &principal.subject, content, now)
                    .await?;
                match added {
                    Ok(_) => self
                        .reviews
                        .tickets
                        .get(ticket_id)
                        .await?
                        .ok_or(ApiError::NotFound(TICKET_NOT_FOUND)),
                    Err(NoteRefused::NotFound) => Err(ApiError::NotFound(TICKET_NOT_FOUND)),
                    Err(NoteRefused::Closed(status)) => Err(ApiError::TicketConflict {
                        status: status.as_str(),
                    }),
                    Err(NoteRefused::Full) => Err(ApiError::TicketNotesFull {
                        limit: MAX_NOTES_PER_TICKET,
                    }),
                }
            }
            TicketAction::Resolve => {
                let status = match optional_string(&body, "status")? {
                    Some(raw) => TicketStatus::parse(raw)
                        .filter(|s| s.is_closed())
                        .ok_or_else(|| invalid("status", "must be resolved or dismissed"))?,
                    None => {
                        return Err(invalid("status", crate::http::problem::REQUIRED));
                    }
                };
                caller_or_absent(&body, "reviewer_id", principal)?;
                let outcome = Outcome::parse(optional_string(&body, "outcome")?)?;
                let summary = optional_string(&body, "summary")?;
                if let Some(summary) = summary {
                    within(summary, "summary", MAX_SUMMARY_CHARS)?;
                }
                self.reviews
                    .resolve(principal, ticket_id, status, outcome, summary, now)
                    .await
            }
        }
    }
}

impl ApiHandler for TicketApi {
    fn route(&self) -> &'static Route {
        self.action.route()
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        principal.require(scopes::REVIEWS_READ)?;
        let ticket_id = path_param(&request, "ticket_id")
            .filter(|raw| uuid::Uuid::try_parse(raw).is_ok())
            .ok_or_else(|| ApiError::BadRequest("ticket_id must be a UUID".into()))?;
        let rate = if self.action == TicketAction::Get {
            self.reads.admit(&principal.subject)?
        } else {
            self.limiter
                .admit(
                    &self.rate_limit,
                    &principal.subject,
                    self.limiter.now_millis(),
                )
                .await?
        };
        let ticket = self.act(principal, &request, &ticket_id).await?;
        let mut response =
            json_response(StatusCode::OK, &ticket_view(&self.reviews, &ticket).await?)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }
}

/// `GET /api/v1/reviews`: the queue, oldest first. The body stays the v1 list of
/// tickets, each with its newest notes (history: get the ticket); the next page is
/// in the `Link` (`rel="next"`) and `X-Next-Cursor` headers.
pub struct ListTicketsApi {
    pub reads: crate::ratelimit::ReadLimiter,
    pub tickets: super::store::ReviewStore,
}

/// A queue cursor: the per-source positions (a status, or `assignee`).
fn decode_cursor(raw: &str) -> Result<super::listing::ListCursor, ApiError> {
    let cursor: super::listing::ListCursor = crate::http::cursor::decode(raw)?;
    // Only the sources a listing can have.
    let known = |k: &str| k == "assignee" || TicketStatus::parse(k).is_some();
    if cursor.keys().all(|k| known(k)) {
        Ok(cursor)
    } else {
        Err(crate::http::cursor::not_ours())
    }
}

pub fn list_item(ticket: &Ticket) -> TicketSummary {
    TicketSummary {
        ticket_id: ticket.ticket_id.clone(),
        task_id: ticket.task_id,
        status: ticket.status,
        summary: ticket.summary.clone(),
        created_at: rfc3339(ticket.created_at),
        updated_at: rfc3339(ticket.updated_at),
        assigned_to: ticket.assigned_to.clone(),
        sources: ticket.sources.clone(),
        escalation_payload: ticket.escalation_payload.clone(),
    }
}

impl ApiHandler for ListTicketsApi {
    fn route(&self) -> &'static Route {
        &routes::LIST_REVIEWS
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        use lambda_http::RequestExt;
        // The route's scope (`reviews:read`) was checked before the handler ran.
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let params = request.query_string_parameters();
        let bad = |m: &str| ApiError::BadRequest(m.to_string());
        let statuses = match params.first("status_filter") {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(|s| TicketStatus::parse(s.trim()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("status_filter must be open, in_review, resolved or dismissed (comma-separated)"))?,
        };
        let limit = crate::http::cursor::limit(Some(&params), 50, 100)?;
        let created_before = match params.first("min_age_minutes") {
            None => None,
            Some(raw) => {
                let minutes = raw
                    .parse::<i64>()
                    .ok()
                    .filter(|m| (0..=525_600).contains(m))
                    .ok_or_else(|| bad("min_age_minutes must be a whole number of minutes"))?;
                Some(crate::time::now_millis() - minutes * 60_000)
            }
        };
        let assignee = params
            .first("assignee")
            .map(str::to_string)
            .filter(|a| !a.is_empty());
        let cursor = match params.first("cursor") {
            Some(raw) => decode_cursor(raw)?,
            None => Default::default(),
        };
        let query = super::listing::ListQuery {
            statuses,
            assignee,
            created_before,
            limit,
        };
        let super::listing::ListPage { tickets, next } = self.tickets.list(&query, &cursor).await?;
        // Notes are read only for the tickets that have any, all at once.
        let notes = futures_util::future::try_join_all(tickets.iter().map(|t| async {
            match t.note_count {
                0 => Ok(Vec::new()),
                _ => self.tickets.newest_notes(&t.ticket_id, LIST_NOTES).await,
            }
        }))
        .await?;
        let body: Vec<TicketListItem> = tickets
            .iter()
            .zip(notes)
            .map(|(t, notes)| TicketListItem {
                ticket: list_item(t),
                notes,
                note_count: t.note_count,
            })
            .collect();
        let mut response = json_response(StatusCode::OK, &body)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        if let Some(next) = next {
            let token = crate::http::cursor::encode(&next);
            crate::http::cursor::link_next(
                response.headers_mut(),
                "/api/v1/reviews",
                &params,
                &token,
            );
        }
        Ok(response)
    }
}
