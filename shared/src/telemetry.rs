//! Logs and metrics, set up once per cold start.
//!
//! Logs are JSON lines on stdout carrying the Lambda request id (from the
//! runtime's invoke span). Metrics go through the `metrics` facade into
//! CloudWatch Embedded Metric Format, flushed after every invocation by the
//! runtime layer. Metric names are the Prometheus names the exporter serves,
//! so one name holds from code to dashboard.

use crate::routes::Route;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use std::time::Duration;

pub use metrics_cloudwatch_embedded::Collector as Metrics;

pub const NAMESPACE_DEFAULT: &str = "NeuraForge";

pub mod names {
    pub const COLD_STARTS: &str = "neuraforge_lambda_cold_starts_total";
    pub const HTTP_REQUESTS: &str = "neuraforge_http_requests_total";
    pub const HTTP_REQUEST_DURATION: &str = "neuraforge_http_request_duration_seconds";
    pub const TASKS_SUBMITTED: &str = "neuraforge_tasks_submitted_total";
    /// An accepted task under its request's labels (route, method, status), so it rides in
    /// the request's one EMF document; the exporter serves it as [`TASKS_SUBMITTED`].
    pub const TASKS_ACCEPTED: &str = "neuraforge_tasks_accepted_total";
    pub const TASKS_FINISHED: &str = "neuraforge_tasks_finished_total";
    pub const TASK_LATENCY: &str = "neuraforge_task_latency_seconds";
    pub const TASK_LATENCY_BY_STATUS: &str = "neuraforge_task_latency_by_status_seconds";
    pub const TASK_MESSAGES: &str = "neuraforge_task_messages_total";
    pub const WORKER_BATCH_DURATION: &str = "neuraforge_worker_batch_duration_seconds";
    /// Stream batches the task enqueuer handed back to be retried (a send failed).
    pub const ENQUEUE_RETRIED: &str = "neuraforge_enqueue_retried_total";
    pub const RATE_LIMITED: &str = "neuraforge_rate_limited_total";
    pub const AUTH_FAILURES: &str = "neuraforge_auth_failures_total";
    pub const AUDIT_DENIALS_UNRECORDED: &str =
        "neuraforge_audit_anonymous_denials_unrecorded_total";
    pub const RATE_LIMITER_ERRORS: &str = "neuraforge_rate_limiter_errors_total";
    pub const GUARDRAIL_DECISIONS: &str = "neuraforge_guardrail_decision_total";
    /// `allow` decisions, without labels (see `orchestrator::guardrails`).
    pub const GUARDRAIL_ALLOWED: &str = "neuraforge_guardrail_allowed_total";
    pub const TOOL_USAGE: &str = "neuraforge_agent_tool_usage_total";
    /// v1's name and labels: failures of a tool call, by kind (`failure_type`) and whether
    /// the tool itself reported it (`canonical`).
    pub const TOOL_FAILURES: &str = "neuraforge_agent_tool_failure_total";
    pub const NEGOTIATION_ROUNDS: &str = "neuraforge_negotiation_rounds";
    /// v1's meaning: the consensus score in [0, 1] (the leader's share of the votes).
    pub const NEGOTIATION_CONSENSUS: &str = "neuraforge_negotiation_consensus";
    /// 1 when the negotiation reached consensus, else 0 (this was the meaning of
    /// `neuraforge_negotiation_consensus` here before v1's came back).
    pub const NEGOTIATION_CONSENSUS_REACHED: &str = "neuraforge_negotiation_consensus_reached";
    pub const NEGOTIATION_DURATION: &str = "neuraforge_negotiation_duration_seconds";
    /// v1's meta-agent series: final rounds with dissenters, by severity.
    pub const META_AGENT_DISPUTES: &str = "neuraforge_meta_agent_disputes_total";
    /// v1's meta-agent series: negotiations handed to a person, by action.
    pub const META_AGENT_OVERRIDES: &str = "neuraforge_meta_agent_overrides_total";
    pub const REVIEW_TICKETS: &str = "neuraforge_review_tickets";
    pub const REVIEW_TICKETS_OPEN: &str = "neuraforge_review_tickets_open";
    pub const REVIEW_OLDEST_AGE: &str = "neuraforge_review_ticket_oldest_age_seconds";
    pub const REVIEW_TICKETS_BY_REVIEWER: &str = "neuraforge_review_tickets_by_reviewer";
    pub const REVIEW_TICKETS_BY_AGE: &str = "neuraforge_review_tickets_by_age";
    pub const REVIEW_DECISIONS: &str = "neuraforge_review_decisions_total";
    pub const REVIEW_TIME_TO_ASSIGN: &str = "neuraforge_review_time_to_assign_seconds";
    pub const REVIEW_TIME_TO_RESOLVE: &str = "neuraforge_review_time_to_resolve_seconds";
    pub const QUEUE_MESSAGES: &str = "neuraforge_queue_messages";
    pub const QUEUE_DEAD_LETTER_MESSAGES: &str = "neuraforge_queue_dead_letter_messages";
    /// Written by the load generator (`infra/load/locustfile.py`), not by a function:
    /// the users of a load-test run while it lasts, so dashboards show when one happened.
    pub const LOAD_TEST_USERS: &str = "neuraforge_load_test_users";

