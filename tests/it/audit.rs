//! The audit log on moto: one record per sensitive request, written once without
//! contention; sealed into signed digests off the request path; tampering is found
//! at the right record or digest; a failed write is queued, never dropped.

use aws_sdk_dynamodb::types::AttributeValue;
use neuraforge_tests::{TestStack, json_body, request, submit_request, token, workspace_root};
use shared::audit::seal::{Sealer, digests_partition};
use shared::audit::verify::{ShardReport, verify_all};
use shared::audit::{AuditLog, AuditRecord, StoredRecord, key_of, records_partition};
use shared::dynamo::Appended;
use shared::http::Pipeline;
use shared::tasks::stream::{StreamConfig, TaskEventsApi};
use std::time::Duration;

/// The records a function wrote, oldest first.
async fn records_of(log: &AuditLog, function: &str) -> Vec<StoredRecord> {
    log.records_of(function).await.unwrap()
}

/// The stack's sealer, sealing everything already written (no grace).
async fn sealer(stack: &TestStack) -> Sealer {
    let settings = stack.settings_with(&[("AUDIT__SEAL_GRACE_SECONDS", "0")]);
    Sealer::from_settings(&stack.sdk, &settings).await.unwrap()
}

/// Every shard's verification, as `devstack audit-verify` does it.
async fn verify(stack: &TestStack) -> Vec<Result<ShardReport, String>> {
    let sealer = sealer(stack).await;
    let anchor =
        shared::audit::seal::read_anchor(&sealer.ssm, sealer.anchor_parameter.as_deref().unwrap())
            .await
            .unwrap();
    verify_all(
        &stack.audit_log(),
        neuraforge_tests::TEST_AUDIT_KEY.as_bytes(),
        &anchor,
    )
    .await
    .unwrap()
}

