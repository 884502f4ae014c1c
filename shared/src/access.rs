//! Who may read what. Every read surface (task, events, run, dossier) asks here,
//! so the rule is written once.

use crate::auth::{Principal, scopes};
use crate::http::RequestContext;
use crate::http::problem::ApiError;
use crate::ratelimit::{RateStatus, ReadLimiter};

/// The caller of a route that reads tasks, their events or runs: it needs
/// `tasks:read`, or `tasks:submit` (then [`may_read`] limits it to its own tasks).
pub fn reader(cx: &RequestContext) -> Result<&Principal, ApiError> {
    let principal = cx.principal()?;
    if principal.has_scope(scopes::TASKS_READ) || principal.has_scope(scopes::TASKS_SUBMIT) {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The caller of a read route, admitted by its read limit: who, and where they stand
/// against the limit (for the response's rate-limit headers).
pub fn admitted_reader<'a>(
    cx: &'a RequestContext,
    reads: &ReadLimiter,
) -> Result<(&'a Principal, Option<RateStatus>), ApiError> {
    let principal = reader(cx)?;
    let rate = reads.admit(&principal.subject)?;
    Ok((principal, rate))
}

/// Readers (`tasks:read`) see every task; submitters see their own. A task the
/// caller may not see answers like an unknown one, so ids cannot be probed.
pub fn may_read(principal: &Principal, submitted_by: &str) -> bool {
    principal.has_scope(scopes::TASKS_READ)
        || (principal.has_scope(scopes::TASKS_SUBMIT) && principal.subject == submitted_by)
}

/// Whether `principal` sees a task's prompt and metadata as written: only its
/// submitter does; everyone else (observers, reviewers) sees them redacted.
pub fn sees_unredacted(principal: &Principal, submitted_by: &str) -> bool {
    principal.subject == submitted_by
}