    /// Series the functions do not send: the exporter serves them from what they do send
    /// (`from:` in `infra/exporter/exporter.yaml`). The request count is the duration
    /// histogram's count (one value per request), so a request's EMF document holds one
    /// metric; the rest are v1's.
    pub const DERIVED: &[&str] = &[
        HTTP_REQUESTS,
        TASKS_SUBMITTED,
        "neuraforge_orchestrator_runs_total",
        "neuraforge_orchestrator_run_latency_seconds",
        "neuraforge_orchestrator_escalations_total",
        "neuraforge_guardrail_decisions_total",
        "neuraforge_meta_agent_resolution_latency_seconds",
        "neuraforge_meta_agent_confidence",
    ];

    /// v1's series that Prometheus records (`infra/prometheus/rules/v1-compat.yml`): they
    /// need the sum over every function and exporter replica.
    pub const V1_RECORDED: &[&str] = &[
        "neuraforge_orchestrator_runs_active",
        "neuraforge_orchestrator_sla_events_total",
        "neuraforge_orchestrator_success_rate",
    ];

    /// Every name above: the exporter's catalogue and docs/metrics.md are checked against it.
    pub const ALL: &[&str] = &[
        COLD_STARTS,
        HTTP_REQUEST_DURATION,
        TASKS_ACCEPTED,
        TASKS_FINISHED,
        TASK_LATENCY,
        TASK_LATENCY_BY_STATUS,
        TASK_MESSAGES,
        WORKER_BATCH_DURATION,
        ENQUEUE_RETRIED,
        RATE_LIMITED,
        RATE_LIMITER_ERRORS,
        AUTH_FAILURES,
        AUDIT_DENIALS_UNRECORDED,
        GUARDRAIL_DECISIONS,
        GUARDRAIL_ALLOWED,
        TOOL_USAGE,
        TOOL_FAILURES,
        NEGOTIATION_ROUNDS,
        NEGOTIATION_CONSENSUS,
        NEGOTIATION_CONSENSUS_REACHED,
        NEGOTIATION_DURATION,
        META_AGENT_DISPUTES,
        META_AGENT_OVERRIDES,
        REVIEW_TICKETS,
        REVIEW_TICKETS_OPEN,
        REVIEW_OLDEST_AGE,
        REVIEW_TICKETS_BY_REVIEWER,
        REVIEW_TICKETS_BY_AGE,
        REVIEW_DECISIONS,
        REVIEW_TIME_TO_ASSIGN,
        REVIEW_TIME_TO_RESOLVE,
        QUEUE_MESSAGES,
        QUEUE_DEAD_LETTER_MESSAGES,
        LOAD_TEST_USERS,
    ];
}

/// Sets up JSON logging and the EMF recorder. Call once, first thing in `main`.
///
/// `function` is the binary name; it becomes the `function` dimension of every metric.
/// EMF documents carry no request or trace id: the log lines of the invocation do, and
/// repeating them on every document only adds log bytes.
pub fn init(function: &'static str) -> &'static Metrics {
    init_logging();
    init_metrics(function)
}

/// The EMF recorder alone (the cost meter sets up logging its own way).
pub fn init_metrics(function: &'static str) -> &'static Metrics {
    let _ = FUNCTION.set(function);
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace())
        .with_dimension("function", function)
        .lambda_cold_start_metric(names::COLD_STARTS)
        .init()
        .expect("the metrics recorder is installed once per process");
    describe();
    metrics
}

fn namespace() -> String {
    std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| NAMESPACE_DEFAULT.to_string())
}

/// The function [`init`] was given (the `function` dimension).
static FUNCTION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// One gauge reading of a scheduled job.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Reading {
    pub fn new(name: &'static str, labels: &[(&'static str, &str)], value: f64) -> Self {
        Self {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        }
    }
}

/// Gauge readings as EMF lines: one document per label set, each holding every reading
/// of that set. Written directly rather than through the recorder, which would repeat a
/// gauge on every later flush of the environment: a quiet job sends nothing at all.
pub fn emf_gauges(function: &str, readings: &[Reading], timestamp_millis: i64) -> String {
    use serde_json::{Map, Value, json};
    let mut documents: std::collections::BTreeMap<Vec<(&str, &str)>, Vec<&Reading>> =
        Default::default();
    for r in readings {
        let key = r.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        documents.entry(key).or_default().push(r);
    }
    let mut out = String::new();
    for (labels, readings) in documents {
        let mut dimensions = vec!["function"];
        let mut doc = Map::new();
        doc.insert("function".into(), json!(function));
        for (k, v) in &labels {
            dimensions.push(k);
            doc.insert((*k).into(), json!(v));
        }
        let mut metrics = Vec::new();
        for r in &readings {
            metrics.push(json!({ "Name": r.name }));
            doc.insert(r.name.into(), json!(r.value));
        }
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_millis,
                "CloudWatchMetrics": [{
                    "Namespace": namespace(),
                    "Dimensions": [dimensions],
                    "Metrics": metrics,
                }],
            }),
        );
        out.push_str(&Value::Object(doc).to_string());
        out.push('\n');
    }
    out
}

