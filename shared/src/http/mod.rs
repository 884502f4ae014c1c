//! The edge between API Gateway events and the domain. One [`Pipeline`] serves
//! every route, buffered or streaming: method and size checks, the request id,
//! authentication (once), the audit record, error mapping, protective headers
//! and per-route metrics. Handlers receive a [`RequestContext`] with the caller.

pub mod context;
pub mod cursor;
pub mod problem;
pub mod request;
pub mod streaming;

use crate::audit::{AuditLog, PendingAudit};
use crate::auth::Authenticator;
use crate::routes::Route;
pub use context::RequestContext;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use problem::ApiError;
pub use request::{REQUEST_ID_HEADER, body_bytes, header_str, path_param, query_param, request_id};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
pub use streaming::{
    ChannelBody, SSE_CLOSING, Stream, StreamHandler, StreamWriter, last_event_id_sent, sse_headers,
    sse_too_many_streams, stream_until,
};

/// A buffered route's handler: its route and what it does with a request.
pub trait ApiHandler: Send + Sync + 'static {
    fn route(&self) -> &'static Route;

    fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// Whether a route's requests are recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    Every,
    None,
}

/// What every request of a function passes through; built once in its `main`.
#[derive(Clone, Default)]
pub struct Pipeline {
    /// Verifies bearer tokens; `None` for the routes nobody signs in to (liveness, readiness).
    auth: Option<Authenticator>,
    /// Records every request of a sensitive route; a request that cannot be recorded is refused.
    audit: Option<AuditLog>,
    /// The review console's origin (`CORS__ALLOWED_ORIGIN`): a browser page there may read the
    /// answers. Any other origin gets no CORS headers, so browsers keep its pages out.
    allowed_origin: Option<HeaderValue>,
}

/// The setting that names the one origin (scheme, host, port) whose pages may call the API.
pub const ALLOWED_ORIGIN_SETTING: &str = "CORS__ALLOWED_ORIGIN";

/// The response headers a page of the allowed origin may read (besides the simple ones).
const EXPOSED_HEADERS: &str = concat!(
    "X-Request-Id, X-Next-Cursor, Link, Location, ",
    "RateLimit, RateLimit-Policy, Retry-After, Idempotent-Replayed"
);

