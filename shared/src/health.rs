//! `GET /api/v1/health` (liveness, no dependencies) and
//! `GET /api/v1/health/ready` (readiness: DynamoDB and SQS answer in time).
//! Neither needs a token: load balancers and uptime checks call them. Neither
//! says more than `ok` or `unavailable` per dependency.

use crate::http::problem::{ApiError, Check, Checks, Problem, problem_response, problem_type};
use crate::http::{ApiHandler, RequestContext, json_response};
use crate::queue::TaskQueue;
use crate::routes::{self, Route};
use crate::tasks::TaskStore;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::time::{Duration, Instant};

/// `GET /api/v1/health`: always `{"status": "ok"}` while the function runs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// `GET /api/v1/health/ready` when every dependency answered in time.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ok`.
    pub status: &'static str,
    pub checks: Checks,
}

/// The problem slug of readiness's `503`.
pub const NOT_READY: &str = "not-ready";

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
        json_response(StatusCode::OK, &Health { status: "ok" })
    }
}

pub struct ReadinessApi {
    pub store: TaskStore,
    pub queue: TaskQueue,
    /// Each check must answer within this time.
    pub timeout: Duration,
}

async fn check<F, E>(timeout: Duration, probe: F) -> Check
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
    Check {
        status,
        latency_ms: started.elapsed().as_millis() as u64,
    }
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
        let ready = dynamodb.status == "ok" && sqs.status == "ok";
        let checks = Checks { dynamodb, sqs };
        if ready {
            return json_response(
                StatusCode::OK,
                &Readiness {
                    status: "ok",
                    checks,
                },
            );
        }
        let body = Problem {
            kind: problem_type(NOT_READY),
            title: "Not ready",
            status: 503,
            detail: "a dependency is unavailable".into(),
            instance: request.raw_http_path().to_string(),
            request_id: request_id.to_string(),
            errors: None,
            current_status: None,
            checks: Some(checks),
        };
        Ok(problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &body,
            vec![(header::RETRY_AFTER, "5".to_string())],
            request_id,
        ))
    }
}
