//! v1 compatibility of the metrics: v1's own alert rules (`../shared/v1-observability/
//! rules.yml`, read where it lies, never copied) and this repository's `v1-compat.yml` both
//! fire and stay quiet on input series shaped as the exporter serves them (`promtool test
//! rules`). The dashboard queries of `queries.txt` are evaluated on a live stack in
//! `e2e::every_dashboard_query…`.

use neuraforge_tests::workspace_root;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// v1's observability fixtures: `../shared/v1-observability` beside the project, or
/// `NEURAFORGE_V1_OBSERVABILITY`.
pub fn v1_observability() -> PathBuf {
    let dir = std::env::var_os("NEURAFORGE_V1_OBSERVABILITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/v1-observability"));
    assert!(
        dir.join("rules.yml").is_file() && dir.join("queries.txt").is_file(),
        "v1's rules and queries are not in {} (set NEURAFORGE_V1_OBSERVABILITY)",
        dir.display()
    );
    dir
}

/// The alerts v1's README lists as never working in v1 itself.
pub const V1_DEFECTS: &[&str] = &["ReviewStuckInProgress"];

const COMPAT: &str = "infra/prometheus/rules/v1-compat.yml";

/// One scenario: input series, when to look, and for each rule file (this repository's
/// `v1-compat.yml`, then v1's own) the extra labels of the firing alert, or `None` if quiet.
struct Case {
    alert: &'static str,
    what: &'static str,
    series: &'static [(&'static str, &'static str)],
    at: &'static str,
    compat: Option<&'static [(&'static str, &'static str)]>,
    v1: Option<&'static [(&'static str, &'static str)]>,
}

const AGENTS: &[(&str, &str)] = &[("agent_count", "1")];

// The series above, as the exporter serves them (macros: `concat!` takes literals only).
macro_rules! runs {
    ($function:literal, $status:literal) => {
        concat!(
            r#"neuraforge_orchestrator_runs_total{entry_point="api",function=""#,
            $function,
            r#"",status=""#,
            $status,
            r#""}"#
        )
    };
}
macro_rules! latency {
    ($le:literal) => {
        concat!(
            r#"neuraforge_task_latency_seconds_bucket{agent_count="1",entry_point="api",function="task-worker",le=""#,
            $le,
            r#""}"#
        )
    };
}
macro_rules! consensus {
    ($le:literal) => {
        concat!(
            r#"neuraforge_negotiation_consensus_bucket{function="task-worker",strategy="critique_vote",le=""#,
            $le,
            r#""}"#
        )
    };
}
macro_rules! meta {
    ($le:literal) => {
        concat!(
            r#"neuraforge_meta_agent_resolution_latency_seconds_bucket{function="task-worker",mode="critique_vote",le=""#,
            $le,
            r#""}"#
        )
    };
}
macro_rules! tickets {
    ($status:literal) => {
        concat!(
            r#"neuraforge_review_tickets{function="review-backlog-metrics",status=""#,
            $status,
            r#""}"#
        )
    };
}