/// `CORS__ALLOWED_ORIGIN`: absent or empty for none; else an origin alone (`https://host[:port]`,
/// or `http://` for a loopback host), never `*`, a path or a list.
pub fn allowed_origin(
    settings: &crate::config::Settings<'_>,
) -> Result<Option<HeaderValue>, crate::config::ConfigError> {
    let Some(raw) = settings
        .optional(ALLOWED_ORIGIN_SETTING)
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let refuse = |problem: &str| crate::config::ConfigError {
        setting: ALLOWED_ORIGIN_SETTING.into(),
        problem: problem.into(),
    };
    let origin = raw.trim();
    let url = reqwest::Url::parse(origin).map_err(|_| refuse("is not an origin (https://host)"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost" || host == "127.0.0.1" || host == "[::1]";
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && !origin.ends_with('/');
    match url.scheme() {
        _ if !bare => Err(refuse(
            "must be an origin alone: scheme, host and port, no path",
        )),
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(refuse("must be https (http only for a loopback host)")),
    }?;
    HeaderValue::from_str(origin)
        .map(Some)
        .map_err(|_| refuse("is not a valid header value"))
}

impl Pipeline {
    /// No caller, no record: liveness and readiness.
    pub fn open() -> Self {
        Self::default()
    }

    /// A public route's pipeline (liveness, readiness): no caller, no record, CORS for the
    /// console's origin.
    pub fn public(
        settings: &crate::config::Settings<'_>,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::open().with_allowed_origin(allowed_origin(settings)?))
    }

    /// The same pipeline, answering CORS for the console's origin (`None`: for nobody).
    pub fn with_allowed_origin(self, origin: Option<HeaderValue>) -> Self {
        Self {
            allowed_origin: origin,
            ..self
        }
    }

    /// Callers are authenticated; requests are not recorded.
    pub fn authenticated(auth: Authenticator) -> Self {
        Self {
            auth: Some(auth),
            ..Self::default()
        }
    }

    /// Callers are authenticated and every request is recorded in the audit log.
    pub fn audited(auth: Authenticator, audit: AuditLog) -> Self {
        Self {
            auth: Some(auth),
            audit: Some(audit),
            allowed_origin: None,
        }
    }

    /// A function's pipeline from its settings: the authenticator (its signing secret
    /// read from SSM at cold start) and, for a sensitive route, the audit log.
    pub async fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::Settings<'_>,
        audit: Audit,
    ) -> Result<Self, crate::config::ConfigError> {
        let auth = crate::auth::load(sdk, settings).await?;
        let pipeline = match audit {
            Audit::Every => Self::audited(auth, AuditLog::stdout()),
            Audit::None => Self::authenticated(auth),
        };
        Ok(pipeline.with_allowed_origin(allowed_origin(settings)?))
    }

    /// Everything known before the handler runs, and what refuses the request unread.
    fn begin(&self, route: &'static Route, request: &Request) -> Begun {
        let request_id = request_id(request);
        let caller = self
            .auth
            .as_ref()
            .and_then(|auth| auth.authenticate(request.headers()).ok());
        let pending = self
            .audit
            .as_ref()
            .map(|log| log.begin(route, request, &request_id, caller.as_ref()));
        // CORS headers only for the console's origin, exactly as the browser sent it.
        let cors = self.allowed_origin.clone().filter(|allowed| {
            request.headers().get(lambda_http::http::header::ORIGIN) == Some(allowed)
        });
        Begun {
            cors,
            started: Instant::now(),
            route,
            method: request.method().as_str().to_string(),
            path: request.raw_http_path().to_string(),
            refused: refused_unread(route, request)
                .or_else(|| unauthorized(route, caller.as_ref())),
            pending,
            cx: RequestContext {
                request_id,
                caller,
                deadline: request
                    .lambda_context_ref()
                    .and_then(crate::time::deadline_instant),
            },
        }
    }

    /// Records the answer in the audit log; if its line cannot be written, the answer
    /// becomes a `503`: no request goes unrecorded.
    async fn record(
        &self,
        begun: &mut Begun,
        response: Response<Body>,
        notes: crate::audit::Notes,
    ) -> Response<Body> {
        let (Some(log), Some(pending)) = (&self.audit, begun.pending.take()) else {
            return response;
        };
        match log.finish(pending, response.status().as_u16(), notes) {
            Ok(()) => response,
            Err(err) => {
                tracing::error!(error = %err, "request not recorded in the audit log; refusing it");
                begun.problem(ApiError::Unavailable {
                    retry_after_seconds: 1,
                })
            }
        }
    }

    /// Runs one request of a buffered route through the handler.
    pub async fn respond<H: ApiHandler>(&self, handler: &H, request: Request) -> Response<Body> {
        let mut begun = self.begin(handler.route(), &request);
        let (result, notes) = match begun.refused.take() {
            Some(refused) => (Err(refused), Default::default()),
            // Boxed: handler futures are large, and this one is awaited inside every caller's.
            None => {
                Box::pin(crate::audit::collect_notes(
                    handler.handle(request, &begun.cx),
                ))
                .await
            }
        };
        let response = match result {
            Ok(mut response) => {
                set_request_id(response.headers_mut(), &begun.cx.request_id);
                response
            }
            Err(err) => begun.refuse(err),
        };
        let response = self.record(&mut begun, response, notes).await;
        begun.finish(response)
    }

    /// Runs one request of a streaming route: `open` (everything that can still be
    /// refused, answered as a problem), then the stream. A stream is recorded in the
    /// audit log when it ends, and its body stays open until it is.
    pub async fn respond_streaming<H: StreamHandler>(
        &self,
        handler: &H,
        request: Request,
    ) -> Response<ChannelBody> {
        let mut begun = self.begin(handler.route(), &request);
        let (opened, notes) = match begun.refused.take() {
            Some(refused) => (Err(refused), Default::default()),
            None => crate::audit::collect_notes(handler.open(request, &begun.cx)).await,
        };
        let response = match opened {
            Ok(stream) => {
                let ended = match (self.audit.clone(), begun.pending.take()) {
                    (Some(log), Some(pending)) => Some((log, pending, notes)),
                    _ => None,
                };
                let mut response = streaming::start(stream, ended);
                set_request_id(response.headers_mut(), &begun.cx.request_id);
                response
            }
            Err(err) => {
                let problem = begun.refuse(err);
                ChannelBody::once(self.record(&mut begun, problem, notes).await)
            }
        };
        begun.finish(response)
    }
}

/// A request between [`Pipeline::begin`] and its answer.
struct Begun {
    /// The request's origin, when it is the console's.
    cors: Option<HeaderValue>,
    started: Instant,
    route: &'static Route,
    method: String,
    path: String,
    refused: Option<ApiError>,
    pending: Option<PendingAudit>,
    cx: RequestContext,
}

impl Begun {
    /// A refusal as a problem response, logged by how much it matters.
    fn refuse(&self, err: ApiError) -> Response<Body> {
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
        self.problem(err)
    }

    fn problem(&self, err: ApiError) -> Response<Body> {
        err.to_response(&self.cx.request_id, &self.path)
    }

    /// The headers and the metric every answer gets.
    fn finish<B>(self, mut response: Response<B>) -> Response<B> {
        protect(response.headers_mut());
        let headers = response.headers_mut();
        // Every answer depends on the Origin: caches must not hand one origin's to another.
        headers.append(
            lambda_http::http::header::VARY,
            HeaderValue::from_static("Origin"),
        );
        if let Some(origin) = self.cors {
            headers.insert(
                lambda_http::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                origin,
            );
            headers.insert(
                lambda_http::http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        crate::telemetry::record_http_request(
            self.route,
            &self.method,
            response.status().as_u16(),
            self.started.elapsed(),
        );
        response
    }
}

fn set_request_id(headers: &mut lambda_http::http::HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
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

/// An authenticated route's caller must hold one of its scopes (`401` without a valid token,
/// `403` without the scope), before the handler reads anything.
pub fn unauthorized(route: &Route, caller: Option<&crate::auth::Principal>) -> Option<ApiError> {
    if !route.authenticated {
        return None;
    }
    match caller {
        None => Some(ApiError::Unauthorized),
        Some(p) if !route.scopes.iter().any(|s| p.has_scope(s)) => Some(ApiError::Forbidden),
        Some(_) => None,
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

/// Starts the Lambda runtime for a buffered route, flushing EMF metrics after every invocation.
pub async fn serve<H: ApiHandler>(
    metrics: &'static crate::telemetry::Metrics,
    pipeline: Pipeline,
    handler: H,
) -> Result<(), lambda_http::Error> {
    let shared = Arc::new((pipeline, handler));
    metrics_cloudwatch_embedded::lambda::handler::run_http(metrics, move |request: Request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, lambda_http::Error>(shared.0.respond(&shared.1, request).await) }
    })
    .await
}

/// The `main` of a buffered route whose handler is built from its settings: logs and
/// metrics, settings, the SDK, the audited pipeline, then [`serve`].
pub async fn run<H, B>(function: &'static str, build: B) -> Result<(), lambda_http::Error>
where
    H: ApiHandler,
    B: FnOnce(
        &aws_config::SdkConfig,
        &crate::config::Settings,
    ) -> Result<H, crate::config::ConfigError>,
{
    let metrics = crate::telemetry::init(function);
    let settings = crate::config::Settings::from_env();
    let sdk = crate::aws::load().await;
    let pipeline = Pipeline::from_settings(&sdk, &settings, Audit::Every).await?;
    let handler = build(&sdk, &settings)?;
    serve(metrics, pipeline, handler).await
}

/// Starts the Lambda runtime for a streaming route (Lambda response streaming).
/// EMF metrics are flushed when each response starts streaming.
pub async fn serve_streaming<H: StreamHandler>(
    metrics: &'static crate::telemetry::Metrics,
    pipeline: Pipeline,
    handler: H,
) -> Result<(), lambda_http::Error> {
    let shared = Arc::new((pipeline, handler));
    let service = lambda_http::service_fn(move |request: Request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, lambda_http::Error>(shared.0.respond_streaming(&shared.1, request).await) }
    });
    metrics_cloudwatch_embedded::lambda::service::run(
        metrics,
        lambda_http::StreamAdapter::from(service),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use lambda_http::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ORIGIN, VARY};

    fn origin_setting(value: &str) -> Result<Option<HeaderValue>, crate::config::ConfigError> {
        let value = value.to_string();
        allowed_origin(&Settings::new(move |name| {
            (name == ALLOWED_ORIGIN_SETTING).then(|| value.clone())
        }))
    }

    #[test]
    fn the_allowed_origin_is_one_https_origin_or_a_loopback_one() {
        assert_eq!(origin_setting("").unwrap(), None);
        for good in [
            "https://console.example.com",
            "https://console.example.com:8443",
            "http://127.0.0.1:5173",
        ] {
            assert_eq!(origin_setting(good).unwrap().unwrap(), good, "{good}");
        }
        for bad in [
            "*",
            "console.example.com",
            "http://console.example.com",
            "https://console.example.com/",
            "https://console.example.com/app",
            "https://a.example, https://b.example",
        ] {
            assert!(origin_setting(bad).is_err(), "{bad}");
        }
    }

    async fn health_from(pipeline: &Pipeline, origin: Option<&str>) -> Response<Body> {
        let mut request = lambda_http::http::Request::builder()
            .method("GET")
            .uri("/api/v1/health");
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        pipeline
            .respond(
                &crate::health::LivenessApi,
                request.body(Body::Empty).unwrap(),
            )
            .await
    }

    #[tokio::test]
    async fn only_the_console_s_origin_may_read_answers() {
        let console = "https://console.example.com";
        let pipeline = Pipeline::open().with_allowed_origin(origin_setting(console).unwrap());
        let allowed = health_from(&pipeline, Some(console)).await;
        assert_eq!(allowed.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], console);
        assert!(
            allowed.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("X-Next-Cursor")
        );
        assert_eq!(allowed.headers()[VARY], "Origin");
        for other in [Some("https://evil.example"), None] {
            let refused = health_from(&pipeline, other).await;
            assert!(
                refused.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
                "{other:?}"
            );
            assert_eq!(refused.headers()[VARY], "Origin");
        }
        let nobody = health_from(&Pipeline::open(), Some(console)).await;
        assert!(nobody.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
}