fn problems(reports: &[Result<ShardReport, String>]) -> Vec<String> {
    reports.iter().filter_map(|r| r.clone().err()).collect()
}

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
    let submits = records_of(&log, "submit-task").await;
    let reads = records_of(&log, "get-task").await;
    assert_eq!(
        (submits.len(), reads.len()),
        (4, 1),
        "one record per request"
    );
    let mut summary: Vec<(&str, u16, &str)> = submits
        .iter()
        .map(|r| {
            (
                r.record.principal.as_str(),
                r.record.status,
                r.record.outcome.as_str(),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        vec![
            ("alice", 200, "allowed"),
            ("alice", 422, "rejected"),
            ("anonymous", 401, "denied"),
            ("olga", 403, "denied")
        ]
    );
    let first = &submits
        .iter()
        .find(|r| r.record.status == 200)
        .unwrap()
        .record;
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
    // A submission's record names the task it created; a refused one names none.
    assert_eq!(first.target.as_deref(), Some(task_id.as_str()));
    assert!(
        submits
            .iter()
            .filter(|r| r.record.status != 200)
            .all(|r| r.record.target.is_none())
    );
    let stored = serde_json::to_string(&submits).unwrap();
    assert!(
        !stored.contains(&alice) && !stored.contains("confidential prompt text"),
        "no token, no body"
    );
}

#[tokio::test]
async fn concurrent_requests_are_each_recorded_once_without_contention_and_seal_intact() {
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
    let audit_queue = &stack.local.queues["AuditQueue"];
    assert!(
        stack.receive(&audit_queue.url, 0).await.is_empty(),
        "no write had to wait for another: nothing was queued"
    );
    let records = records_of(&stack.audit_log(), "get-task").await;
    assert_eq!(records.len(), 12, "every request once");
    let shards: std::collections::BTreeSet<u32> = records.iter().map(|r| r.shard).collect();
    assert!(shards.len() > 1, "spread over partitions: {shards:?}");

    let report = sealer(&stack)
        .await
        .seal_once(shared::time::now_millis())
        .await
        .unwrap();
    assert_eq!(report.records, 12);
    assert_eq!(
        report.digests,
        shards.len(),
        "one digest per shard that had records"
    );
    let reports = verify(&stack).await;
    assert_eq!(problems(&reports), Vec::<String>::new());
    assert_eq!(
        reports.iter().flatten().map(|r| r.sealed).sum::<usize>(),
        12
    );
}

#[tokio::test]
async fn a_retried_write_finds_its_own_record_and_another_request_on_its_key_takes_the_next() {
    let stack = TestStack::new().await;
    let log = stack.audit_log();
    let record =
        |request_id: String| neuraforge_tests::audit_record(&request_id, 1_795_000_000_000);
    let first = record("request-1".into());
    assert_eq!(log.append(&first).await.unwrap(), Appended::Written);
    assert_eq!(log.append(&first).await.unwrap(), Appended::AlreadyRecorded);
    // Another request that lands on the same shard, millisecond and offset.
    let twin = (0..)
        .map(|i| record(format!("other-{i}")))
        .find(|r| key_of(r) == key_of(&first))
        .unwrap();
    assert_eq!(log.append(&twin).await.unwrap(), Appended::Written);
    let records = records_of(&log, "get-task").await;
    let (shard, seq) = key_of(&first);
    let placed: Vec<(u32, u64, &str)> = records
        .iter()
        .map(|r| (r.shard, r.seq, r.record.request_id.as_str()))
        .collect();
    assert_eq!(
        placed,
        vec![
            (shard, seq, "request-1"),
            (shard, seq + 1, twin.request_id.as_str())
        ]
    );
}

#[tokio::test]
async fn sealing_leaves_young_records_and_idle_shards_alone_and_racing_sealers_write_each_digest_once()
 {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let get = stack.get_api();
    let read = |i: u32| {
        request("GET", "/x", Some(&token("olga", &["observer"])), None)
            .path_param("task_id", &format!("00000000-0000-4000-8000-{i:012}"))
            .build()
    };
    for i in 0..4 {
        auditor.respond(&get, read(i)).await;
    }
    // With the default grace (15 minutes) nothing this young is sealed.
    let patient = Sealer::from_settings(&stack.sdk, &stack.settings())
        .await
        .unwrap();
    assert_eq!(
        patient
            .seal_once(shared::time::now_millis())
            .await
            .unwrap()
            .digests,
        0
    );

    // Two sealers at once: every digest number is written once.
    let (a, b) = (sealer(&stack).await, sealer(&stack).await);
    let now = shared::time::now_millis();
    let (ra, rb) = tokio::join!(a.seal_once(now), b.seal_once(now));
    let sealed = ra.unwrap().records + rb.unwrap().records;
    assert!(sealed >= 4, "{sealed}");
    assert_eq!(problems(&verify(&stack).await), Vec::<String>::new());

    // Idle: nothing new, nothing written.
    assert_eq!(
        a.seal_once(shared::time::now_millis())
            .await
            .unwrap()
            .digests,
        0
    );

    // A new record later: its shard's next digest follows the last one.
    auditor.respond(&get, read(99)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = a.seal_once(shared::time::now_millis()).await.unwrap();
    assert_eq!((report.digests, report.records), (1, 1));
    let reports = verify(&stack).await;
    assert_eq!(problems(&reports), Vec::<String>::new());
    assert_eq!(reports.iter().flatten().map(|r| r.sealed).sum::<usize>(), 5);
}

#[tokio::test]
async fn tampering_with_sealed_records_or_digests_is_named_and_the_command_says_so() {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let get = stack.get_api();
    for i in 0..6 {
        let req = request("GET", "/x", Some(&token("olga", &["observer"])), None)
            .path_param("task_id", &format!("00000000-0000-4000-8000-{i:012}"))
            .build();
        auditor.respond(&get, req).await;
    }
    sealer(&stack)
        .await
        .seal_once(shared::time::now_millis())
        .await
        .unwrap();
    assert_eq!(problems(&verify(&stack).await), Vec::<String>::new());
    let table = stack.local.tables["AuditTable"].clone();
    let records = records_of(&stack.audit_log(), "get-task").await;
    let key = |partition: String, seq: u64| {
        std::collections::HashMap::from([
            ("chain_id".to_string(), AttributeValue::S(partition)),
            ("seq".to_string(), AttributeValue::N(seq.to_string())),
        ])
    };
    let rewrite = |target: &StoredRecord, forged: &AuditRecord| {
        let body = serde_json::to_string(forged).unwrap();
        // The forger recomputes the record's own hash too; the digest still disagrees.
        let hash = shared::audit::leaf_hash(target.shard, target.seq, forged);
        stack
            .dynamodb
            .update_item()
            .table_name(&table)
            .set_key(Some(key(records_partition(target.shard), target.seq)))
            .update_expression("SET #r = :r, #h = :h")
            .expression_attribute_names("#r", "record")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_values(":r", AttributeValue::S(body))
            .expression_attribute_values(":h", AttributeValue::S(hash))
            .send()
    };

    // Altered.
    let victim = &records[2];
    let mut forged = victim.record.clone();
    forged.principal = "mallory".into();
    rewrite(victim, &forged).await.unwrap();
    let expected = format!(
        "shard {}: record {} (request {}) was altered",
        victim.shard, victim.seq, victim.record.request_id
    );
    assert_eq!(problems(&verify(&stack).await), vec![expected.clone()]);
    // The command operators run says the same and fails.
    let settings = stack.settings();
    let output = neuraforge_tests::aws_env(&mut std::process::Command::new(
        workspace_root().join("target/debug/devstack"),
    ))
    .args(["audit-verify", "--table", &table])
    .args([
        "--key-parameter",
        &settings.required(shared::audit::seal::KEY_SETTING).unwrap(),
    ])
    .args([
        "--anchor-parameter",
        &settings
            .required(shared::audit::seal::ANCHOR_SETTING)
            .unwrap(),
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains(&format!("BROKEN {expected}")), "{stdout}");
    rewrite(victim, &victim.record).await.unwrap();
    assert_eq!(
        problems(&verify(&stack).await),
        Vec::<String>::new(),
        "restored"
    );

    // Deleted.
    let gone = &records[4];
    stack
        .dynamodb
        .delete_item()
        .table_name(&table)
        .set_key(Some(key(records_partition(gone.shard), gone.seq)))
        .send()
        .await
        .unwrap();
    let found = problems(&verify(&stack).await);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(&format!(
            "shard {}: record {} is missing",
            gone.shard, gone.seq
        )),
        "{found:?}"
    );

    // Inserted: a made-up record in a sealed range.
    let mut fake = records[0].record.clone();
    fake.request_id = "made-up".into();
    let fake_seq = records[0].seq + 1;
    stack
        .dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some({
            let mut item = key(records_partition(records[0].shard), fake_seq);
            item.insert(
                "record".into(),
                AttributeValue::S(serde_json::to_string(&fake).unwrap()),
            );
            item.insert(
                "hash".into(),
                AttributeValue::S(shared::audit::leaf_hash(records[0].shard, fake_seq, &fake)),
            );
            item
        }))
        .send()
        .await
        .unwrap();
    assert!(problems(&verify(&stack).await).contains(&format!(
        "shard {}: record {fake_seq} (request made-up) was inserted after sealing",
        records[0].shard
    )));

    // The newest digest of a shard deleted with its records: the anchor names it.
    let shard = records[1].shard;
    stack
        .dynamodb
        .delete_item()
        .table_name(&table)
        .set_key(Some(key(digests_partition(shard), 1)))
        .send()
        .await
        .unwrap();
    assert!(
        problems(&verify(&stack).await).contains(&format!(
            "shard {shard}: digest 1 is missing (the anchor names digest 1)"
        )),
        "{:?}",
        problems(&verify(&stack).await)
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
    assert!(records_of(&working, "submit-task").await.is_empty());

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
    let records = records_of(&working, "submit-task").await;
    assert_eq!(records.len(), 1, "recorded once, however often delivered");
    assert_eq!(records[0].record.principal, "alice");
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
        chain = records_of(&log, "task-events").await;
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

#[tokio::test]
async fn a_flood_of_anonymous_requests_is_recorded_up_to_a_bound_and_signed_in_callers_always() {
    let stack = TestStack::new().await;
    let auditor = stack.auditor();
    let get = stack.get_api();
    let read = |who: Option<&str>| {
        request("GET", "/x", who, None)
            .path_param("task_id", "00000000-0000-4000-8000-000000000001")
            .build()
    };
    // The bound is per minute: start where one minute holds the whole flood.
    let into_minute = shared::time::now_millis() % 60_000;
    if into_minute > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_minute + 100) as u64)).await;
    }
    for _ in 0..15 {
        assert_eq!(auditor.respond(&get, read(None)).await.status(), 401);
    }
    let observer = token("olga", &["observer"]);
    for _ in 0..12 {
        auditor.respond(&get, read(Some(&observer))).await;
    }
    let records = records_of(&stack.audit_log(), "get-task").await;
    let anonymous = records
        .iter()
        .filter(|r| r.record.principal == "anonymous")
        .count();
    let olga = records
        .iter()
        .filter(|r| r.record.principal == "olga")
        .count();
    assert_eq!(
        (anonymous, olga),
        (shared::audit::ANONYMOUS_DENIALS_PER_MINUTE as usize, 12)
    );
}