/// Writes gauge readings to stdout as EMF (see [`emf_gauges`]).
pub fn report_gauges(readings: &[Reading]) {
    use std::io::Write;
    let function = FUNCTION.get().copied().unwrap_or("unknown");
    let lines = emf_gauges(function, readings, crate::time::now_millis());
    let _ = std::io::stdout().lock().write_all(lines.as_bytes());
}

/// When a scheduled job's gauges are worth sending: while they show something, once more
/// after they fall quiet (zeros that replace the last values, which Prometheus would
/// otherwise hold until the exporter's gauge TTL), and on an environment's first run (it
/// cannot know what the last one sent). A quiet system then sends nothing: no log lines,
/// no CloudWatch custom metrics. Alert rules read an absent gauge as zero (see
/// `docs/metrics.md`).
#[derive(Debug, Default)]
pub struct QuietGauges {
    quiet: std::sync::atomic::AtomicBool,
}

impl QuietGauges {
    /// Whether to send this run's readings, given whether any of them is non-zero.
    pub fn report(&self, busy: bool) -> bool {
        let was_quiet = self.quiet.swap(!busy, std::sync::atomic::Ordering::Relaxed);
        busy || !was_quiet
    }
}

/// JSON logs on stdout. The level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, else `info`.
pub fn init_logging() {
    init_logging_to(std::io::stdout);
}

/// JSON logs written by `writer` instead of stdout (the cost meter counts their bytes).
pub fn init_logging_to<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(json_logs(writer));
}

/// The functions' log format: one JSON object per line, the event's fields at the top
/// level and the current span's fields under `span` (the worker's `span.task_id`,
/// `span.receive_count`, which the runbooks' queries filter on).
pub fn json_logs<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_ascii_lowercase();
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

fn describe() {
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Handler latency by route, method and status"
    );
    describe_counter!(
        names::TASKS_ACCEPTED,
        Unit::Count,
        "Tasks accepted, by the submission's route"
    );
    describe_counter!(
        names::TASKS_FINISHED,
        Unit::Count,
        "Tasks that reached a terminal status"
    );
    describe_histogram!(
        names::TASK_LATENCY,
        Unit::Seconds,
        "Submission to terminal status"
    );
    describe_counter!(
        names::TASK_MESSAGES,
        Unit::Count,
        "Task queue messages by outcome"
    );
    describe_histogram!(
        names::WORKER_BATCH_DURATION,
        Unit::Seconds,
        "Worker batch latency"
    );
    describe_counter!(
        names::ENQUEUE_RETRIED,
        Unit::Count,
        "Stream batches the task enqueuer gave back to be retried"
    );
}

/// The labels of a request's metrics. Every metric a request records carries exactly these,
/// so the recorder writes all of them as one EMF document.
fn request_labels(route: &Route, method: &str, status: u16) -> [(&'static str, String); 3] {
    [
        ("route", route.path.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ]
}

/// A request's latency. The exporter counts the values as `neuraforge_http_requests_total`
/// (CloudWatch as the histogram's `SampleCount`).
pub fn record_http_request(route: &Route, method: &str, status: u16, elapsed: Duration) {
    histogram!(
        names::HTTP_REQUEST_DURATION,
        &request_labels(route, method, status)
    )
    .record(elapsed.as_secs_f64());
}

/// A task a submission on `route` accepted (its answer is a `200` POST), in the request's
/// own EMF document.
pub fn record_task_accepted(route: &Route) {
    counter!(names::TASKS_ACCEPTED, &request_labels(route, "POST", 200)).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_gauges_report_while_busy_once_after_and_never_while_steadily_quiet() {
        let gauges = QuietGauges::default();
        let runs = [false, false, true, true, false, false, false, true, false];
        let reported: Vec<bool> = runs.iter().map(|busy| gauges.report(*busy)).collect();
        assert_eq!(
            reported,
            [true, false, true, true, true, false, false, true, true],
            "first run, busy runs, and the first quiet run after them"
        );
    }

    #[test]
    fn gauges_of_one_label_set_share_a_document() {
        let readings = [
            Reading::new(names::REVIEW_TICKETS_OPEN, &[], 3.0),
            Reading::new(names::REVIEW_OLDEST_AGE, &[], 90.5),
            Reading::new(names::REVIEW_TICKETS, &[("status", "open")], 2.0),
        ];
        let lines = emf_gauges("jobs", &readings, 1_000);
        let docs: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 2, "{lines}");
        let bare = &docs[0];
        assert_eq!(bare[names::REVIEW_TICKETS_OPEN], 3.0);
        assert_eq!(bare[names::REVIEW_OLDEST_AGE], 90.5);
        assert_eq!(
            bare["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["function"])
        );
        assert_eq!(docs[1]["status"], "open");
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["function", "status"])
        );
        assert!(!lines.contains("request_id"));
    }
}
