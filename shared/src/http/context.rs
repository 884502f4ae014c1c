//! What the pipeline hands a handler besides the request.

use super::problem::ApiError;
use crate::auth::Principal;
use std::time::Instant;

/// What the pipeline knows of a request when the handler runs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The caller, if the bearer token verified (the pipeline verifies it once).
    pub caller: Option<Principal>,
    /// When the invocation will be cut off (none for local calls).
    pub deadline: Option<Instant>,
}

impl RequestContext {
    /// The verified caller, or `401`: every route but liveness and readiness needs one.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.caller.as_ref().ok_or(ApiError::Unauthorized)
    }
}
