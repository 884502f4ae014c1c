//! What reviewers may do, and what a decision does to the task.
//!
//! - Anyone with `reviews:write` assigns a ticket to themselves, unassigns
//!   their own, resolves their own or an unassigned one. Acting for or on
//!   someone else needs `reviews:admin`.
//! - `resolved` with `outcome: approve` (the default, as v1 had no outcome)
//!   completes the task with the run's result; `outcome: reject` fails it with
//!   the reviewer's summary. `dismissed` (the escalation was unfounded)
//!   completes it. Either way `review_decided` joins the task's events.
//! - A decision retried after a crash finishes the task's part and answers
//!   `409` with the ticket's status: the ticket was already decided.

use super::store::{Assignee, Change, Refused, ReviewStore};
use super::{Ticket, TicketStatus};
use crate::auth::{Principal, scopes};
use crate::http::problem::ApiError;
use crate::tasks::EventPayload;
use crate::tasks::Read;
use crate::tasks::{
    RunStore, TaskEvent, TaskStatus, TaskStore, TicketId, event_names as names, run_id_for,
};
use crate::telemetry::names as metric;
use serde::Serialize;
use serde_json::json;

pub const TICKET_NOT_FOUND: &str = "Review ticket not found";

/// `review_decided`: a reviewer resolved or dismissed the task's ticket.
#[derive(Debug, Serialize)]
struct ReviewDecided<'a> {
    ticket_id: &'a TicketId,
    status: TicketStatus,
    outcome: &'a serde_json::Value,
    by: &'a str,
    summary: Option<&'a str>,
    task_status: TaskStatus,
}

impl EventPayload for ReviewDecided<'_> {
    const NAME: &'static str = names::REVIEW_DECIDED;
}

/// A reviewer's decision on the task (`approve` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approve,
    Reject,
}

impl Outcome {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw {
            None | Some("approve") => Ok(Outcome::Approve),
            Some("reject") => Ok(Outcome::Reject),
            Some(other) => Err(ApiError::Validation(vec![
                crate::http::problem::FieldError::new(
                    "outcome",
                    format!("must be approve or reject, not {other:?}"),
                ),
            ])),
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Approve => "approve",
            Outcome::Reject => "reject",
        }
    }
}

pub struct Reviews {
    pub tickets: ReviewStore,
    pub tasks: TaskStore,
    pub runs: RunStore,
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::NotFound => ApiError::NotFound(TICKET_NOT_FOUND),
        Refused::Conflict(status) => ApiError::TicketConflict {
            status: status.as_str(),
        },
    }
}

/// The audit record's name for a `review_admin` deciding a ticket of their own task.
pub const OVERRIDE_OWN_TASK: &str = "separation_of_duties";

/// Separation of duties: `who` may not decide (hold or resolve) a ticket raised by a
/// task they submitted. A `review_admin` acting for themselves may, and the request's
/// audit record names the override.
fn separation_of_duties(principal: &Principal, who: &str, ticket: &Ticket) -> Result<(), ApiError> {
    let submitter = ticket.escalation_payload["meta"]["submitted_by"].as_str();
    if submitter != Some(who) {
        return Ok(());
    }
    if who == principal.subject && principal.has_scope(scopes::REVIEWS_ADMIN) {
        crate::audit::note_override(OVERRIDE_OWN_TASK);
        tracing::warn!(ticket_id = %ticket.ticket_id, "review admin decides a ticket of their own task (override)");
        return Ok(());
    }
    Err(ApiError::OwnTask)
}

/// `reviews:admin` is needed to act on a ticket held by someone else.
fn may_act_on(principal: &Principal, ticket: &Ticket) -> Result<(), ApiError> {
    principal.require(scopes::REVIEWS_WRITE)?;
    match &ticket.assigned_to {
        Some(holder) if holder != &principal.subject => principal.require(scopes::REVIEWS_ADMIN),
        _ => Ok(()),
    }
}

impl Reviews {
    async fn ticket(&self, ticket_id: &str) -> Result<Ticket, ApiError> {
        self.tickets
            .get(ticket_id)
            .await?
            .ok_or(ApiError::NotFound(TICKET_NOT_FOUND))
    }

    /// Assigns the ticket (`open → in_review`) to `reviewer`, or to the caller.
    pub async fn assign(
        &self,
        principal: &Principal,
        ticket_id: &str,
        reviewer: Option<&str>,
        now: i64,
    ) -> Result<Ticket, ApiError> {
        principal.require(scopes::REVIEWS_WRITE)?;
        let reviewer = reviewer.unwrap_or(&principal.subject);
        if reviewer != principal.subject {
            principal.require(scopes::REVIEWS_ADMIN)?;
        }
        let ticket = self.ticket(ticket_id).await?;
        separation_of_duties(principal, reviewer, &ticket)?;
        let change = Change {
            to: TicketStatus::InReview,
            assign: Assignee::Set(reviewer),
            summary: None,
            actor: &principal.subject,
            detail: json!(null),
        };
        let assigned = self
            .tickets
            .change(ticket_id, &change, now)
            .await?
            .map_err(refused)?;
        // The first assignment only: a ticket unassigned and taken again is not "assigned late".
        if ticket.version == 1 {
            metrics::histogram!(metric::REVIEW_TIME_TO_ASSIGN)
                .record((now - ticket.created_at).max(0) as f64 / 1000.0);
        }
        Ok(assigned)
    }

