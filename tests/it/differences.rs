//! docs/api.md's "Changes from v1" table, walked against the real handlers on moto: each
//! row's probes (the last column) run as written, so a row that stops being true fails here.
//! The grammar is in the section's text: `METHOD path [-H name:value] [body] → status`
//! followed by `has <field>` (dotted; `*` is any list element) and `header <name>`; a prefix
//! `as name:role` or `anon` changes the caller; `metric`, `alert` and `absent` check the
//! exporter's catalogue, `rules/v1-compat.yml` and the routes.

use neuraforge_tests::{TestStack, json_body, request, token, workspace_root};
use serde_json::Value;
use shared::routes::{ALL, Route};
use std::collections::BTreeMap;

/// The table's rows: `(what, probes)`.
fn rows() -> Vec<(String, Vec<String>)> {
    let docs = std::fs::read_to_string(workspace_root().join("docs/api.md")).unwrap();
    let section = &docs[docs.find("## Changes from v1").expect("the section")..];
    let mut out = Vec::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| what |"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 5, "five cells: {line}");
        assert!(!cells[3].is_empty(), "a row without a why: {line}");
        let probes = cells[4]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        out.push((cells[0].to_string(), probes));
    }
    out
}

/// The route serving `path` (a concrete path, `{param}`s filled in), with its path parameters.
fn route_of(path: &str) -> Option<(&'static Route, BTreeMap<String, String>)> {
    let concrete: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Literal segments beat parameters (`/history/recent` before `/history/{task_id}`).
    let mut candidates: Vec<(&Route, usize, BTreeMap<String, String>)> = ALL
        .iter()
        .filter_map(|r| {
            let template: Vec<&str> = r.path.trim_matches('/').split('/').collect();
            if template.len() != concrete.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            let mut literal = 0;
            for (t, c) in template.iter().zip(&concrete) {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) => {
                        params.insert(name.to_string(), c.to_string());
                    }
                    None if t == c => literal += 1,
                    None => return None,
                }
            }
            Some((r, literal, params))
        })
        .collect();
    candidates.sort_by_key(|(_, literal, _)| std::cmp::Reverse(*literal));
    candidates.into_iter().next().map(|(r, _, p)| (r, p))
}

/// The values at a dotted path; `*` fans out over a list.
fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for part in path.split('.') {
        current = current
            .into_iter()
            .flat_map(|v| match part {
                "*" => v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                _ => match part.parse::<usize>() {
                    Ok(i) => v.get(i).into_iter().collect(),
                    Err(_) => v.get(part).into_iter().collect::<Vec<_>>(),
                },
            })
            .collect();
    }
    current
}

struct World {
    stack: TestStack,
    places: BTreeMap<&'static str, String>,
}

impl World {
    async fn new() -> Self {
        let stack = TestStack::new().await;
        let done = stack
            .submit(
                "alice",
                r#"{"prompt":"Revenue this quarter was 1200 * 1.15 thousand. Email the summary to cfo@example.com."}"#,
            )
            .await;
        let failed = stack
            .submit(
                "alice",
                r#"{"prompt":"Please write malware for our rivals"}"#,
            )
            .await;
        stack.deliver_once(30).await;
        let ticket = stack.open_ticket().await;
        // Submitted last: no delivery runs it.
        let queued = stack.submit("alice", r#"{"prompt":"not yet"}"#).await;
        let places = BTreeMap::from([
            ("{done}", done.to_string()),
            ("{failed}", failed.to_string()),
            ("{queued}", queued.to_string()),
            ("{run}", shared::tasks::run_id_for(done)),
            ("{ticket}", ticket),
        ]);
        World { stack, places }
    }

    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.places {
            out = out.replace(k, v);
        }
        out
    }

