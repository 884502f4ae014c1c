//! One path for every error to the client: a typed [`ApiError`] becomes an
//! RFC 9457 `application/problem+json` response with a stable `type`, a human
//! `detail` (kept under that name so v1 clients still find their message) and
//! the request id. Internal causes are logged, never returned.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a well-formed request body: `field` and `message`, and the same in
/// the shape v1 (FastAPI) clients read: `loc` (`["body", "metadata", "agents"]`), `msg`, `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Dotted path of the field, for example `metadata` or `prompt`.
    pub field: String,
    pub message: String,
    /// v1's path of the field: `body`, then the field's path.
    pub loc: Vec<String>,
    /// v1's message (the same as `message`).
    pub msg: String,
    /// v1's error type: `missing` for an absent required field, else `value_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// The message of a required field that is absent (v1's `missing`).
pub const REQUIRED: &str = "is required";

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        // `body` itself (an empty or non-object body) is just `["body"]`.
        let loc = std::iter::once("body")
            .chain(field.split('.').filter(|part| *part != "body"))
            .map(str::to_string)
            .collect();
        let kind = if message == REQUIRED {
            "missing"
        } else {
            "value_error"
        };
        Self {
            loc,
            msg: message.clone(),
            kind,
            field,
            message,
        }
    }
}

/// An RFC 9457 problem, as every error response carries it (`application/problem+json`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `urn:neuraforge:problem:<slug>`: stable, for clients to branch on.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person (v1 clients read this field).
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// Also in the `X-Request-Id` header and every log line of the request.
    pub request_id: String,
    /// `validation-error` only: each invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// `ticket-conflict` only: the ticket's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<&'static str>,
    /// `not-ready` only (readiness): each dependency's check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

/// Each dependency's check (also in the `503` problem's `checks`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checks {
    pub dynamodb: Check,
    pub sqs: Check,
}

/// One dependency: `ok` or `unavailable` (the cause is logged, never sent), and how long it took.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    pub status: &'static str,
    pub latency_ms: u64,
}