    /// Unassigns the ticket (`in_review → open`), with the reason in its history.
    pub async fn unassign(
        &self,
        principal: &Principal,
        ticket_id: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Ticket, ApiError> {
        let ticket = self.ticket(ticket_id).await?;
        may_act_on(principal, &ticket)?;
        let change = Change {
            to: TicketStatus::Open,
            assign: Assignee::Clear,
            summary: None,
            actor: &principal.subject,
            detail: reason.map_or(json!(null), |r| json!({"reason": r})),
        };
        self.tickets
            .change(ticket_id, &change, now)
            .await?
            .map_err(refused)
    }

    /// Resolves or dismisses the ticket and settles its task accordingly.
    pub async fn resolve(
        &self,
        principal: &Principal,
        ticket_id: &str,
        status: TicketStatus,
        outcome: Outcome,
        summary: Option<&str>,
        now: i64,
    ) -> Result<Ticket, ApiError> {
        if !status.is_closed() {
            return Err(ApiError::Validation(vec![
                crate::http::problem::FieldError::new("status", "must be resolved or dismissed"),
            ]));
        }
        let ticket = self.ticket(ticket_id).await?;
        may_act_on(principal, &ticket)?;
        separation_of_duties(principal, &principal.subject, &ticket)?;
        if !ticket.status.is_closed() {
            self.task_settled(&ticket).await?;
        }
        let approved = status == TicketStatus::Dismissed || outcome == Outcome::Approve;
        let detail = json!({"outcome": if status == TicketStatus::Dismissed { "dismissed" } else { outcome.as_str() }});
        let change = Change {
            to: status,
            assign: Assignee::Keep,
            summary,
            actor: &principal.subject,
            detail: detail.clone(),
        };
        match self.tickets.change(ticket_id, &change, now).await? {
            Ok(decided) => {
                let outcome = detail["outcome"].as_str().unwrap_or("approve").to_string();
                metrics::counter!(
                    metric::REVIEW_DECISIONS,
                    "status" => status.as_str(),
                    "outcome" => outcome
                )
                .increment(1);
                metrics::histogram!(metric::REVIEW_TIME_TO_RESOLVE)
                    .record((now - ticket.created_at).max(0) as f64 / 1000.0);
                self.settle_task(
                    &decided,
                    approved,
                    summary.unwrap_or("rejected by review"),
                    &detail,
                    &principal.subject,
                    now,
                )
                .await?;
                Ok(decided)
            }
            Err(Refused::Conflict(current)) if current.is_closed() => {
                // Decided before (a retry after a crash?): make sure its task followed.
                let history = self.tickets.history(ticket_id).await?;
                if let Some(last) = history.last() {
                    let approved = last["detail"]["outcome"] != "reject";
                    let reason = last["summary"]
                        .as_str()
                        .unwrap_or("rejected by review")
                        .to_string();
                    let closed = self.ticket(ticket_id).await?;
                    self.settle_task(
                        &closed,
                        approved,
                        &reason,
                        &last["detail"],
                        last["by"].as_str().unwrap_or("?"),
                        now,
                    )
                    .await?;
                }
                Err(refused(Refused::Conflict(current)))
            }
            Err(other) => Err(refused(other)),
        }
    }

    /// A ticket is decided only once its task waits for review. The worker opens the
    /// ticket before it settles the task; if it crashed in between, the task is still
    /// `in_progress` until the redelivery settles it under this same ticket (the open
    /// ticket's marker makes it so), and a decision now would leave the task behind.
    async fn task_settled(&self, ticket: &Ticket) -> Result<(), ApiError> {
        let task = match Some(ticket.task_id) {
            Some(id) => self.tasks.get(id).await?,
            None => None,
        };
        match task.map(|t| t.status) {
            Some(TaskStatus::Queued | TaskStatus::InProgress) => Err(ApiError::TaskNotSettled),
            _ => Ok(()),
        }
    }

    /// Settles the task and records `review_decided`, each at most once.
    async fn settle_task(
        &self,
        ticket: &Ticket,
        approved: bool,
        reason: &str,
        detail: &serde_json::Value,
        by: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        let Some(task_id) = Some(ticket.task_id) else {
            return Err(ApiError::Internal("ticket without a task".into()));
        };
        let settled = self
            .tasks
            .settle_review(task_id, approved, reason, now)
            .await?;
        let events = self
            .runs
            .events_after(task_id, 0, 10_000, Read::Latest)
            .await?;
        let already = events.iter().any(|e| {
            e.event == ReviewDecided::NAME && e.payload["ticket_id"] == ticket.ticket_id.as_str()
        });
        if !already {
            let sequence = events.last().map_or(1, |e| e.sequence + 1);
            let decided = ReviewDecided {
                ticket_id: &ticket.ticket_id,
                status: ticket.status,
                outcome: &detail["outcome"],
                by,
                summary: ticket.summary.as_deref(),
                task_status: if approved {
                    TaskStatus::Completed
                } else {
                    TaskStatus::Failed
                },
            };
            let run_id = Some(run_id_for(task_id));
            let event = TaskEvent::of(task_id, run_id, sequence, &decided, now);
            self.runs.append_event(&event).await?;
        }
        tracing::info!(ticket_id = %ticket.ticket_id, %task_id, approved, ?settled, "review decided");
        Ok(())
    }
}
