//! Prometheus rules and Alertmanager routing, checked with the real tools from
//! Debian's packages (`promtool`, `amtool`, `prometheus-alertmanager`; infra/dev
//! test installs them).

use neuraforge_tests::{bound_port, workspace_root};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("{program} (installed by infra/dev test): {e}"))
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn alert_rules() -> Vec<Value> {
    yaml("infra/prometheus/rules/alerts.yml")["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn the_prometheus_config_and_rules_are_valid() {
    assert_ok(
        &run(
            "promtool",
            &["check", "config", "infra/prometheus/prometheus.yml"],
        ),
        "promtool check config",
    );
    assert_ok(
        &run(
            "promtool",
            &[
                "check",
                "rules",
                "infra/prometheus/rules/recording.yml",
                "infra/prometheus/rules/alerts.yml",
                "infra/prometheus/rules/v1-compat.yml",
            ],
        ),
        "promtool check rules",
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_in_the_promtool_tests() {
    assert_ok(
        &run(
            "promtool",
            &["test", "rules", "infra/prometheus/tests/alerts.test.yml"],
        ),
        "promtool test rules",
    );
    // Each alert has at least one case where it fires and one where it must not.
    let tests = yaml("infra/prometheus/tests/alerts.test.yml");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let alerts: BTreeSet<String> = alert_rules()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fires, alerts, "a firing case for every alert");
    assert_eq!(quiet, alerts, "a quiet case for every alert");
}

#[test]
fn every_alert_has_a_severity_a_service_and_a_runbook_that_exists() {
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity"
        );
        assert!(rule["labels"]["service"].is_string(), "{name}: service");
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let path = url
            .split_once("/blob/main/")
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not a link into runbooks/"));
        assert!(path.starts_with("runbooks/"), "{name}: {path}");
        assert!(
            workspace_root().join(path).is_file(),
            "{name}: {path} does not exist"
        );
    }
}

#[test]
fn the_rules_use_only_metrics_the_exporter_serves() {
    let catalogue = yaml("infra/exporter/exporter.yaml");
    let mut known: BTreeSet<String> = catalogue["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // The exporter's own series.
    for own in [
        "neuraforge_exporter_documents_total",
        "neuraforge_exporter_rejected_total",
        "neuraforge_exporter_firehose_requests_total",
        "neuraforge_exporter_series",
    ] {
        known.insert(own.to_string());
    }
    // v1's series that Prometheus records from the exporter's.
    known.extend(
        shared::telemetry::names::V1_RECORDED
            .iter()
            .map(|n| n.to_string()),
    );
    for file in [
        "infra/prometheus/rules/recording.yml",
        "infra/prometheus/rules/alerts.yml",
        "infra/prometheus/rules/v1-compat.yml",
    ] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for word in words.filter(|w| w.starts_with("neuraforge_")) {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s).filter(|b| known.contains(*b)))
                .unwrap_or(word);
            assert!(
                known.contains(base),
                "{file} uses {word}, which the exporter does not serve"
            );
        }
    }
}

const ALERTMANAGER: &str = "infra/alertmanager/alertmanager.yml";

