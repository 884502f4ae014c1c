//! The Grafana dashboards' structure: unique ids, the Prometheus datasource
//! variable everywhere, units, defined variables, metrics the exporter serves.
//! (tests/it/e2e.rs evaluates every query against a live Prometheus.)

use neuraforge_tests::workspace_root;
use serde_json::Value;
use std::collections::BTreeSet;

pub fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(workspace_root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `$name` and `${name}` references in a query.
fn variables_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn the_five_dashboards_exist_with_unique_uids() {
    let all = dashboards();
    let uids: Vec<&str> = all
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap())
        .collect();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "agent-tool-usage.json",
            "api-and-queues.json",
            "negotiation-health.json",
            "reviewer-workload.json",
            "task-latency-slo.json"
        ]
    );
    let unique: BTreeSet<&str> = uids.iter().copied().collect();
    assert_eq!(unique.len(), uids.len(), "uids are unique");
}

#[test]
fn every_panel_has_a_unique_id_the_prometheus_datasource_a_unit_and_defined_variables() {
    let catalogue: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/exporter/exporter.yaml")).unwrap(),
    )
    .unwrap();
    let served: BTreeSet<String> = catalogue["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for (name, d) in dashboards() {
        let variables: Vec<&Value> = d["templating"]["list"].as_array().unwrap().iter().collect();
        let defined: BTreeSet<String> = variables
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .chain(["__rate_interval".to_string()])
            .collect();
        let datasource = variables
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(datasource["type"], "datasource");
        assert_eq!(datasource["query"], "prometheus");

        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{name}: no panels");
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids are unique");
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            let case = format!("{name} / {title}");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{case}: datasource"
            );
            assert_eq!(
                panel["datasource"]["type"], "prometheus",
                "{case}: datasource type"
            );
            assert!(
                panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{case}: unit"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{case}: no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{case}: target datasource"
                );
                for var in variables_in(expr) {
                    assert!(
                        defined.contains(&var),
                        "{case}: ${var} is not a variable of the dashboard"
                    );
                }
                // Only metrics the exporter serves (or recording rules and Prometheus' own).
                let words =
                    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
                for word in words.filter(|w| w.starts_with("neuraforge_")) {
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s).filter(|b| served.contains(*b)))
                        .unwrap_or(word);
                    assert!(
                        served.contains(base) || base.starts_with("neuraforge_exporter_"),
                        "{case}: {word} is not served by the exporter"
                    );
                }
            }
            // Panels fit the 24-column grid.
            let grid = &panel["gridPos"];
            assert!(
                grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
                "{case}: grid"
            );
        }
        for v in variables.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{name}: variable {}",
                v["name"]
            );
        }
    }
}

#[test]
fn the_reviewer_dashboard_filters_on_status_reviewer_and_age_and_annotates_alerts() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(n, _)| n == "reviewer-workload.json")
        .unwrap();
    let names: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for filter in ["status", "reviewer", "age"] {
        assert!(names.contains(filter), "no {filter} filter");
        let used = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap())
            .any(|t| t["expr"].as_str().unwrap().contains(&format!("${filter}")));
        assert!(used, "the {filter} filter is used by a panel");
    }
    let annotations = d["annotations"]["list"].as_array().unwrap();
    assert!(
        annotations.iter().any(|a| a["expr"]
            .as_str()
            .is_some_and(|e| e.starts_with("ALERTS{service=\"reviews\""))),
        "alert annotations"
    );
}

#[test]
fn grafana_provisioning_points_at_prometheus_and_the_dashboards_folder() {
    let read = |p: &str| -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(workspace_root().join(p)).unwrap())
            .unwrap()
    };
    let ds = read("infra/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let providers = read("infra/grafana/provisioning/dashboards/neuraforge.yml");
    assert_eq!(providers["providers"][0]["type"], "file");
    assert!(providers["providers"][0]["options"]["path"].is_string());
}
