//! Reading an API Gateway request: its id, body, path parameters and headers.
//! Nothing here can fail with a problem; the pipeline and the handlers decide that.

use lambda_http::{Body, Request, RequestExt};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The Lambda request id, or the API Gateway one, or a fresh one for local calls.
pub fn request_id(request: &Request) -> String {
    request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The raw request body, whether API Gateway sent it as text or base64.
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// A path parameter by name (`task_id` for `/api/v1/tasks/{task_id}`).
pub fn path_param(request: &Request, name: &str) -> Option<String> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_string)
}

/// A header as a string, if present and visible ASCII.
pub fn header_str<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A query-string parameter by name.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_string)
}