/// Everything that can go wrong in an API request, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body failed validation")]
    Validation(Vec<FieldError>),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the token does not grant access to this resource")]
    Forbidden,
    /// Separation of duties: a reviewer deciding a ticket raised by their own task.
    #[error("a reviewer may not decide a review ticket raised by a task they submitted")]
    OwnTask,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method {method} is not allowed here")]
    MethodNotAllowed {
        method: String,
        allowed: &'static [&'static str],
    },
    #[error("the review ticket is {status}; that change is not possible from there")]
    TicketConflict { status: &'static str },
    #[error("the ticket's task is still being recorded; try again shortly")]
    TaskNotSettled,
    #[error("the review ticket already holds the most notes it may ({limit})")]
    TicketNotesFull { limit: usize },
    #[error("the Idempotency-Key was already used with a different request body")]
    IdempotencyConflict,
    #[error("too many {action} requests; retry after {retry_after_seconds} s")]
    RateLimited {
        /// The `RateLimit-Policy` header value.
        policy: String,
        action: &'static str,
        retry_after_seconds: u32,
    },
    #[error("a dependency is unavailable, try again shortly")]
    Unavailable { retry_after_seconds: u32 },
    /// An unexpected failure; the cause is logged and never sent to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::OwnTask => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyConflict
            | ApiError::TicketConflict { .. }
            | ApiError::TicketNotesFull { .. }
            | ApiError::TaskNotSettled => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem type slug; the full `type` is `urn:neuraforge:problem:<slug>`.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::Validation(_) => "validation-error",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::OwnTask => "separation-of-duties",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::IdempotencyConflict => "idempotency-key-reused",
            ApiError::TicketConflict { .. } => "ticket-conflict",
            ApiError::TicketNotesFull { .. } => "ticket-notes-full",
            ApiError::TaskNotSettled => "task-not-settled",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unavailable { .. } => "service-unavailable",
            ApiError::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "Malformed JSON",
            ApiError::BadRequest(_) => "Bad request",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::Validation(_) => "Validation failed",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden => "Forbidden",
            ApiError::OwnTask => "Separation of duties",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::IdempotencyConflict => "Idempotency key reused",
            ApiError::TicketConflict { .. } => "Ticket conflict",
            ApiError::TicketNotesFull { .. } => "Ticket notes full",
            ApiError::TaskNotSettled => "Task not settled",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable { .. } => "Service unavailable",
            ApiError::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    /// Builds the problem response. `instance` is the request path.
    pub fn to_response(&self, request_id: &str, instance: &str) -> Response<Body> {
        let body = Problem {
            kind: problem_type(self.slug()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
            instance: instance.to_string(),
            request_id: request_id.to_string(),
            errors: match self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            current_status: match self {
                ApiError::TicketConflict { status } => Some(status),
                _ => None,
            },
            checks: None,
        };
        problem_response(self.status(), &body, self.extra_headers(), request_id)
    }

    fn extra_headers(&self) -> Vec<(header::HeaderName, String)> {
        match self {
            // RFC 6750: tell the client which scheme to use, and (for a bad token) that it was invalid.
            ApiError::Unauthorized => vec![(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="neuraforge", error="invalid_token""#.to_string(),
            )],
            ApiError::Forbidden => vec![(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="neuraforge", error="insufficient_scope""#.to_string(),
            )],
            ApiError::MethodNotAllowed { allowed, .. } => {
                vec![(header::ALLOW, allowed.join(", "))]
            }
            ApiError::Unavailable {
                retry_after_seconds,
            } => vec![(header::RETRY_AFTER, retry_after_seconds.to_string())],
            ApiError::TaskNotSettled => vec![(header::RETRY_AFTER, "60".to_string())],
            ApiError::RateLimited {
                policy,
                action,
                retry_after_seconds,
            } => vec![
                (header::RETRY_AFTER, retry_after_seconds.to_string()),
                (
                    header::HeaderName::from_static("ratelimit-policy"),
                    policy.clone(),
                ),
                (
                    header::HeaderName::from_static("ratelimit"),
                    format!("\"{action}\";r=0;t={retry_after_seconds}"),
                ),
            ],
            _ => Vec::new(),
        }
    }
}

/// A storage failure as the client sees it: unavailable is a `503` to retry, anything
/// else an internal error (its cause logged, never sent).
impl From<crate::dynamo::StoreError> for ApiError {
    fn from(err: crate::dynamo::StoreError) -> Self {
        match err {
            crate::dynamo::StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "storage unavailable");
                ApiError::Unavailable {
                    retry_after_seconds: 1,
                }
            }
            crate::dynamo::StoreError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// The full `type` of a problem slug.
pub fn problem_type(slug: &str) -> String {
    format!("urn:neuraforge:problem:{slug}")
}

/// A problem+json response from an already built body (used by readiness, which adds `checks`).
pub fn problem_response(
    status: StatusCode,
    body: &Problem,
    headers: Vec<(header::HeaderName, String)>,
    request_id: &str,
) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_default();
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(super::REQUEST_ID_HEADER, v);
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body_json(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn validation_errors_are_422_problems_listing_each_field() {
        let err = ApiError::Validation(vec![
            FieldError::new("prompt", "must not be empty"),
            FieldError::new("metadata", "must be an object"),
        ]);
        let response = err.to_response("req-1", "/api/v1/submit_task");
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let body = body_json(&response);
        assert_eq!(body["type"], "urn:neuraforge:problem:validation-error");
        assert_eq!(
            body["detail"],
            "prompt: must not be empty; metadata: must be an object"
        );
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["errors"][1]["field"], "metadata");
        // v1's shape beside it.
        assert_eq!(
            body["errors"][1]["loc"],
            serde_json::json!(["body", "metadata"])
        );
        assert_eq!(body["errors"][1]["msg"], "must be an object");
        assert_eq!(body["errors"][1]["type"], "value_error");
        let missing = FieldError::new("prompt", REQUIRED);
        assert_eq!((missing.kind, missing.loc.len()), ("missing", 2));
        let nested = FieldError::new("metadata.agents", "must be a non-empty list");
        assert_eq!(nested.loc, ["body", "metadata", "agents"]);
        assert_eq!(FieldError::new("body", REQUIRED).loc, ["body"]);
    }

    #[test]
    fn internal_errors_never_leak_their_cause() {
        let err = ApiError::Internal("DynamoDB said: ResourceNotFoundException arn:...".into());
        let response = err.to_response("req-2", "/x");
        assert_eq!(response.status(), 500);
        let text = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(!text.contains("DynamoDB"), "{text}");
        assert_eq!(body_json(&response)["detail"], "internal error");
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = ApiError::Unauthorized.to_response("r", "/x");
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let err = ApiError::MethodNotAllowed {
            method: "DELETE".into(),
            allowed: &["GET"],
        };
        let response = err.to_response("r", "/x");
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET");
    }

    #[test]
    fn not_found_keeps_the_v1_detail_text() {
        let response = ApiError::NotFound("Task not found").to_response("r", "/x");
        assert_eq!(body_json(&response)["detail"], "Task not found");
    }
}
