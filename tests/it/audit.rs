//! The audit log on moto: one record per sensitive request, chained; tampering
//! is found at the right record; a failed write is queued, never dropped.

use aws_sdk_dynamodb::types::AttributeValue;
use neuraforge_tests::{TestStack, json_body, request, submit_request, token, workspace_root};
use shared::audit::{AuditLog, verify_chain};
use shared::http::Pipeline;
use shared::tasks::stream::{StreamConfig, TaskEventsApi};
use std::time::Duration;

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn every_sensitive_request_leaves_exactly_one_record_and_never_the_token_or_body() {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let (submit, get) = (stack.submit_api(), stack.get_api());
    let alice = token("alice", &["submitter"]);
    let body = r#"{"prompt":"confidential prompt text"}"#;

    let accepted = auditor
        .respond(&submit, submit_request(&alice, body, None))
        .await;
    let task_id = json_body(&accepted)["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let invalid = auditor
        .respond(&submit, submit_request(&alice, r#"{"prompt":""}"#, None))
        .await;
    let anonymous = auditor
        .respond(&submit, request("POST", "/x", None, Some(body)).build())
        .await;
    let forbidden = auditor
        .respond(
            &submit,
            submit_request(&token("olga", &["observer"]), body, None),
        )
        .await;
    let read = auditor
        .respond(
            &get,
            request("GET", "/x", Some(&token("olga", &["observer"])), None)
                .path_param("task_id", &task_id)
                .build(),
        )
        .await;
    assert_eq!(
        [
            accepted.status(),
            invalid.status(),
            anonymous.status(),
            forbidden.status(),
            read.status()
        ]
        .map(|s| s.as_u16()),
        [200, 422, 401, 403, 200]
    );

    let log = stack.audit_log();
    let submits = log.chain("submit-task").await.unwrap();
    let reads = log.chain("get-task").await.unwrap();
    assert_eq!(
        (submits.len(), reads.len()),
        (4, 1),
        "one record per request"
    );
    assert_eq!(verify_chain(&submits), Ok(4));
    let summary: Vec<(&str, u16, &str)> = submits
        .iter()
        .map(|r| {
            (
                r.record.principal.as_str(),
                r.record.status,
                r.record.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alice", 200, "allowed"),
            ("alice", 422, "rejected"),
            ("anonymous", 401, "denied"),
            ("olga", 403, "denied")
        ]
    );
    let first = &submits[0].record;
    assert_eq!(first.body_sha256, sha256(body));
    assert_eq!(
        (
            first.method.as_str(),
            first.route.as_str(),
            first.roles.clone()
        ),
        ("POST", "/api/v1/submit_task", vec!["submitter".to_string()])
    );
    assert_eq!(reads[0].record.target.as_deref(), Some(task_id.as_str()));
    let stored = serde_json::to_string(&submits).unwrap();
    assert!(
        !stored.contains(&alice) && !stored.contains("confidential prompt text"),
        "no token, no body"
    );
}

#[tokio::test]
async fn concurrent_requests_chain_without_gaps_or_forks() {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let get = stack.get_api();
    let observer = token("olga", &["observer"]);
    let requests = (0..12).map(|i| {
        let req = request("GET", "/x", Some(&observer), None)
            .path_param("task_id", &format!("00000000-0000-4000-8000-{i:012}"))
            .build();
        auditor.respond(&get, req)
    });
    futures_util::future::join_all(requests).await;
    // A writer that lost the race too often queued its record: the audit writer appends those.
    let audit_queue = &stack.local.queues["AuditQueue"];
    loop {
        let queued = stack.receive(&audit_queue.url, 30).await;
        if queued.is_empty() {
            break;
        }
        let event = devstack::sources::sqs_event(audit_queue, &queued);
        assert!(
            shared::runtime::append_queued(&stack.audit_log(), event)
                .await
                .batch_item_failures
                .is_empty()
        );
    }
    let chain = stack.audit_log().chain("get-task").await.unwrap();
    assert_eq!(
        verify_chain(&chain),
        Ok(12),
        "every request once, no gaps, no forks"
    );
}

#[tokio::test]
async fn a_changed_or_deleted_record_breaks_verification_at_that_record() {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let get = stack.get_api();
    for i in 0..5 {
        let req = request("GET", "/x", Some(&token("olga", &["observer"])), None)
            .path_param("task_id", &format!("00000000-0000-4000-8000-{i:012}"))
            .build();
        auditor.respond(&get, req).await;
    }
    let table = stack.local.tables["AuditTable"].clone();
    let key = |seq: u64| {
        [
            ("chain_id".to_string(), AttributeValue::S("get-task".into())),
            ("seq".to_string(), AttributeValue::N(seq.to_string())),
        ]
    };
    let original = stack.audit_log().chain("get-task").await.unwrap();
    let mut forged = original[1].record.clone();
    forged.status = 200;
    forged.principal = "mallory".into();
    let [k1, k2] = key(2);
    stack
        .dynamodb
        .update_item()
        .table_name(&table)
        .key(k1.0, k1.1)
        .key(k2.0, k2.1)
        .update_expression("SET #r = :r")
        .expression_attribute_names("#r", "record")
        .expression_attribute_values(
            ":r",
            AttributeValue::S(serde_json::to_string(&forged).unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        verify_chain(&stack.audit_log().chain("get-task").await.unwrap()),
        Err("chain get-task: record 2 was altered".into())
    );

    // The command operators run says the same and fails.
    let output = std::process::Command::new(workspace_root().join("target/debug/devstack"))
        .args(["audit-verify", "--table", &table])
        .env("AWS_ENDPOINT_URL", neuraforge_tests::moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("BROKEN chain get-task: record 2 was altered"),
        "{stdout}"
    );

    let [k1, k2] = key(4);
    stack
        .dynamodb
        .delete_item()
        .table_name(&table)
        .key(k1.0, k1.1)
        .key(k2.0, k2.1)
        .send()
        .await
        .unwrap();
    let mut chain = stack.audit_log().chain("get-task").await.unwrap();
    chain[1] = original[1].clone();
    assert_eq!(
        verify_chain(&chain),
        Err("chain get-task: record 4 is missing (found 5 next)".into())
    );
}

#[tokio::test]
async fn a_record_that_cannot_be_written_is_queued_and_appended_once_later() {
    let stack = TestStack::new().await;
    let working = stack.audit_log();
    let audit_queue = stack.local.queues["AuditQueue"].url.clone();
    // The table is unreachable (wrong name); the queue works.
    let auditor = Pipeline::audited(
        stack.authenticator(),
        AuditLog::new(&stack.sdk, "no-such-table", &audit_queue),
    );
    let response = auditor
        .respond(
            &stack.submit_api(),
            submit_request(&token("alice", &["submitter"]), r#"{"prompt":"x"}"#, None),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "the request is answered; its record waits on the queue"
    );
    assert!(working.chain("submit-task").await.unwrap().is_empty());

    let messages = stack.receive(&audit_queue, 0).await;
    assert_eq!(messages.len(), 1);
    let event = devstack::sources::sqs_event(&stack.local.queues["AuditQueue"], &messages);
    assert!(
        shared::runtime::append_queued(&working, event.clone())
            .await
            .batch_item_failures
            .is_empty()
    );
    // A redelivery of the same message records nothing new.
    assert!(
        shared::runtime::append_queued(&working, event)
            .await
            .batch_item_failures
            .is_empty()
    );
    let chain = working.chain("submit-task").await.unwrap();
    assert_eq!(verify_chain(&chain), Ok(1));
    assert_eq!(chain[0].record.principal, "alice");
}

#[tokio::test]
async fn a_request_that_cannot_be_recorded_anywhere_fails() {
    let stack = TestStack::new().await;
    let auditor = Pipeline::audited(
        stack.authenticator(),
        AuditLog::new(
            &stack.sdk,
            "no-such-table",
            format!("{}-missing", stack.queue_url()),
        ),
    );
    let req = request("GET", "/x", Some(&token("olga", &["observer"])), None)
        .path_param("task_id", "00000000-0000-4000-8000-000000000001")
        .build();
    let response = auditor.respond(&stack.get_api(), req).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        json_body(&response)["type"],
        "urn:neuraforge:problem:service-unavailable"
    );
}

#[tokio::test]
async fn a_stream_is_recorded_when_it_ends() {
    let stack = TestStack::new().await;
    let id = stack.submit("alice", r#"{"prompt":"Revenue 10"}"#).await;
    stack.deliver_once(30).await;
    let api = TaskEventsApi {
        reads: stack.reads(),
        slots: stack.slots(),
        tasks: stack.store(),
        runs: stack.runs(),
        config: StreamConfig::default(),
    };
    let req = request("GET", "/x", Some(&token("alice", &["submitter"])), None)
        .path_param("task_id", &id.to_string())
        .build();
    let mut body = stack
        .auditor()
        .respond_streaming(&api, req)
        .await
        .into_body();
    while neuraforge_tests::next_chunk(&mut body).await.is_some() {}
    let log = stack.audit_log();
    let mut chain = Vec::new();
    for _ in 0..50 {
        chain = log.chain("task-events").await.unwrap();
        if !chain.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chain.len(), 1);
    assert_eq!(
        (chain[0].record.status, chain[0].record.target.clone()),
        (200, Some(id.to_string()))
    );
}