    /// Runs one HTTP probe; `Err` says how it failed.
    async fn http(&self, probe: &str) -> Result<(), String> {
        let probe = self.fill(probe);
        let (call, expect) = probe.split_once(" → ").ok_or("no →")?;
        let mut words = call.split(' ').peekable();
        let mut caller: Option<(String, String)> = None;
        let mut anonymous = false;
        match words.peek() {
            Some(&"anon") => {
                anonymous = true;
                words.next();
            }
            Some(&"as") => {
                words.next();
                let who = words.next().ok_or("as whom?")?;
                let (name, role) = who.split_once(':').ok_or("as name:role")?;
                caller = Some((name.into(), role.into()));
            }
            _ => {}
        }
        let method = words.next().ok_or("no method")?.to_string();
        let target = words.next().ok_or("no path")?.to_string();
        let mut headers = Vec::new();
        while words.peek() == Some(&"-H") {
            words.next();
            let h = words.next().ok_or("-H name:value")?;
            let (k, v) = h.split_once(':').ok_or("-H name:value")?;
            headers.push((k.to_string(), v.to_string()));
        }
        let body: Vec<&str> = words.collect();
        let body = (!body.is_empty()).then(|| body.join(" "));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (route, params) = route_of(path).ok_or(format!("no route serves {path}"))?;
        let (name, role) = caller.unwrap_or_else(|| {
            let role = match route.scopes.first() {
                Some(s) if s.starts_with("reviews") || s.starts_with("reports") => "reviewer",
                _ => "submitter",
            };
            let name = if role == "reviewer" { "rita" } else { "alice" };
            (name.to_string(), role.to_string())
        });
        let bearer = (!anonymous).then(|| token(&name, &[role.as_str()]));
        let mut builder = request(&method, path, bearer.as_deref(), body.as_deref());
        for (k, v) in &params {
            builder = builder.path_param(k, v);
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            builder = builder.query(k, v);
        }
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        let response = self.stack.call(route, builder.build()).await;
        let mut expect = expect.split(' ');
        let status: u16 = expect
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| "no status")?;
        let body = json_body(&response);
        if response.status().as_u16() != status {
            return Err(format!("got {}: {body}", response.status()));
        }
        while let Some(check) = expect.next() {
            let arg = expect.next().ok_or(format!("{check} what?"))?;
            match check {
                "has" if values_at(&body, arg).is_empty() => {
                    return Err(format!("no {arg} in {body}"));
                }
                "header" if response.headers().get(arg).is_none() => {
                    return Err(format!("no {arg} header"));
                }
                "has" | "header" => {}
                other => return Err(format!("unknown check {other}")),
            }
        }
        Ok(())
    }
}

fn metric_known(name: &str) -> bool {
    let catalogue =
        std::fs::read_to_string(workspace_root().join("infra/exporter/exporter.yaml")).unwrap();
    let catalogue: serde_yaml_ng::Value = serde_yaml_ng::from_str(&catalogue).unwrap();
    catalogue["metrics"].get(name).is_some()
        || shared::telemetry::names::V1_RECORDED.contains(&name)
}

fn alert_known(name: &str) -> bool {
    let rules = workspace_root().join("infra/prometheus/rules/v1-compat.yml");
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(rules).unwrap()).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .any(|r| r["alert"].as_str() == Some(name))
}

#[tokio::test]
async fn every_probe_of_the_differences_from_v1_holds_against_the_real_handlers() {
    let world = World::new().await;
    let rows = rows();
    let mut failures = Vec::new();
    let mut probed = 0;
    for (what, probes) in &rows {
        for probe in probes.iter().filter(|p| p.as_str() != "–") {
            let outcome = match probe.split_once(' ') {
                Some(("metric", name)) => metric_known(name)
                    .then_some(())
                    .ok_or(format!("the exporter does not serve {name}")),
                Some(("alert", name)) => alert_known(name)
                    .then_some(())
                    .ok_or(format!("v1-compat.yml has no {name}")),
                Some(("absent", path)) => route_of(path)
                    .is_none()
                    .then_some(())
                    .ok_or(format!("a route serves {path}")),
                _ => world.http(probe).await,
            };
            if let Err(why) = outcome {
                failures.push(format!("{what}: `{probe}`: {why}"));
            }
            probed += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rows.len() >= 60, "{} rows", rows.len());
    assert!(probed >= 60, "{probed} probes");
}

#[test]
fn the_probe_grammar_reads_as_documented() {
    assert_eq!(
        route_of("/api/v1/history/recent").unwrap().0.function,
        "history-recent"
    );
    let (route, params) = route_of("/api/v1/history/abc/transcript").unwrap();
    assert_eq!(
        (route.function, params["task_id"].as_str()),
        ("history-transcript", "abc")
    );
    assert!(route_of("/upload_document").is_none());
    let doc = serde_json::json!({"events": [{"payload": {}}, {"payload": {"error": "x"}}]});
    assert_eq!(values_at(&doc, "events.*.payload.error").len(), 1);
    assert!(values_at(&doc, "events.0.payload.error").is_empty());
}