fn route(labels: &[&str]) -> String {
    let mut args = vec!["config", "routes", "test", "--config.file", ALERTMANAGER];
    args.extend_from_slice(labels);
    let out = run("amtool", &args);
    assert_ok(&out, "amtool config routes test");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn alertmanager_routes_pages_to_pagerduty_and_warnings_to_slack() {
    assert_ok(
        &run("amtool", &["check-config", ALERTMANAGER]),
        "amtool check-config",
    );
    for (labels, receiver) in [
        (&["severity=critical", "service=tasks"][..], "pagerduty"),
        (&["severity=critical", "service=reviews"][..], "pagerduty"),
        (
            &["severity=warning", "service=reviews"][..],
            "slack-reviewers",
        ),
        (&["severity=warning", "service=tasks"][..], "slack-ops"),
        (&["severity=warning", "service=guardrails"][..], "slack-ops"),
        (&["severity=info", "service=api"][..], "slack-ops"),
        // v1's rules name a team instead of a service.
        (
            &["severity=warning", "team=reviewers"][..],
            "slack-reviewers",
        ),
        (&["severity=critical", "team=reviewers"][..], "pagerduty"),
        (&["severity=warning"][..], "slack-ops"),
    ] {
        assert_eq!(route(labels), receiver, "{labels:?}");
    }
    // Quiet hours hold back warnings, never pages.
    let config = yaml(ALERTMANAGER);
    for route in config["route"]["routes"].as_array().unwrap() {
        let matchers = route["matchers"].to_string();
        let muted = route["mute_time_intervals"]
            .as_array()
            .is_some_and(|m| m.iter().any(|i| i == "quiet-hours"));
        if matchers.contains("severity=\\\"critical\\\"") {
            assert!(!muted, "pages are never muted: {route}");
        } else {
            assert!(muted, "warnings wait out quiet hours: {route}");
        }
    }
    // Secrets are files, not values in the config.
    let text = std::fs::read_to_string(workspace_root().join(ALERTMANAGER)).unwrap();
    assert!(!text.contains("hooks.slack.com") && !text.contains("routing_key:"));
}

/// The real Alertmanager, on free ports; killed on drop.
struct Alertmanager {
    child: std::process::Child,
    url: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_alertmanager() -> Alertmanager {
    let dir = std::env::temp_dir().join(format!("am-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::copy(
        workspace_root().join(ALERTMANAGER),
        dir.join("alertmanager.yml"),
    )
    .unwrap();
    // Placeholder secrets pointing at a closed port: notifications fail, routing is what is tested.
    for (file, value) in [
        ("slack-reviewers-webhook", "http://127.0.0.1:9/reviewers"),
        ("slack-ops-webhook", "http://127.0.0.1:9/ops"),
        ("pagerduty-routing-key", "0123456789abcdef0123456789abcdef"),
    ] {
        std::fs::write(dir.join("secrets").join(file), value).unwrap();
    }
    let log = dir.join("alertmanager.log");
    let output = std::fs::File::create(&log).unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(output)
        .spawn()
        .expect("prometheus-alertmanager (installed by infra/dev test)");
    let port = bound_port(&log, "msg=\"Listening on\"", 30).await;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/-/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Alertmanager {
        child,
        url,
        _dir: TempDir(dir),
    }
}

#[tokio::test]
async fn a_critical_alert_inhibits_the_warnings_of_its_service_in_a_running_alertmanager() {
    let am = start_alertmanager().await;
    let alert = |name: &str, severity: &str, service: &str| serde_json::json!({"labels": {"alertname": name, "severity": severity, "service": service}, "annotations": {"summary": name}});
    let posted = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&serde_json::json!([
            alert("ReviewQueueCritical", "critical", "reviews"),
            alert("ReviewQueueHigh", "warning", "reviews"),
            alert("TaskLatencyP95High", "warning", "tasks"),
            // v1's rules label a team, or nothing: a critical of the team inhibits the team's
            // warnings, and a warning with neither label is inhibited by no one.
            serde_json::json!({"labels": {"alertname": "V1ReviewQueueCritical", "severity": "critical", "team": "reviewers"}}),
            serde_json::json!({"labels": {"alertname": "V1ReviewStuckInProgress", "severity": "warning", "team": "reviewers"}}),
            serde_json::json!({"labels": {"alertname": "V1GuardrailEscalationSpike", "severity": "warning"}}),
            // v1's twin of an alert of ours (rules/v1-compat.yml) is silent while ours fires;
            // one without a twin firing is not.
            serde_json::json!({"labels": {"alertname": "ReviewQueueCritical", "severity": "critical", "team": "reviewers", "compat": "v1"}}),
            serde_json::json!({"labels": {"alertname": "TaskLatencyCritical", "severity": "critical", "compat": "v1"}}),
        ]))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let mut state = std::collections::BTreeMap::new();
    for _ in 0..50 {
        let alerts: Vec<Value> = reqwest::get(format!("{}/api/v2/alerts", am.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = alerts
            .iter()
            .map(|a| {
                let receivers: Vec<String> = a["receivers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap().to_string())
                    .collect();
                let name = a["labels"]["alertname"].as_str().unwrap();
                let twin = if a["labels"]["compat"] == "v1" {
                    " (v1)"
                } else {
                    ""
                };
                (
                    format!("{name}{twin}"),
                    (
                        a["status"]["state"].as_str().unwrap().to_string(),
                        receivers,
                    ),
                )
            })
            .collect();
        if state.len() == 8
            && state["ReviewQueueHigh"].0 == "suppressed"
            && state["V1ReviewStuckInProgress"].0 == "suppressed"
            && state["ReviewQueueCritical (v1)"].0 == "suppressed"
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        state["ReviewQueueCritical"],
        ("active".to_string(), vec!["pagerduty".to_string()])
    );
    assert_eq!(
        state["ReviewQueueHigh"],
        (
            "suppressed".to_string(),
            vec!["slack-reviewers".to_string()]
        ),
        "inhibited by the critical alert of the same service"
    );
    // Another service's warning is not inhibited (it may be muted by quiet hours, depending on the clock).
    assert_eq!(state["TaskLatencyP95High"].1, vec!["slack-ops".to_string()]);
    // The alerts inhibiting the one named `name`.
    let inhibitors = |name: &'static str| {
        let url = format!("{}/api/v2/alerts?filter=alertname%3D%22{name}%22", am.url);
        async move {
            let alerts: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
            alerts[0]["status"]["inhibitedBy"].clone()
        }
    };
    assert_eq!(
        inhibitors("TaskLatencyP95High").await,
        serde_json::json!([])
    );
    assert_eq!(
        state["V1ReviewStuckInProgress"],
        (
            "suppressed".to_string(),
            vec!["slack-reviewers".to_string()]
        ),
        "a v1 team warning goes to the team's channel and is inhibited by the team's critical"
    );
    assert_eq!(
        state["ReviewQueueCritical (v1)"].0, "suppressed",
        "v1's twin of a firing alert of ours"
    );
    assert_eq!(
        state["TaskLatencyCritical (v1)"],
        ("active".to_string(), vec!["pagerduty".to_string()]),
        "a v1 alert whose twin is not firing"
    );
    assert_eq!(
        inhibitors("V1GuardrailEscalationSpike").await,
        serde_json::json!([]),
        "an alert without service or team is inhibited by no critical"
    );
}

#[test]
fn the_log_alerts_match_log_lines_the_code_writes_and_link_their_runbooks() {
    let rules = yaml("infra/loki/rules.yml");
    let source: String = ["shared/src/http/mod.rs", "shared/src/audit/mod.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(workspace_root().join(p)).unwrap())
        .collect();
    let alerts: Vec<Value> = rules["groups"][0]["rules"].as_array().unwrap().clone();
    assert!(!alerts.is_empty());
    for rule in alerts {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().unwrap();
        // Every message the rule selects on is one the code logs, so a renamed
        // log line fails here instead of silencing the alert.
        let mut messages: Vec<String> = Vec::new();
        for part in expr.split("message").skip(1) {
            let literal = part.trim_start_matches(['=', '~']).trim_start_matches('"');
            let literal = literal.split('"').next().unwrap();
            messages.extend(
                literal
                    .split('|')
                    .map(|m| m.trim_end_matches(".*").to_string()),
            );
        }
        assert!(!messages.is_empty(), "{name}: selects no message");
        for m in messages {
            assert!(
                source.contains(&format!("\"{m}")),
                "{name}: no log line {m:?} in the code"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let path = url.split_once("/blob/main/").unwrap().1;
        assert!(workspace_root().join(path).is_file(), "{name}: {path}");
        assert!(matches!(
            rule["labels"]["severity"].as_str(),
            Some("critical" | "warning")
        ));
    }
}
