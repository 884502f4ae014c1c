//! The EMF → Prometheus exporter: exact serialization of the seed series, bad
//! input, cardinality caps, a followed file, and the Firehose HTTP endpoint
//! (plain and HTTPS) through the real binary.

use base64::Engine;
use emf_exporter::config::Config;
use emf_exporter::registry::Registry;
use emf_exporter::sources::Follower;
use neuraforge_tests::workspace_root;
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

fn config() -> Config {
    Config::load(&workspace_root().join("infra/exporter/exporter.yaml")).unwrap()
}

fn registry() -> Registry {
    Registry::new(config())
}

/// The lines of one metric family (HELP, TYPE and its series) in a rendering.
fn family(rendered: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in rendered.lines() {
        if line.starts_with("# HELP ") {
            inside = line.split(' ').nth(2) == Some(name);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The value of one exposition line (`name{labels} value`), if present.
fn value(rendered: &str, series: &str) -> Option<f64> {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// What the functions print: one document per label set (metrics_cloudwatch_embedded's shape).
const TASK_LATENCY: &str = r#"{"_aws":{"Timestamp":1795570596923,"CloudWatchMetrics":[{"Namespace":"NeuraForge","Dimensions":[["function","agent_count","entry_point"]],"Metrics":[{"Name":"neuraforge_task_latency_seconds","Unit":"Seconds"}]}]},"function":"task-worker","agent_count":"1","entry_point":"submit_task","request_id":"r1","neuraforge_task_latency_seconds":[0.8,50.0]}"#;
const TASK_LATENCY_SOLO: &str = r#"{"_aws":{"Timestamp":1795570596924,"CloudWatchMetrics":[{"Namespace":"NeuraForge","Dimensions":[["function","agent_count","entry_point"]],"Metrics":[{"Name":"neuraforge_task_latency_seconds","Unit":"Seconds"}]}]},"function":"task-worker","agent_count":"0","entry_point":"submit_task_stream","request_id":"r2","neuraforge_task_latency_seconds":[45.0]}"#;
const GUARDRAIL: &str = r#"{"_aws":{"Timestamp":1795570596923,"CloudWatchMetrics":[{"Namespace":"NeuraForge","Dimensions":[["function","decision","policy_id"]],"Metrics":[{"Name":"neuraforge_guardrail_decision_total","Unit":"Count"}]}]},"function":"task-worker","decision":"review","policy_id":"pii.v1","request_id":"r1","neuraforge_guardrail_decision_total":1}"#;
const GUARDRAIL_REDACT: &str = r#"{"_aws":{"Timestamp":1795570596923,"CloudWatchMetrics":[{"Namespace":"NeuraForge","Dimensions":[["function","decision","policy_id"]],"Metrics":[{"Name":"neuraforge_guardrail_decision_total","Unit":"Count"}]}]},"function":"task-worker","decision":"redact","policy_id":"pii.v1","request_id":"r1","neuraforge_guardrail_decision_total":2}"#;

fn review_tickets(status: &str, count: u32) -> String {
    format!(
        r#"{{"_aws":{{"Timestamp":1795570596923,"CloudWatchMetrics":[{{"Namespace":"NeuraForge","Dimensions":[["function","status"]],"Metrics":[{{"Name":"neuraforge_review_tickets"}}]}}]}},"function":"review-backlog-metrics","status":"{status}","request_id":"r3","neuraforge_review_tickets":{count}.0}}"#
    )
}

const REVIEW_OPEN_AND_AGE: &str = r#"{"_aws":{"Timestamp":1795570596923,"CloudWatchMetrics":[{"Namespace":"NeuraForge","Dimensions":[["function"]],"Metrics":[{"Name":"neuraforge_review_tickets_open"},{"Name":"neuraforge_review_ticket_oldest_age_seconds"}]}]},"function":"review-backlog-metrics","request_id":"r3","neuraforge_review_tickets_open":3.0,"neuraforge_review_ticket_oldest_age_seconds":7260.5}"#;

#[test]
fn the_seed_series_serialize_exactly() {
    let mut r = registry();
    for line in [
        TASK_LATENCY,
        TASK_LATENCY_SOLO,
        GUARDRAIL,
        GUARDRAIL,
        GUARDRAIL_REDACT,
    ] {
        r.ingest_line(line);
    }
    for (status, count) in [
        ("open", 2),
        ("in_review", 1),
        ("unassigned", 2),
        ("open", 1),
    ] {
        r.ingest_line(&review_tickets(status, count));
    }
    r.ingest_line(REVIEW_OPEN_AND_AGE);
    let out = r.render();

    assert_eq!(
        family(&out, "neuraforge_task_latency_seconds"),
        r#"# HELP neuraforge_task_latency_seconds Submission to terminal status, in seconds, by entry point and agent involvement
# TYPE neuraforge_task_latency_seconds histogram
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="0.5"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="1.0"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="2.0"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="5.0"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="10.0"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="30.0"} 0
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="45.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="60.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="120.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="300.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="600.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="0",entry_point="submit_task_stream",function="task-worker",le="+Inf"} 1
neuraforge_task_latency_seconds_sum{agent_count="0",entry_point="submit_task_stream",function="task-worker"} 45
neuraforge_task_latency_seconds_count{agent_count="0",entry_point="submit_task_stream",function="task-worker"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="0.5"} 0
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="1.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="2.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="5.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="10.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="30.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="45.0"} 1
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="60.0"} 2
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="120.0"} 2
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="300.0"} 2
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="600.0"} 2
neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="submit_task",function="task-worker",le="+Inf"} 2
neuraforge_task_latency_seconds_sum{agent_count="1",entry_point="submit_task",function="task-worker"} 50.8
neuraforge_task_latency_seconds_count{agent_count="1",entry_point="submit_task",function="task-worker"} 2
"#
    );
    assert_eq!(
        family(&out, "neuraforge_guardrail_decision_total"),
        r#"# HELP neuraforge_guardrail_decision_total Guardrail decisions by decision and policy (allow by decision alone)
# TYPE neuraforge_guardrail_decision_total counter
neuraforge_guardrail_decision_total{decision="redact",function="task-worker",policy_id="pii.v1"} 2
neuraforge_guardrail_decision_total{decision="review",function="task-worker",policy_id="pii.v1"} 2
"#
    );
    assert_eq!(
        family(&out, "neuraforge_review_tickets"),
        r#"# HELP neuraforge_review_tickets Review tickets by status, including unassigned
# TYPE neuraforge_review_tickets gauge
neuraforge_review_tickets{function="review-backlog-metrics",status="in_review"} 1
neuraforge_review_tickets{function="review-backlog-metrics",status="open"} 1
neuraforge_review_tickets{function="review-backlog-metrics",status="unassigned"} 2
"#
    );
    assert_eq!(
        family(&out, "neuraforge_review_tickets_open"),
        "# HELP neuraforge_review_tickets_open Review tickets waiting for a decision (open or in review)\n\
         # TYPE neuraforge_review_tickets_open gauge\n\
         neuraforge_review_tickets_open{function=\"review-backlog-metrics\"} 3\n"
    );
    assert_eq!(
        family(&out, "neuraforge_review_ticket_oldest_age_seconds"),
        "# HELP neuraforge_review_ticket_oldest_age_seconds Age of the oldest review ticket waiting for a decision, in seconds\n\
         # TYPE neuraforge_review_ticket_oldest_age_seconds gauge\n\
         neuraforge_review_ticket_oldest_age_seconds{function=\"review-backlog-metrics\"} 7260.5\n"
    );
    assert!(
        !out.contains("request_id"),
        "properties never become labels"
    );
}

