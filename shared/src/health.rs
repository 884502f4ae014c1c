//! `GET /api/v1/health` (liveness, no dependencies) and
//! `GET /api/v1/health/ready` (readiness: DynamoDB and SQS answer in time).
//! Neither needs a token: load balancers and uptime checks call them. Neither
//! says more than `ok` or `unavailable` per dependency.

use crate::http::problem::{ApiError, problem_response};
use crate::http::{ApiHandler, RequestContext, json_response};
use crate::queue::TaskQueue;
use crate::routes::{self, Route};
use crate::tasks::TaskStore;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use std::time::{Duration, Instant};

pub struct LivenessApi;

impl ApiHandler for LivenessApi {
    fn route(&self) -> &'static Route {
        &routes::HEALTH
    }

    async fn handle(
        &self,
        _request: Request,
        _cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    }
}

pub struct ReadinessApi {
    pub store: TaskStore,
    pub queue: TaskQueue,
    /// Each check must answer within this time.
    pub timeout: Duration,
}

async fn check<F, E>(timeout: Duration, probe: F) -> serde_json::Value
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let (status, error) = match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(())) => ("ok", None),
        Ok(Err(err)) => ("unavailable", Some(err.to_string())),
        Err(_) => ("unavailable", Some("timed out".to_string())),
    };
    if let Some(error) = error {
        tracing::warn!(%error, "readiness check failed");
    }
    json!({"status": status, "latency_ms": started.elapsed().as_millis() as u64})
}

impl ApiHandler for ReadinessApi {
    fn route(&self) -> &'static Route {
        &routes::READINESS
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let request_id = cx.request_id.as_str();
        let (dynamodb, sqs) = tokio::join!(
            check(self.timeout, self.store.ping()),
            check(self.timeout, self.queue.ping())
        );
        let ready = dynamodb["status"] == "ok" && sqs["status"] == "ok";
        let checks = json!({"dynamodb": dynamodb, "sqs": sqs});
        if ready {
            return json_response(StatusCode::OK, &json!({"status": "ok", "checks": checks}));
        }
        let body = json!({
            "type": "urn:neuraforge:problem:not-ready",
            "title": "Not ready",
            "status": 503,
            "detail": "a dependency is unavailable",
            "instance": request.raw_http_path(),
            "request_id": request_id,
            "checks": checks,
        });
        Ok(problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            body,
            vec![(header::RETRY_AFTER, "5".to_string())],
            request_id,
        ))
    }
}
