//! The edge between API Gateway events and the domain: method checks, request
//! ids, error mapping, per-route metrics and the Lambda runtime loop.

pub mod problem;

use crate::routes::Route;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use problem::ApiError;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A function's request handler: its route and what it does with a request.
pub trait ApiHandler: Send + Sync + 'static {
    fn route(&self) -> &'static Route;

    fn handle(
        &self,
        request: Request,
        request_id: &str,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// The Lambda request id, or the API Gateway one, or a fresh one for local calls.
pub fn request_id(request: &Request) -> String {
    request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Runs one request through the handler: method check, handler, error mapping, metrics.
pub async fn respond<H: ApiHandler>(handler: &H, request: Request) -> Response<Body> {
    respond_audited(handler, None, request).await
}

/// [`respond`], recording the request in the audit log. If the record can be
/// neither written nor queued, the answer is a `503`: no request goes unrecorded.
pub async fn respond_audited<H: ApiHandler>(
    handler: &H,
    auditor: Option<&crate::audit::Auditor>,
    request: Request,
) -> Response<Body> {
    let started = Instant::now();
    let route = handler.route();
    let request_id = request_id(&request);
    let pending = auditor.map(|a| a.begin(route, &request, &request_id));
    let method = request.method().as_str().to_string();
    let path = request.raw_http_path().to_string();

    let mut override_of = None;
    let result = if let Some(refused) = refused_unread(route, &request) {
        Err(refused)
    } else {
        // Boxed: handler futures are large, and this one is awaited inside every caller's.
        let (result, noted) = Box::pin(crate::audit::collect_override(
            handler.handle(request, &request_id),
        ))
        .await;
        override_of = noted;
        result
    };
    let response = match result {
        Ok(mut response) => {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            response
        }
        Err(err) => {
            match &err {
                ApiError::Internal(cause) => {
                    tracing::error!(error = %cause, problem = err.slug(), "request failed")
                }
                ApiError::Unavailable { .. } => {
                    tracing::warn!(problem = err.slug(), "dependency unavailable")
                }
                _ => tracing::info!(
                    problem = err.slug(),
                    status = err.status().as_u16(),
                    "request refused"
                ),
            }
            err.to_response(&request_id, &path)
        }
    };
    let response = match (auditor, pending) {
        (Some(auditor), Some(pending)) => {
            match auditor
                .finish(pending, response.status().as_u16(), override_of)
                .await
            {
                Ok(()) => response,
                Err(err) => {
                    tracing::error!(error = %err, "request not recorded in the audit log; refusing it");
                    ApiError::Unavailable {
                        retry_after_seconds: 1,
                    }
                    .to_response(&request_id, &path)
                }
            }
        }
        _ => response,
    };
    let mut response = response;
    protect(response.headers_mut());
    crate::telemetry::record_http_request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// What every route refuses before its handler reads the request: a method it does
/// not answer (`405`), a body over its limit (`413`, before anything parses it).
pub fn refused_unread(route: &Route, request: &Request) -> Option<ApiError> {
    let method = request.method().as_str();
    if !route.methods.contains(&method) {
        Some(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allowed: route.methods,
        })
    } else if body_bytes(request).len() > route.max_body_bytes {
        Some(ApiError::PayloadTooLarge {
            limit: route.max_body_bytes,
        })
    } else {
        None
    }
}

/// Headers for every response that may carry user text (prompts, outputs, notes): the
/// browser must not sniff a type, run scripts, load anything or treat it as same-origin.
pub fn protect(headers: &mut lambda_http::http::HeaderMap) {
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
}

/// Starts the Lambda runtime for an HTTP function, flushing EMF metrics after every invocation.
pub async fn serve<H: ApiHandler>(
    metrics: &'static crate::telemetry::Metrics,
    handler: H,
) -> Result<(), lambda_http::Error> {
    serve_audited(metrics, handler, None).await
}

/// [`serve`], recording every request in the audit log (sensitive routes).
pub async fn serve_audited<H: ApiHandler>(
    metrics: &'static crate::telemetry::Metrics,
    handler: H,
    auditor: Option<crate::audit::Auditor>,
) -> Result<(), lambda_http::Error> {
    let handler = Arc::new(handler);
    let auditor = Arc::new(auditor);
    metrics_cloudwatch_embedded::lambda::handler::run_http(metrics, move |request: Request| {
        let (handler, auditor) = (Arc::clone(&handler), Arc::clone(&auditor));
        async move {
            Ok::<_, lambda_http::Error>(
                respond_audited(handler.as_ref(), auditor.as_ref().as_ref(), request).await,
            )
        }
    })
    .await
}

/// A JSON response with `Cache-Control: no-store` (task state changes by the second).
pub fn json_response<T: Serialize>(
    status: StatusCode,
    body: &T,
) -> Result<Response<Body>, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
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

/// Starts the Lambda runtime for a streaming route (Lambda response streaming).
/// EMF metrics are flushed when each response starts streaming.
pub async fn serve_streaming<F, Fut>(
    metrics: &'static crate::telemetry::Metrics,
    respond: F,
) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<crate::orchestrator::stream::ChannelBody>> + Send + 'static,
{
    let respond = Arc::new(respond);
    let service = lambda_http::service_fn(move |request: Request| {
        let respond = Arc::clone(&respond);
        async move { Ok::<_, lambda_http::Error>(respond(request).await) }
    });
    metrics_cloudwatch_embedded::lambda::service::run(
        metrics,
        lambda_http::StreamAdapter::from(service),
    )
    .await
}