#[test]
fn the_catalogue_lists_every_metric_the_functions_emit_and_the_docs_describe_them() {
    let config = config();
    // Every metric is one the functions send, or one served from those.
    let names = &shared::telemetry::names::ALL;
    let v1_derived = &shared::telemetry::names::DERIVED;
    let catalogued: BTreeSet<&str> = config.metrics.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = names.iter().chain(v1_derived.iter()).copied().collect();
    assert_eq!(catalogued, known);
    for name in v1_derived.iter() {
        assert!(
            !config.metrics[*name].from.is_empty(),
            "{name} comes from nowhere"
        );
        assert!(!names.contains(name), "{name} is sent and derived");
    }
    let docs = std::fs::read_to_string(workspace_root().join("docs/metrics.md")).unwrap();
    let recorded = shared::telemetry::names::V1_RECORDED;
    for name in names.iter().chain(v1_derived.iter()).chain(recorded) {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/metrics.md lacks {name}"
        );
    }
    // Every SLO threshold is a bucket edge of the task latency histogram.
    let edges = config.buckets_of("neuraforge_task_latency_seconds");
    for slo in [45.0, 60.0] {
        assert!(edges.contains(&slo), "no bucket edge at {slo} s");
    }
}

fn doc(metrics: &[(&str, &str)], dims: &str, fields: &str) -> String {
    let names: Vec<String> = metrics
        .iter()
        .map(|(n, _)| format!(r#"{{"Name":"{n}"}}"#))
        .collect();
    let values: Vec<String> = metrics
        .iter()
        .map(|(n, v)| format!(r#""{n}":{v}"#))
        .collect();
    format!(
        r#"{{"_aws":{{"Timestamp":1,"CloudWatchMetrics":[{{"Namespace":"NeuraForge","Dimensions":[[{dims}]],"Metrics":[{}]}}]}},{fields}{}}}"#,
        names.join(","),
        values.join(",")
    )
}

#[test]
fn bad_input_is_counted_and_skipped_and_the_valid_part_of_a_document_is_kept() {
    let mut r = registry();
    let f = r#""function":"f","#;
    let hundred: Vec<String> = (0..100).map(|i| format!("{i}.0")).collect();
    let hundred_one: Vec<String> = (0..101).map(|i| format!("{i}.0")).collect();
    let cases: Vec<(String, &str)> = vec![
        (
            doc(
                &[("neuraforge_enqueue_retried_total", "1")],
                r#""function""#,
                f,
            )[..60]
                .to_string(),
            "invalid_json",
        ),
        (r#"{"_aws":{"Timestamp":1},"x":1}"#.to_string(), "not_emf"),
        (
            doc(
                &[("neuraforge_enqueue_retried_total", "[1,2]")],
                r#""function""#,
                f,
            ),
            "wrong_type",
        ),
        (
            doc(
                &[("neuraforge_review_tickets_open", "\"three\"")],
                r#""function""#,
                f,
            ),
            "non_numeric",
        ),
        (
            doc(
                &[("neuraforge_review_tickets_open", "null")],
                r#""function""#,
                f,
            ),
            "non_numeric",
        ),
        (
            doc(
                &[("neuraforge_enqueue_retried_total", "-1")],
                r#""function""#,
                f,
            ),
            "counter_decrease",
        ),
        (
            doc(
                &[(
                    "neuraforge_worker_batch_duration_seconds",
                    &format!("[{}]", hundred_one.join(",")),
                )],
                r#""function""#,
                f,
            ),
            "too_many_values",
        ),
        (
            doc(
                &[("neuraforge_enqueue_retried_total", "1")],
                r#""function","route""#,
                f,
            ),
            "missing_dimension",
        ),
        (
            doc(&[("bad name!", "1")], r#""function""#, f),
            "bad_directive",
        ),
    ];
    for (line, reason) in &cases {
        let before = value(
            &r.render(),
            &format!("neuraforge_exporter_rejected_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0);
        r.ingest_line(line);
        let after = value(
            &r.render(),
            &format!("neuraforge_exporter_rejected_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0);
        assert_eq!(after, before + 1.0, "{reason}: {line}");
    }
    // None of them made a series.
    let out = r.render();
    assert!(!out.contains("neuraforge_enqueue_retried_total{"), "{out}");

    // A good metric beside a bad one in the same document is kept.
    r.ingest_line(&doc(
        &[
            ("neuraforge_enqueue_retried_total", "3"),
            ("neuraforge_review_tickets_open", "\"x\""),
        ],
        r#""function""#,
        f,
    ));
    // A histogram of exactly 100 values is fine.
    r.ingest_line(&doc(
        &[(
            "neuraforge_worker_batch_duration_seconds",
            &format!("[{}]", hundred.join(",")),
        )],
        r#""function""#,
        f,
    ));
    // A label value with quotes, a backslash and a newline is escaped, not refused.
    r.ingest_line(&doc(
        &[("neuraforge_rate_limited_total", "1")],
        r#""function","action""#,
        r#""function":"f","action":"say \"hi\"\\\nbye","#,
    ));
    // Plain log lines (the functions' JSON logs, cargo-lambda's text) are not errors.
    r.ingest_line(r#"{"timestamp":"2026-11-25T08:17:21Z","level":"INFO","message":"polling SQS"}"#);
    r.ingest_line("INFO invoking function");
    let out = r.render();
    assert_eq!(
        value(&out, r#"neuraforge_enqueue_retried_total{function="f"}"#),
        Some(3.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_worker_batch_duration_seconds_count{function="f"}"#
        ),
        Some(100.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_worker_batch_duration_seconds_bucket{function="f",le="+Inf"}"#
        ),
        Some(100.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_worker_batch_duration_seconds_sum{function="f"}"#
        ),
        Some(4950.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_rate_limited_total{action="say \"hi\"\\\nbye",function="f"}"#
        ),
        Some(1.0),
        "{out}"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_documents_total{outcome="partial"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_documents_total{outcome="not_emf"}"#
        ),
        Some(2.0),
        "the two log lines; `{{\"_aws\":{{…}}}}` without directives was a rejected document"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_rejected_total{reason="non_numeric"}"#
        ),
        Some(3.0)
    );
}

#[test]
fn the_request_count_is_the_number_of_latency_values_the_functions_send() {
    let mut r = registry();
    let fields =
        r#""function":"get-task","route":"/api/v1/tasks/{task_id}","method":"GET","status":"200","#;
    let dims = r#""function","route","method","status""#;
    let latency = "neuraforge_http_request_duration_seconds";
    r.ingest_line(&doc(&[(latency, "[0.02]")], dims, fields));
    r.ingest_line(&doc(&[(latency, "[0.03, 0.2, 0.04]")], dims, fields));
    let out = r.render();
    let labels =
        r#"{function="get-task",method="GET",route="/api/v1/tasks/{task_id}",status="200"}"#;
    assert_eq!(
        value(&out, &format!("neuraforge_http_requests_total{labels}")),
        Some(4.0)
    );
    assert_eq!(value(&out, &format!("{latency}_count{labels}")), Some(4.0));
}

#[test]
fn v1_series_are_served_from_the_values_the_functions_send() {
    let mut r = registry();
    let send =
        |r: &mut Registry, metric: &str, value: &str, function: &str, labels: &[(&str, &str)]| {
            let dims: Vec<String> = std::iter::once("\"function\"".to_string())
                .chain(labels.iter().map(|(k, _)| format!("\"{k}\"")))
                .collect();
            let fields: String = std::iter::once(format!(r#""function":"{function}","#))
                .chain(labels.iter().map(|(k, v)| format!(r#""{k}":"{v}","#)))
                .collect();
            r.ingest_line(&doc(&[(metric, value)], &dims.join(","), &fields));
        };
    // Accepted tasks arrive under their request's labels, in the request's document.
    let accepted = "neuraforge_tasks_accepted_total";
    for (function, route, count) in [
        ("submit-task", "/api/v1/submit_task", "1"),
        ("submit-task-stream", "/api/v1/submit_task/stream", "2"),
    ] {
        let labels = [("route", route), ("method", "POST"), ("status", "200")];
        send(&mut r, accepted, count, function, &labels);
    }
    for (status, latency) in [
        ("completed", "[1.5]"),
        ("awaiting_review", "[20]"),
        ("failed", "[700]"),
    ] {
        let labels = [("entry_point", "submit_task"), ("status", status)];
        send(
            &mut r,
            "neuraforge_tasks_finished_total",
            "1",
            "task-worker",
            &labels,
        );
        send(
            &mut r,
            "neuraforge_task_latency_by_status_seconds",
            latency,
            "task-worker",
            &labels,
        );
    }
    let decision = "neuraforge_guardrail_decision_total";
    send(
        &mut r,
        decision,
        "5",
        "task-worker",
        &[("decision", "allow")],
    );
    for (d, policy) in [
        ("review", "pii.v1"),
        ("escalate", "risk_threshold.v1"),
        ("redact", "pii.v1"),
    ] {
        send(
            &mut r,
            decision,
            "1",
            "task-worker",
            &[("decision", d), ("policy_id", policy)],
        );
    }
    let strategy = [("strategy", "critique_vote")];
    send(
        &mut r,
        "neuraforge_negotiation_duration_seconds",
        "[0.002]",
        "task-worker",
        &strategy,
    );
    send(
        &mut r,
        "neuraforge_negotiation_consensus",
        "[1.0, 0.667]",
        "task-worker",
        &strategy,
    );
    let out = r.render();
    let expect = [
        // Our own count by entry point, from the accepted tasks' routes.
        (
            r#"neuraforge_tasks_submitted_total{entry_point="submit_task",function="submit-task"}"#,
            1.0,
        ),
        (
            r#"neuraforge_tasks_submitted_total{entry_point="submit_task_stream",function="submit-task-stream"}"#,
            2.0,
        ),
        // Started when accepted, whichever route; a run sent to review completed (v1's meaning).
        (
            r#"neuraforge_orchestrator_runs_total{entry_point="api",function="submit-task",status="started"}"#,
            1.0,
        ),
        (
            r#"neuraforge_orchestrator_runs_total{entry_point="api",function="submit-task-stream",status="started"}"#,
            2.0,
        ),
        (
            r#"neuraforge_orchestrator_runs_total{entry_point="api",function="task-worker",status="completed"}"#,
            2.0,
        ),
        (
            r#"neuraforge_orchestrator_runs_total{entry_point="api",function="task-worker",status="failed"}"#,
            1.0,
        ),
        // The status label is dropped: one series, v1's buckets (900 s is one of them).
        (
            r#"neuraforge_orchestrator_run_latency_seconds_count{entry_point="api",function="task-worker"}"#,
            3.0,
        ),
        (
            r#"neuraforge_orchestrator_run_latency_seconds_bucket{entry_point="api",function="task-worker",le="900.0"}"#,
            3.0,
        ),
        (
            r#"neuraforge_orchestrator_run_latency_seconds_bucket{entry_point="api",function="task-worker",le="600.0"}"#,
            2.0,
        ),
        // Both names, allow included; escalations are escalate and review alone, by policy.
        (
            r#"neuraforge_guardrail_decisions_total{decision="allow",function="task-worker"}"#,
            5.0,
        ),
        (
            r#"neuraforge_guardrail_decisions_total{decision="redact",function="task-worker",policy_id="pii.v1"}"#,
            1.0,
        ),
        (
            r#"neuraforge_orchestrator_escalations_total{function="task-worker",policy_id="pii.v1"}"#,
            1.0,
        ),
        (
            r#"neuraforge_orchestrator_escalations_total{function="task-worker",policy_id="risk_threshold.v1"}"#,
            1.0,
        ),
        // The strategy becomes v1's mode; the confidence gauge keeps the last score.
        (
            r#"neuraforge_meta_agent_resolution_latency_seconds_bucket{function="task-worker",mode="critique_vote",le="0.1"}"#,
            1.0,
        ),
        (
            r#"neuraforge_meta_agent_confidence{function="task-worker"}"#,
            0.667,
        ),
    ];
    for (series, expected) in expect {
        assert_eq!(value(&out, series), Some(expected), "{series}\n{out}");
    }
    assert_eq!(
        family(&out, "neuraforge_orchestrator_escalations_total")
            .lines()
            .count(),
        4,
        "no escalation series for redact or allow:\n{out}"
    );
    // The functions' own series are served as before.
    assert_eq!(
        value(
            &out,
            r#"neuraforge_tasks_finished_total{entry_point="submit_task",function="task-worker",status="awaiting_review"}"#
        ),
        Some(1.0)
    );
    assert!(!out.contains("neuraforge_exporter_rejected_total{reason=\"wrong_type\"} 1"));
}

#[test]
fn a_derivation_from_a_metric_the_functions_do_not_send_is_refused() {
    let yaml = "default_buckets: [1]\nmetrics:\n  v1_total:\n    type: counter\n    help: x\n    from:\n      - metric: nothing_total\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(
        err.contains("v1_total: derived from nothing_total"),
        "{err}"
    );
}

#[test]
fn counters_add_up_deltas_and_gauges_keep_the_last_value() {
    let mut r = registry();
    let f = r#""function":"f","#;
    for delta in ["2", "0", "5"] {
        r.ingest_line(&doc(
            &[("neuraforge_enqueue_retried_total", delta)],
            r#""function""#,
            f,
        ));
    }
    for v in ["7", "4"] {
        r.ingest_line(&doc(
            &[("neuraforge_review_tickets_open", v)],
            r#""function""#,
            f,
        ));
    }
    // A metric the catalogue does not list is typed by its shape.
    r.ingest_line(&doc(&[("custom_thing_total", "2")], r#""function""#, f));
    r.ingest_line(&doc(&[("custom_latency", "[0.2, 3]")], r#""function""#, f));
    let out = r.render();
    assert_eq!(
        value(&out, r#"neuraforge_enqueue_retried_total{function="f"}"#),
        Some(7.0)
    );
    assert_eq!(
        value(&out, r#"neuraforge_review_tickets_open{function="f"}"#),
        Some(4.0)
    );
    assert!(out.contains("# TYPE custom_thing_total counter"));
    assert!(out.contains("# TYPE custom_latency histogram"));
    assert_eq!(
        value(&out, r#"custom_latency_bucket{function="f",le="0.25"}"#),
        Some(1.0)
    );
}

#[test]
fn a_gauge_nobody_refreshes_expires_and_frees_its_place() {
    let mut config = config();
    config.limits.gauge_ttl_seconds = 0;
    config.limits.max_series_total = 1;
    let mut r = Registry::new(config);
    let gauge = |who: &str| {
        doc(
            &[("neuraforge_review_tickets_by_reviewer", "1")],
            r#""function","reviewer""#,
            &format!(r#""function":"f","reviewer":"{who}","#),
        )
    };
    r.ingest_line(&gauge("rita"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(
        !r.render().contains("reviewer=\"rita\""),
        "expired after the TTL"
    );
    // Its place is free for a new series even at the total cap.
    r.ingest_line(&gauge("sam"));
    let out = r.render();
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_rejected_total{reason="series_limit"}"#
        ),
        Some(0.0)
    );
    assert_eq!(value(&out, "neuraforge_exporter_series"), Some(1.0));
}

#[test]
fn new_series_over_the_caps_are_dropped_and_counted() {
    let mut config = config();
    config.limits.max_series_per_metric = 3;
    config.limits.max_series_total = 4;
    let mut r = Registry::new(config);
    for i in 0..5 {
        r.ingest_line(&doc(
            &[("neuraforge_rate_limited_total", "1")],
            r#""function","action""#,
            &format!(r#""function":"f","action":"a{i}","#),
        ));
    }
    for i in 0..3 {
        r.ingest_line(&doc(
            &[("neuraforge_enqueue_retried_total", "1")],
            r#""function""#,
            &format!(r#""function":"g{i}","#),
        ));
    }
    // Existing series still count.
    r.ingest_line(&doc(
        &[("neuraforge_rate_limited_total", "1")],
        r#""function","action""#,
        r#""function":"f","action":"a0","#,
    ));
    let out = r.render();
    assert_eq!(
        out.matches("neuraforge_rate_limited_total{").count(),
        3,
        "per-metric cap"
    );
    assert_eq!(
        out.matches("neuraforge_enqueue_retried_total{").count(),
        1,
        "total cap"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_rate_limited_total{action="a0",function="f"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_rejected_total{reason="series_limit"}"#
        ),
        Some(4.0)
    );
    assert_eq!(value(&out, "neuraforge_exporter_series"), Some(4.0));
}

#[test]
fn a_followed_file_is_read_line_by_line_through_truncation_and_rotation() {
    let dir = std::env::temp_dir().join(format!("follow-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("functions.log");
    std::fs::write(&path, "old line\n").unwrap();
    let mut follower = Follower::new(&path, false);
    let mut seen = Vec::new();
    let poll = |f: &mut Follower| {
        let mut lines = Vec::new();
        f.poll(|l| lines.push(l.to_string())).unwrap();
        lines
    };
    assert!(
        poll(&mut follower).is_empty(),
        "what was there before is skipped"
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(file, "one\ntw").unwrap();
    seen.extend(poll(&mut follower));
    writeln!(file, "o").unwrap();
    seen.extend(poll(&mut follower));
    assert_eq!(seen, vec!["one", "two"], "a partial line waits for its end");
    std::fs::write(&path, "truncated\n").unwrap();
    assert_eq!(poll(&mut follower), vec!["truncated"]);
    std::fs::rename(&path, dir.join("functions.log.1")).unwrap();
    std::fs::write(&path, "rotated\n").unwrap();
    assert_eq!(poll(&mut follower), vec!["rotated"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The exporter binary, serving on a free port; killed on drop.
struct Exporter {
    child: Child,
    /// The public listener: /firehose.
    address: String,
    /// The internal listener: /metrics.
    metrics_address: String,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACCESS_KEY: &str = "test-access-key-0123456789";

fn start_exporter(extra: &[&str]) -> Exporter {
    let dir = std::env::temp_dir().join(format!("exporter-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("firehose-key");
    std::fs::write(&key_file, ACCESS_KEY).unwrap();
    let mut command = Command::new(workspace_root().join("target/debug/emf-exporter"));
    command.arg("--firehose-access-key-file").arg(&key_file);
    spawn_exporter(command, extra)
}

/// The exporter as ECS runs it: the access key injected into its environment from Secrets Manager.
fn start_exporter_with_key_in_env() -> Exporter {
    let mut command = Command::new(workspace_root().join("target/debug/emf-exporter"));
    command.env("EXPORTER_FIREHOSE_ACCESS_KEY", ACCESS_KEY);
    spawn_exporter(command, &[])
}

fn spawn_exporter(mut command: Command, extra: &[&str]) -> Exporter {
    let mut child = command
        .args([
            "--config",
            "infra/exporter/exporter.yaml",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--stdin",
        ])
        .args(extra)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("target/debug/emf-exporter (cargo build --workspace --bins)");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = |prefix: &str| {
        let mut text = String::new();
        stdout.read_line(&mut text).unwrap();
        text.trim().strip_prefix(prefix).unwrap().to_string()
    };
    let address = line("listening on ");
    let metrics_address = line("metrics on ");
    Exporter {
        child,
        address,
        metrics_address,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A Firehose record: a gzipped CloudWatch Logs batch of these messages, base64.
fn record(messages: &[&str]) -> serde_json::Value {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 1, "message": m}))
        .collect();
    let batch = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/lambda/task-worker", "logStream": "s", "subscriptionFilters": ["emf"], "logEvents": events});
    serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(gzip(batch.to_string().as_bytes()))})
}

#[tokio::test]
async fn firehose_deliveries_are_answered_as_the_protocol_requires() {
    let exporter = start_exporter(&[]);
    let http = reqwest::Client::new();
    let url = format!("http://{}/firehose", exporter.address);
    let metrics = || {
        let http = http.clone();
        let url = format!("http://{}/metrics", exporter.metrics_address);
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // A Lambda JSON-format log line wrapping the EMF document, as CloudWatch Logs may hold it.
    let wrapped = serde_json::json!({"time": "2026-11-25T08:00:00Z", "type": "platform.log", "message": GUARDRAIL}).to_string();
    let delivery = serde_json::json!({
        "requestId": "req-1", "timestamp": 1795570596923i64,
        "records": [
            record(&[TASK_LATENCY, &wrapped, "START RequestId: x Version: $LATEST"]),
            {"data": base64::engine::general_purpose::STANDARD.encode(b"\x1f\x8bnot really gzip")},
            {"data": "%%% not base64"},
        ]
    });

    let wrong_key = http
        .post(&url)
        .header("X-Amz-Firehose-Access-Key", "wrong")
        .header("X-Amz-Firehose-Request-Id", "req-1")
        .body(delivery.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    let body: serde_json::Value = wrong_key.json().await.unwrap();
    assert_eq!(body["requestId"], "req-1");
    assert!(body["errorMessage"].is_string() && body["timestamp"].is_i64());
    assert!(
        !metrics()
            .await
            .contains("neuraforge_task_latency_seconds_count"),
        "nothing taken"
    );

    for _ in 0..2 {
        // The second is Firehose retrying the same request: answered, not counted twice.
        let ok = http
            .post(&url)
            .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
            .header("X-Amz-Firehose-Request-Id", "req-1")
            .header("Content-Type", "application/json")
            .body(delivery.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = ok.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"requestId": "req-1", "timestamp": 1795570596923i64})
        );
    }
    // A gzipped request body (Content-Encoding: gzip) is taken too.
    let second = serde_json::json!({"requestId": "req-2", "timestamp": 2, "records": [record(&[GUARDRAIL])]});
    let ok = http
        .post(&url)
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .header("Content-Encoding", "gzip")
        .body(gzip(second.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let not_a_delivery = http
        .post(&url)
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .body("{\"records\": 5")
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_delivery.status(), 400);
    assert!(not_a_delivery.json::<serde_json::Value>().await.unwrap()["errorMessage"].is_string());

    let out = metrics().await;
    assert_eq!(
        value(
            &out,
            r#"neuraforge_task_latency_seconds_count{agent_count="1",entry_point="submit_task",function="task-worker"}"#
        ),
        Some(2.0),
        "{out}"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_guardrail_decision_total{decision="review",function="task-worker",policy_id="pii.v1"}"#
        ),
        Some(2.0),
        "{out}"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_rejected_total{reason="invalid_json"}"#
        ),
        Some(2.0),
        "the corrupt records"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_firehose_requests_total{outcome="duplicate"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_firehose_requests_total{outcome="unauthorized"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_firehose_requests_total{outcome="bad_request"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn standard_input_feeds_the_metrics_endpoint() {
    let mut exporter = start_exporter(&[]);
    let stdin = exporter.child.stdin.as_mut().unwrap();
    writeln!(stdin, "{GUARDRAIL}\nnot json at all\n{GUARDRAIL_REDACT}").unwrap();
    stdin.flush().unwrap();
    let url = format!("http://{}/metrics", exporter.metrics_address);
    let mut out = String::new();
    for _ in 0..50 {
        out = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if out.contains("decision=\"redact\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(
            &out,
            r#"neuraforge_guardrail_decision_total{decision="redact",function="task-worker",policy_id="pii.v1"}"#
        ),
        Some(2.0),
        "{out}"
    );
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn the_endpoint_serves_https_with_the_configured_certificate() {
    let fixtures = workspace_root().join("tests/fixtures/tls");
    let cert = fixtures.join("cert.pem");
    let exporter = start_exporter(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        fixtures.join("key.pem").to_str().unwrap(),
    ]);
    let port = exporter.address.rsplit(':').next().unwrap();
    // curl (installed by infra/dev test) checks the chain against the test certificate.
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&cert)
        .arg(format!("https://localhost:{port}/-/healthy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    let plain = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .arg(format!("http://localhost:{port}/-/healthy"))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain HTTP is refused on the HTTPS port"
    );
}

/// Sends raw bytes and reads whatever comes back within `wait` (the status line at least).
/// What the exporter's internal listener serves on `/metrics`.
async fn internal_metrics(exporter: &Exporter) -> String {
    let url = format!("http://{}/metrics", exporter.metrics_address);
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn raw_exchange(address: &str, request: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        _ => String::new(),
    }
}

fn delivery_head(key: &str, length: usize) -> Vec<u8> {
    format!(
        "POST /firehose HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Access-Key: {key}\r\nX-Amz-Firehose-Request-Id: r\r\nContent-Length: {length}\r\n\r\n{{\"records\":"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_firehose_listener_never_serves_the_series_and_refuses_a_wrong_key_before_the_body() {
    let exporter = start_exporter(&["--body-timeout-seconds", "1", "--max-deliveries", "1"]);
    let public = reqwest::get(format!("http://{}/metrics", exporter.address))
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "the series are not on the public endpoint"
    );
    let internal = reqwest::get(format!("http://{}/metrics", exporter.metrics_address))
        .await
        .unwrap();
    assert_eq!(internal.status(), 200);
    let firehose_on_internal = reqwest::Client::new()
        .post(format!("http://{}/firehose", exporter.metrics_address))
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(firehose_on_internal.status(), 404);

    // 64 MiB announced, a few bytes sent: a wrong key is answered at once, unread.
    let wrong = raw_exchange(
        &exporter.address,
        &delivery_head("wrong-key", 64 * 1024 * 1024),
        std::time::Duration::from_secs(3),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong:?}");

    // The right key and a body that never comes: 408 after the body time-out, and while it
    // waits, the one delivery slot is taken, so another delivery is told to retry.
    let address = exporter.address.clone();
    let slow = tokio::spawn(async move {
        raw_exchange(
            &address,
            &delivery_head(ACCESS_KEY, 1000),
            std::time::Duration::from_secs(5),
        )
        .await
    });
    // Wait until the slow delivery holds the slot (the internal listener says how many do).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let internal = internal_metrics(&exporter).await;
        if value(
            &internal,
            "neuraforge_exporter_firehose_deliveries_in_flight",
        ) == Some(1.0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let busy = reqwest::Client::new()
        .post(format!("http://{}/firehose", exporter.address))
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .body(r#"{"requestId":"r2","records":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert!(slow.await.unwrap().starts_with("HTTP/1.1 408"));
    let after = reqwest::Client::new()
        .post(format!("http://{}/firehose", exporter.address))
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .body(r#"{"requestId":"r3","records":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "the slot is free again");
}

#[test]
fn the_firehose_endpoint_refuses_to_start_without_a_separate_metrics_listener() {
    let dir = std::env::temp_dir().join(format!("exporter-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("firehose-key");
    std::fs::write(&key_file, ACCESS_KEY).unwrap();
    let out = Command::new(workspace_root().join("target/debug/emf-exporter"))
        .args([
            "--config",
            "infra/exporter/exporter.yaml",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--firehose-access-key-file")
        .arg(&key_file)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen is required"));
}

#[test]
fn a_metric_seen_in_two_shapes_keeps_its_first_type_and_the_other_is_refused() {
    let mut r = registry();
    let f = r#""function":"f","#;
    // Not in the catalogue: a list makes it a histogram, a single value a gauge.
    let as_list = doc(&[("neuraforge_adhoc_seconds", "[0.5]")], r#""function""#, f);
    let as_scalar = doc(&[("neuraforge_adhoc_seconds", "0.5")], r#""function""#, f);
    r.ingest_line(&as_list);
    r.ingest_line(&as_scalar);
    let out = r.render();
    assert!(
        out.contains("# TYPE neuraforge_adhoc_seconds histogram"),
        "{out}"
    );
    assert_eq!(
        value(
            &out,
            r#"neuraforge_exporter_rejected_total{reason="wrong_type"}"#
        ),
        Some(1.0)
    );
    // A catalogued gauge given a list is refused the same way.
    let mut r = registry();
    r.ingest_line(&doc(
        &[("neuraforge_review_tickets_open", "[1,2]")],
        r#""function""#,
        f,
    ));
    assert_eq!(
        value(
            &r.render(),
            r#"neuraforge_exporter_rejected_total{reason="wrong_type"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn reserved_and_colon_label_names_are_refused_as_bad_directives() {
    for dimension in ["__name__", "a:b", "1st"] {
        let mut r = registry();
        let fields = format!(r#""{dimension}":"x","#);
        r.ingest_line(&doc(
            &[("neuraforge_enqueue_retried_total", "1")],
            &format!(r#""{dimension}""#),
            &fields,
        ));
        let out = r.render();
        assert_eq!(
            value(
                &out,
                r#"neuraforge_exporter_rejected_total{reason="bad_directive"}"#
            ),
            Some(1.0),
            "{dimension}"
        );
        assert!(!out.contains("neuraforge_enqueue_retried_total{"), "{out}");
    }
}

#[test]
fn the_configuration_refuses_bad_names_misplaced_or_unordered_buckets_and_unknown_keys() {
    let base = "default_buckets: [0.1, 1]\n";
    assert!(Config::from_yaml(base).is_ok());
    for (yaml, complaint) in [
        (
            "default_buckets: [0.1, 1]\nmetrics:\n  bad-name:\n    type: gauge\n    help: h\n",
            "not a valid Prometheus metric name",
        ),
        (
            "default_buckets: [0.1, 1]\nmetrics:\n  g:\n    type: gauge\n    help: h\n    buckets: [1]\n",
            "only histograms have buckets",
        ),
        ("default_buckets: [1, 0.1]\n", "strictly increasing"),
        ("default_buckets: []\n", "must not be empty"),
        ("default_buckets: [0.1]\nsurprise: 1\n", "unknown field"),
    ] {
        let err = Config::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains(complaint), "{yaml}: {err}");
    }
}

mod firehose_handling {
    use super::*;
    use emf_exporter::firehose::{MAX_DECODED_BYTES, RecentRequests, gunzip, handle};

    fn batch(message_type: &str, lines: &[&str]) -> serde_json::Value {
        let events: Vec<serde_json::Value> = lines
            .iter()
            .map(|m| serde_json::json!({"id": "1", "timestamp": 1, "message": m}))
            .collect();
        let batch = serde_json::json!({"messageType": message_type, "logEvents": events});
        let data =
            base64::engine::general_purpose::STANDARD.encode(gzip(batch.to_string().as_bytes()));
        serde_json::json!({"data": data})
    }

    fn deliver(
        r: &mut Registry,
        recent: &mut RecentRequests,
        id: &str,
        record: serde_json::Value,
    ) -> u16 {
        let body = serde_json::json!({"requestId": id, "records": [record]}).to_string();
        handle(
            r,
            recent,
            Some("k"),
            Some("k"),
            Some(id),
            false,
            body.as_bytes(),
        )
        .status
    }

    #[test]
    fn a_control_message_is_taken_and_adds_nothing() {
        let (mut r, mut recent) = (registry(), RecentRequests::default());
        assert_eq!(
            deliver(
                &mut r,
                &mut recent,
                "c",
                batch("CONTROL_MESSAGE", &[GUARDRAIL])
            ),
            200
        );
        let out = r.render();
        assert!(
            !out.contains("neuraforge_guardrail_decision_total{"),
            "{out}"
        );
        assert!(
            !out.contains(r#"rejected_total{reason="invalid_json"} 1"#),
            "{out}"
        );
        // The same line in a data message is taken.
        assert_eq!(
            deliver(
                &mut r,
                &mut recent,
                "d",
                batch("DATA_MESSAGE", &[GUARDRAIL])
            ),
            200
        );
        assert!(r.render().contains("neuraforge_guardrail_decision_total{"));
    }

    #[test]
    fn a_delivery_without_the_access_key_or_with_a_body_that_is_not_gzip_is_refused() {
        let (mut r, mut recent) = (registry(), RecentRequests::default());
        let body = br#"{"requestId":"x","records":[]}"#;
        let missing = handle(&mut r, &mut recent, Some("k"), None, Some("x"), false, body);
        assert_eq!(missing.status, 401);
        assert_eq!(missing.body["requestId"], "x");
        let not_gzip = handle(
            &mut r,
            &mut recent,
            Some("k"),
            Some("k"),
            Some("y"),
            true,
            body,
        );
        assert_eq!(not_gzip.status, 400);
        assert_eq!(not_gzip.body["requestId"], "y");
        assert!(
            not_gzip.body["errorMessage"]
                .as_str()
                .unwrap()
                .contains("gzip")
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_past_the_decoded_size_limit() {
        let zeros = vec![0u8; MAX_DECODED_BYTES as usize + 1];
        let bomb = gzip(&zeros);
        assert!(
            bomb.len() < 1024 * 1024,
            "a small body: {} bytes",
            bomb.len()
        );
        assert!(gunzip(&bomb).is_err());
        let just_fits = gzip(&zeros[..MAX_DECODED_BYTES as usize]);
        assert_eq!(gunzip(&just_fits).unwrap().len() as u64, MAX_DECODED_BYTES);
        // Inside a record, the bomb is counted and skipped like any corrupt record.
        let (mut r, mut recent) = (registry(), RecentRequests::default());
        let record =
            serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(&bomb)});
        assert_eq!(deliver(&mut r, &mut recent, "b", record), 200);
        assert_eq!(
            value(
                &r.render(),
                r#"neuraforge_exporter_rejected_total{reason="invalid_json"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn request_ids_are_forgotten_oldest_first_past_their_capacity() {
        let mut recent = RecentRequests::default();
        for i in 0..RecentRequests::CAPACITY {
            assert!(recent.first_time(&format!("r{i}")));
        }
        assert!(!recent.first_time("r0"), "remembered while within capacity");
        assert!(
            recent.first_time("one more"),
            "a new id pushes the oldest out"
        );
        assert!(recent.first_time("r0"), "r0, the oldest, was forgotten");
        assert!(!recent.first_time("r2"), "the next oldest are still known");
        let newest = format!("r{}", RecentRequests::CAPACITY - 1);
        assert!(!recent.first_time(&newest), "the newest are still known");
    }
}

#[tokio::test]
async fn a_delivery_body_over_64_mib_is_answered_413_and_the_slot_freed() {
    let exporter = start_exporter(&[]);
    let url = format!("http://{}/firehose", exporter.address);
    let huge = vec![b' '; 64 * 1024 * 1024 + 1];
    let response = reqwest::Client::new()
        .post(&url)
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .header("X-Amz-Firehose-Request-Id", "huge")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["requestId"], "huge");
    let after = reqwest::Client::new()
        .post(&url)
        .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
        .body(r#"{"requestId":"small","records":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let internal = internal_metrics(&exporter).await;
    assert_eq!(
        value(
            &internal,
            r#"neuraforge_exporter_firehose_requests_total{outcome="too_large"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &internal,
            "neuraforge_exporter_firehose_deliveries_in_flight"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn the_access_key_may_come_from_the_environment_as_ecs_injects_it() {
    let exporter = start_exporter_with_key_in_env();
    let http = reqwest::Client::new();
    let url = format!("http://{}/firehose", exporter.address);
    let delivery = serde_json::json!({"requestId": "env-1", "timestamp": 1, "records": [record(&[GUARDRAIL])]});
    let send = |key: &'static str| {
        http.post(&url)
            .header("X-Amz-Firehose-Access-Key", key)
            .header("X-Amz-Firehose-Request-Id", "env-1")
            .body(delivery.to_string())
            .send()
    };
    assert_eq!(
        send("wrong-key-of-some-length").await.unwrap().status(),
        401
    );
    assert_eq!(send(ACCESS_KEY).await.unwrap().status(), 200);
}
