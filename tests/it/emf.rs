//! What the functions emit reaches Prometheus: metrics recorded through the
//! real EMF collector, flushed as the runtime flushes them, read by the
//! exporter. One test per process: the recorder is global.

use emf_exporter::config::Config;
use emf_exporter::registry::Registry;
use neuraforge_tests::{request, token, workspace_root};
use shared::auth::{Authenticator, scopes};

#[tokio::test]
async fn what_the_functions_record_reaches_the_exporter_by_its_labels() {
    let collector = shared::telemetry::init("emf-test");
    // A task through the real worker on moto: the v1 latency histogram and its outcome breakdown.
    let stack = neuraforge_tests::TestStack::new().await;
    stack
        .submit(
            "alice",
            r#"{"prompt":"Costs fell 3 percent. Revenue grew 12 percent."}"#,
        )
        .await;
    stack.deliver_once(30).await;

    let settings = shared::config::Settings::new(|name| match name {
        "AUTH__JWT_SECRET_KEY" => Some(neuraforge_tests::TEST_SECRET.to_string()),
        "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5005".to_string()),
        _ => None,
    });
    let auth = Authenticator::from_settings(&settings).unwrap();
    let headers =
        |bearer: Option<&str>| request("GET", "/x", bearer, None).build().headers().clone();

    assert!(auth.authenticate(&headers(None)).is_err());
    assert!(auth.authenticate(&headers(Some("not.a.jwt"))).is_err());
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "roles": ["observer"], "exp": jsonwebtoken::get_current_timestamp() - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(neuraforge_tests::TEST_SECRET.as_bytes()),
    )
    .unwrap();
    assert!(auth.authenticate(&headers(Some(&expired))).is_err());
    let observer = auth
        .authenticate(&headers(Some(&token("olga", &["observer"]))))
        .unwrap();
    assert!(observer.require(scopes::REVIEWS_WRITE).is_err());
    assert!(observer.require(scopes::REVIEWS_WRITE).is_err());

    let backlog = shared::reviews::metrics::Backlog {
        tickets: [("open", 2), ("unassigned", 2)].into_iter().collect(),
        open: 3,
        oldest_age_seconds: 90.5,
        by_reviewer: [("rita".to_string(), 1)].into_iter().collect(),
        by_age: [("0-30m", 3)].into_iter().collect(),
    };

    let mut emf = Vec::new();
    collector.flush(&mut emf).unwrap();
    let mut emf = String::from_utf8(emf).unwrap();
    emf.push_str(&shared::telemetry::emf_gauges(
        "emf-test",
        &backlog.readings(),
        shared::time::now_millis(),
    ));
    let config = Config::load(&workspace_root().join("infra/exporter/exporter.yaml")).unwrap();
    let mut registry = Registry::new(config);
    for line in emf.lines() {
        registry.ingest_line(line);
    }
    let out = registry.render();
    for series in [
        r#"neuraforge_auth_failures_total{function="emf-test",reason="missing_token"} 1"#,
        r#"neuraforge_auth_failures_total{function="emf-test",reason="malformed_header"} 1"#,
        r#"neuraforge_auth_failures_total{function="emf-test",reason="expired"} 1"#,
        r#"neuraforge_auth_failures_total{function="emf-test",reason="insufficient_scope"} 2"#,
        r#"neuraforge_review_tickets{function="emf-test",status="unassigned"} 2"#,
        r#"neuraforge_review_tickets_open{function="emf-test"} 3"#,
        r#"neuraforge_review_ticket_oldest_age_seconds{function="emf-test"} 90.5"#,
        r#"neuraforge_review_tickets_by_reviewer{function="emf-test",reviewer="rita"} 1"#,
        r#"neuraforge_review_tickets_by_age{age="0-30m",function="emf-test"} 3"#,
    ] {
        assert!(
            out.lines().any(|l| l == series),
            "missing {series} in\n{out}"
        );
    }
    assert!(
        out.lines().any(|l| l
            .starts_with(r#"neuraforge_task_latency_seconds_count{agent_count=""#)
            && l.ends_with(r#"entry_point="api",function="emf-test"} 1"#)),
        "the v1 histogram keeps v1's labels and entry point value:\n{out}"
    );
    // v1's series, served from what the run sent. The recorder is the process's: tests running
    // beside this one may add to a count (or set the gauge), so each must be there, at least 1
    // (the confidence, a score in (0, 1]).
    for series in [
        r#"neuraforge_orchestrator_runs_total{entry_point="api",function="emf-test",status="started"}"#,
        r#"neuraforge_orchestrator_runs_total{entry_point="api",function="emf-test",status="completed"}"#,
        r#"neuraforge_orchestrator_run_latency_seconds_count{entry_point="api",function="emf-test"}"#,
        r#"neuraforge_negotiation_consensus_count{function="emf-test",strategy="critique_vote"}"#,
        r#"neuraforge_negotiation_consensus_reached_count{function="emf-test",strategy="critique_vote"}"#,
        r#"neuraforge_meta_agent_resolution_latency_seconds_count{function="emf-test",mode="critique_vote"}"#,
    ] {
        let value = out.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        });
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "missing {series} in\n{out}"
        );
    }
    let confidence = out.lines().find_map(|l| {
        l.strip_prefix(r#"neuraforge_meta_agent_confidence{function="emf-test"} "#)?
            .parse::<f64>()
            .ok()
    });
    assert!(
        confidence.is_some_and(|c| c > 0.0 && c <= 1.0),
        "no confidence gauge in\n{out}"
    );
    // v1 counted `allow` too, under both of its names.
    for name in [
        "neuraforge_guardrail_decision_total",
        "neuraforge_guardrail_decisions_total",
    ] {
        let allowed = format!(r#"{name}{{decision="allow",function="emf-test"}} "#);
        let count = out.lines().find_map(|l| l.strip_prefix(allowed.as_str()));
        assert!(
            count
                .and_then(|c| c.parse::<f64>().ok())
                .is_some_and(|c| c >= 3.0),
            "the input's three text policies at least:\n{out}"
        );
    }
    for series in [
        r#"neuraforge_task_latency_by_status_seconds_count{entry_point="submit_task",function="emf-test",status="completed"} 1"#,
        r#"neuraforge_tasks_finished_total{entry_point="submit_task",function="emf-test",status="completed"} 1"#,
    ] {
        assert!(
            out.lines().any(|l| l == series),
            "missing {series} in\n{out}"
        );
    }
    for reason in ["invalid_json", "wrong_type", "non_numeric", "series_limit"] {
        assert!(
            out.contains(&format!(
                "neuraforge_exporter_rejected_total{{reason=\"{reason}\"}} 0"
            )),
            "nothing was rejected:\n{out}"
        );
    }
}