const CASES: &[Case] = &[
    Case {
        alert: "OrchestratorHighFailureRate",
        what: "half of the settled runs fail",
        series: &[
            (runs!("submit-task", "started"), "0+10x40"),
            (runs!("task-worker", "completed"), "0+5x40"),
            (runs!("task-worker", "failed"), "0+5x40"),
        ],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "OrchestratorHighFailureRate",
        what: "one run in ten fails (v1's rule counts every start as a failure and fires)",
        series: &[
            (runs!("submit-task", "started"), "0+10x40"),
            (runs!("task-worker", "completed"), "0+9x40"),
            (runs!("task-worker", "failed"), "0+1x40"),
        ],
        at: "25m",
        compat: None,
        v1: Some(&[]),
    },
    Case {
        alert: "OrchestratorHighFailureRate",
        what: "no runs",
        series: &[
            (runs!("submit-task", "started"), "5x40"),
            (runs!("task-worker", "failed"), "5x40"),
        ],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "TaskLatencyWarning",
        what: "every task between 45 and 60 s",
        series: &[
            (latency!("30.0"), "0x40"),
            (latency!("45.0"), "0x40"),
            (latency!("60.0"), "0+10x40"),
            (latency!("+Inf"), "0+10x40"),
        ],
        at: "25m",
        compat: Some(AGENTS),
        v1: Some(AGENTS),
    },
    Case {
        alert: "TaskLatencyCritical",
        what: "every task between 45 and 60 s",
        series: &[
            (latency!("45.0"), "0x40"),
            (latency!("60.0"), "0+10x40"),
            (latency!("+Inf"), "0+10x40"),
        ],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "TaskLatencyCritical",
        what: "every task between 60 and 120 s",
        series: &[
            (latency!("60.0"), "0x40"),
            (latency!("120.0"), "0+10x40"),
            (latency!("+Inf"), "0+10x40"),
        ],
        at: "25m",
        compat: Some(AGENTS),
        v1: Some(AGENTS),
    },
    Case {
        alert: "TaskLatencyWarning",
        what: "every task within 30 s",
        series: &[(latency!("30.0"), "0+10x40"), (latency!("+Inf"), "0+10x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "GuardrailEscalationSpike",
        what: "one escalation a minute from one policy",
        series: &[(
            r#"neuraforge_guardrail_decision_total{decision="escalate",function="task-worker",policy_id="risk_threshold.v1"}"#,
            "0+1x60",
        )],
        at: "35m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "GuardrailEscalationSpike",
        what: "an escalation every ten minutes",
        series: &[(
            r#"neuraforge_guardrail_decision_total{decision="escalate",function="task-worker",policy_id="risk_threshold.v1"}"#,
            "0+0.1x60",
        )],
        at: "35m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "GuardrailDenyCritical",
        what: "a deny a minute",
        series: &[(
            r#"neuraforge_guardrail_decision_total{decision="deny",function="task-worker",policy_id="prohibited_keywords.v1"}"#,
            "0+1x60",
        )],
        at: "35m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "GuardrailDenyCritical",
        what: "no deny since long ago",
        series: &[(
            r#"neuraforge_guardrail_decision_total{decision="deny",function="task-worker",policy_id="prohibited_keywords.v1"}"#,
            "3x60",
        )],
        at: "35m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "NegotiationConsensusDegradation",
        what: "every score between 0.2 and 0.4",
        series: &[
            (consensus!("0.2"), "0x60"),
            (consensus!("0.4"), "0+10x60"),
            (consensus!("+Inf"), "0+10x60"),
        ],
        at: "35m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "NegotiationConsensusDegradation",
        what: "every score above 0.8",
        series: &[
            (consensus!("0.8"), "0x60"),
            (consensus!("1.0"), "0+10x60"),
            (consensus!("+Inf"), "0+10x60"),
        ],
        at: "35m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "MetaAgentDisputeSpike",
        what: "five disputes a second",
        series: &[(DISPUTES, "0+300x40")],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[("function", "task-worker")]),
    },
    Case {
        alert: "MetaAgentDisputeSpike",
        what: "five disputes a minute (v1 compared a per-second rate with three a minute)",
        series: &[(DISPUTES, "0+5x40")],
        at: "25m",
        compat: Some(&[]),
        v1: None,
    },
    Case {
        alert: "MetaAgentDisputeSpike",
        what: "one dispute a minute",
        series: &[(DISPUTES, "0+1x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "MetaResolutionLatencySLO",
        what: "every resolution between 5 and 10 s",
        series: &[
            (meta!("5.0"), "0x60"),
            (meta!("10.0"), "0+10x60"),
            (meta!("+Inf"), "0+10x60"),
        ],
        at: "35m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "MetaResolutionLatencySLO",
        what: "every resolution within 0.1 s",
        series: &[(meta!("0.1"), "0+10x60"), (meta!("+Inf"), "0+10x60")],
        at: "35m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "ReviewQueueWarning",
        what: "13 open tickets",
        series: &[(tickets!("open"), "13x40")],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "ReviewQueueCritical",
        what: "13 open tickets",
        series: &[(tickets!("open"), "13x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "ReviewQueueCritical",
        what: "17 open tickets",
        series: &[(tickets!("open"), "17x40")],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "ReviewQueueWarning",
        what: "5 open tickets and 20 in review (v1 counts open alone)",
        series: &[(tickets!("open"), "5x40"), (tickets!("in_review"), "20x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "ReviewUnassignedBacklog",
        what: "3 unassigned tickets",
        series: &[(tickets!("unassigned"), "3x40")],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[]),
    },
    Case {
        alert: "ReviewUnassignedBacklog",
        what: "2 unassigned tickets",
        series: &[(tickets!("unassigned"), "2x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "ReviewOldestTicketStale",
        what: "a ticket waiting 8000 s",
        series: &[(OLDEST, "8000x40")],
        at: "25m",
        compat: Some(&[]),
        v1: Some(&[("function", "review-backlog-metrics")]),
    },
    Case {
        alert: "ReviewOldestTicketStale",
        what: "the oldest ticket waiting 100 s",
        series: &[(OLDEST, "100x40")],
        at: "25m",
        compat: None,
        v1: None,
    },
    Case {
        alert: "ReviewStuckInProgress",
        what: "tickets in review and no decision for an hour (v1's rule cannot fire)",
        series: &[(tickets!("in_review"), "2x90"), (DECISIONS, "4x90")],
        at: "75m",
        compat: Some(&[]),
        v1: None,
    },
    Case {
        alert: "ReviewStuckInProgress",
        what: "tickets in review and a decision a minute",
        series: &[(tickets!("in_review"), "2x90"), (DECISIONS, "0+1x90")],
        at: "75m",
        compat: None,
        v1: None,
    },
];

const DISPUTES: &str =
    r#"neuraforge_meta_agent_disputes_total{function="task-worker",severity="high"}"#;
const OLDEST: &str =
    r#"neuraforge_review_ticket_oldest_age_seconds{function="review-backlog-metrics"}"#;
const DECISIONS: &str = r#"neuraforge_review_decisions_total{function="resolve-review",outcome="approve",status="resolved"}"#;

/// Every alerting rule of a rule file, by name.
fn alerts_of(path: &std::path::Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(path).unwrap();
    let rules: Value = serde_yaml_ng::from_str(&text).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter_map(|r| Some((r["alert"].as_str()?.to_string(), r)))
        .collect()
}

/// A promtool test file for `rules` (an absolute path) from the cases, with each firing
/// alert expected with the rule's own labels and annotations plus the case's extra labels.
fn promtool_tests(rules: &std::path::Path, v1: bool, extra_tests: Vec<Value>) -> Value {
    let alerts = alerts_of(rules);
    let mut tests = extra_tests;
    for case in CASES {
        let (_, rule) = alerts
            .iter()
            .find(|(name, _)| name == case.alert)
            .unwrap_or_else(|| panic!("{} is not in {}", case.alert, rules.display()));
        let fires = if v1 { case.v1 } else { case.compat };
        let exp_alerts: Vec<Value> = fires
            .map(|extra| {
                let mut labels = rule["labels"].as_object().cloned().unwrap_or_default();
                for (k, v) in extra {
                    labels.insert(k.to_string(), json!(v));
                }
                vec![json!({"exp_labels": labels, "exp_annotations": rule["annotations"]})]
            })
            .unwrap_or_default();
        let series: Vec<Value> = case
            .series
            .iter()
            .map(|(s, v)| json!({"series": s, "values": v}))
            .collect();
        tests.push(json!({
            "name": format!("{}: {}", case.alert, case.what),
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": exp_alerts}],
        }));
    }
    json!({"rule_files": [rules], "evaluation_interval": "1m", "tests": tests})
}

fn run_promtool(test: &Value, name: &str) {
    let file = std::env::temp_dir().join(format!("{}-{name}", std::process::id()));
    std::fs::write(&file, serde_json::to_string_pretty(test).unwrap()).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (installed by infra/dev test)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{name}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which alerts the cases make fire, and which they keep quiet, for one rule file.
fn coverage(v1: bool) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in CASES {
        let outcome = if v1 { case.v1 } else { case.compat };
        match outcome {
            Some(_) => fires.insert(case.alert),
            None => quiet.insert(case.alert),
        };
    }
    (fires, quiet)
}

#[test]
fn v1s_own_alert_rules_fire_and_stay_quiet_on_the_exporters_series() {
    let rules = v1_observability().join("rules.yml").canonicalize().unwrap();
    run_promtool(&promtool_tests(&rules, true, vec![]), "v1-rules.test.json");
    let names: BTreeSet<String> = alerts_of(&rules).into_iter().map(|(n, _)| n).collect();
    let (fires, quiet) = coverage(true);
    let fires: BTreeSet<String> = fires.iter().map(|s| s.to_string()).collect();
    let quiet: BTreeSet<String> = quiet.iter().map(|s| s.to_string()).collect();
    let defects: BTreeSet<String> = V1_DEFECTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        fires,
        names.difference(&defects).cloned().collect(),
        "a firing case for each v1 alert but the defects v1's README lists"
    );
    assert_eq!(quiet, names, "a quiet case for each v1 alert");
    let readme = std::fs::read_to_string(v1_observability().join("README.md")).unwrap();
    for defect in V1_DEFECTS {
        assert!(readme.contains(defect), "{defect} is not a known v1 defect");
    }
}

#[test]
fn v1_compat_rules_keep_every_v1_alert_and_fire_and_stay_quiet() {
    let rules = workspace_root().join(COMPAT);
    // The recorded v1 series, from the exporter's series.
    let recorded = json!({
        "interval": "1m",
        "input_series": [
            {"series": runs!("submit-task", "started"), "values": "0+10x90"},
            {"series": runs!("task-worker", "completed"), "values": "0+9x90"},
            {"series": runs!("task-worker", "failed"), "values": "0+0.5x90"},
            {"series": latency!("60.0"), "values": "8x90"},
            {"series": r#"neuraforge_task_latency_seconds_count{agent_count="1",entry_point="api",function="task-worker"}"#, "values": "10x90"},
        ],
        "promql_expr_test": [
            {"expr": "neuraforge_orchestrator_runs_active", "eval_time": "20m",
             "exp_samples": [{"labels": r#"neuraforge_orchestrator_runs_active{entry_point="api"}"#, "value": 10}]},
            {"expr": "neuraforge_orchestrator_sla_events_total", "eval_time": "20m",
             "exp_samples": [
                {"labels": r#"neuraforge_orchestrator_sla_events_total{category="met"}"#, "value": 8},
                {"labels": r#"neuraforge_orchestrator_sla_events_total{category="violated"}"#, "value": 2}]},
            {"expr": "round(neuraforge_orchestrator_success_rate, 0.001)", "eval_time": "80m",
             "exp_samples": [{"labels": "{}", "value": 0.947}]},
            {"expr": "round(orchestrator:throughput_per_minute, 0.001)", "eval_time": "20m",
             "exp_samples": [{"labels": r#"{entry_point="api",function="task-worker",status="completed"}"#, "value": 9}]},
            {"expr": "round(orchestrator:success_rate, 0.001)", "eval_time": "20m",
             "exp_samples": [{"labels": "{}", "value": 0.947}]},
        ],
    });
    run_promtool(
        &promtool_tests(&rules, false, vec![recorded]),
        "v1-compat.test.json",
    );

    // Every v1 alert is here, with v1's severity and team, marked `compat: v1`.
    let v1 = alerts_of(&v1_observability().join("rules.yml"));
    let ours = alerts_of(&rules);
    let names: BTreeSet<String> = ours.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names,
        v1.iter().map(|(n, _)| n.clone()).collect(),
        "the same alerts as v1"
    );
    for (name, rule) in &v1 {
        let (_, mine) = ours.iter().find(|(n, _)| n == name).unwrap();
        for label in ["severity", "team"] {
            assert_eq!(
                mine["labels"][label], rule["labels"][label],
                "{name}: {label}"
            );
        }
        assert_eq!(mine["labels"]["compat"], "v1", "{name}");
        assert_eq!(mine["for"], rule["for"], "{name}: for");
        for key in ["summary", "description"] {
            assert_eq!(mine["annotations"][key], rule["annotations"][key], "{name}");
        }
        let url = mine["annotations"]["runbook_url"].as_str().unwrap();
        let path = url.split_once("/blob/main/").unwrap().1;
        assert!(workspace_root().join(path).is_file(), "{name}: {path}");
    }
    let (fires, quiet) = coverage(false);
    let all: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(fires, all, "a firing case for every alert");
    assert_eq!(quiet, all, "a quiet case for every alert");
}
