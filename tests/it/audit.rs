//! The audit log on moto: one line per sensitive request, written on the function's output
//! with no AWS call; shipped into the audit bucket as Firehose does; sealed into signed,
//! chained digests off the request path; tampering is found at the right record, object
//! or digest.

use neuraforge_tests::recorder::Recorder;
use neuraforge_tests::{TestStack, json_body, request, submit_request, token, workspace_root};
use shared::audit::seal::{Digest, Sealer};
use shared::audit::store::{AuditStore, digest_key};
use shared::audit::verify::{Report, verify_all};
use shared::audit::{AuditLog, AuditRecord, line_of, record_of_line};
use shared::http::Pipeline;
use shared::tasks::stream::{StreamConfig, TaskEventsApi};
use std::time::Duration;

/// The stack's sealer, sealing everything already delivered (no grace).
async fn sealer(stack: &TestStack) -> Sealer {
    let settings = stack.settings_with(&[("AUDIT__SEAL_GRACE_SECONDS", "0")]);
    Sealer::from_settings(&stack.sdk, &settings).await.unwrap()
}

/// S3 knows `LastModified` to the second: waits for the next second to begin, when a run
/// seals this one's objects; the time then.
async fn next_second() -> i64 {
    let into = shared::time::now_millis().rem_euclid(1_000) as u64;
    tokio::time::sleep(Duration::from_millis(1_000 - into + 5)).await;
    shared::time::now_millis()
}

/// The whole log's verification, as `devstack audit-verify` does it.
async fn verify(stack: &TestStack) -> Result<Report, String> {
    verify_at(stack, shared::time::now_millis()).await
}

/// The whole log's verification at `now`, with the retention period behind it.
async fn verify_at(stack: &TestStack, now: i64) -> Result<Report, String> {
    let sealer = sealer(stack).await;
    let anchor =
        shared::audit::seal::read_anchor(&sealer.ssm, sealer.anchor_parameter.as_deref().unwrap())
            .await
            .unwrap();
    verify_all(
        &stack.audit_store(),
        neuraforge_tests::TEST_AUDIT_KEY.as_bytes(),
        anchor.as_ref(),
        Some(shared::audit::seal::horizon(sealer.retention, now)),
    )
    .await
    .unwrap()
}

/// What verification reports of an intact log with nothing left unsealed.
fn intact(digests: usize, sealed: usize) -> Result<Report, String> {
    Ok(Report {
        digests,
        sealed,
        unsealed: 0,
    })
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn read_request(who: &str, i: u32) -> shared::lambda_http::Request {
    request("GET", "/x", Some(&token(who, &["observer"])), None)
        .path_param("task_id", &format!("00000000-0000-4000-8000-{i:012}"))
        .build()
}

/// Audited reads of tasks `ids` by olga, delivered as one object (a Firehose buffer's
/// worth); its key.
async fn delivered_reads(stack: &TestStack, ids: std::ops::Range<u32>) -> String {
    let (auditor, get) = (stack.auditor(), stack.get_api());
    for i in ids {
        auditor.respond(&get, read_request("olga", i)).await;
    }
    stack.ship_audit().await.unwrap()
}

/// Writes `body` over `key` (a new version: what someone with `s3:PutObject` can do).
async fn overwrite(store_s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: String) {
    store_s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap();
}

fn s3(stack: &TestStack) -> aws_sdk_s3::Client {
    shared::aws::s3(&stack.sdk)
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

    let submits = stack.audit_records_of("submit-task").await;
    let reads = stack.audit_records_of("get-task").await;
    assert_eq!(
        (submits.len(), reads.len()),
        (4, 1),
        "one record per request"
    );
    let mut summary: Vec<(&str, u16, &str)> = submits
        .iter()
        .map(|r| (r.principal.as_str(), r.status, r.outcome()))
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
    let first = submits.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(first.body_sha256, sha256(body));
    assert_eq!(
        (
            first.method.as_str(),
            first.route.as_str(),
            first.roles.clone()
        ),
        ("POST", "/api/v1/submit_task", vec!["submitter".to_string()])
    );
    assert_eq!(reads[0].target.as_deref(), Some(task_id.as_str()));
    // A submission's record names the task it created; a refused one names none.
    assert_eq!(first.target.as_deref(), Some(task_id.as_str()));
    assert!(
        submits
            .iter()
            .filter(|r| r.status != 200)
            .all(|r| r.target.is_none())
    );
    let stored = serde_json::to_string(&stack.audit_records().await).unwrap();
    assert!(
        !stored.contains(&alice) && !stored.contains("confidential prompt text"),
        "no token, no body"
    );
}

#[tokio::test]
async fn a_request_records_itself_without_any_aws_call_and_concurrent_ones_seal_intact() {
    let stack = TestStack::new().await;
    // Through a recording SDK: the audited request's calls are its handler's alone.
    let recorder = Recorder::default();
    let recorded = stack.with_sdk(recorder.sdk(&stack.sdk));
    let (auditor, get) = (recorded.auditor(), recorded.get_api());
    let requests = (0..12).map(|i| auditor.respond(&get, read_request("olga", i)));
    futures_util::future::join_all(requests).await;
    let calls: Vec<String> = recorder
        .take_calls()
        .iter()
        .map(|c| c.target.clone())
        .collect();
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("AmazonS3") && !c.contains("PutItem")),
        "an audit record is a line, not a call: {calls:?}"
    );
    stack.ship_audit().await.unwrap();

    let report = sealer(&stack)
        .await
        .seal_once(next_second().await)
        .await
        .unwrap();
    assert_eq!((report.digests, report.objects, report.records), (1, 1, 12));
    assert_eq!(verify(&stack).await, intact(1, 12));
}

#[tokio::test]
async fn sealing_leaves_young_objects_alone_costs_no_write_when_idle_and_racing_sealers_write_each_digest_once()
 {
    let stack = TestStack::new().await;
    delivered_reads(&stack, 0..4).await;
    // With the default grace (5 minutes) nothing this young is sealed.
    let patient = Sealer::from_settings(&stack.sdk, &stack.settings())
        .await
        .unwrap();
    assert_eq!(
        patient
            .seal_once(next_second().await)
            .await
            .unwrap()
            .digests,
        0
    );

    // Two sealers at once: digest 1 is written once, by one of them.
    let (a, b) = (sealer(&stack).await, sealer(&stack).await);
    let now = next_second().await;
    let (ra, rb) = tokio::join!(a.seal_once(now), b.seal_once(now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.digests + rb.digests, ra.records + rb.records), (1, 4));
    assert!(verify(&stack).await.is_ok());

    // Idle: nothing new, nothing written.
    let recorder = Recorder::default();
    let idle = Sealer {
        store: AuditStore::new(&recorder.sdk(&stack.sdk), stack.audit_store().bucket()),
        ..sealer(&stack).await
    };
    assert_eq!(
        idle.seal_once(next_second().await).await.unwrap().digests,
        0
    );
    let writes: Vec<String> = recorder
        .take_calls()
        .iter()
        .map(|c| c.target.clone())
        .filter(|t| t.contains("Put"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // A new record later: the next digest follows the last one.
    delivered_reads(&stack, 99..100).await;
    let report = a.seal_once(next_second().await).await.unwrap();
    assert_eq!((report.digests, report.records), (1, 1));
    assert_eq!(verify(&stack).await, intact(2, 5));
}

#[tokio::test]
async fn a_sealing_run_that_crashed_before_its_anchor_is_followed_without_a_gap_or_a_double_seal() {
    let stack = TestStack::new().await;
    let sealer = sealer(&stack).await;
    delivered_reads(&stack, 1..2).await;
    assert_eq!(
        sealer.seal_once(next_second().await).await.unwrap().digests,
        1
    );

    // A run that wrote digest 2 and died before the anchor (a sealer that writes none).
    delivered_reads(&stack, 2..3).await;
    let crashed = Sealer {
        anchor_parameter: None,
        ..self::sealer(&stack).await
    };
    assert_eq!(
        crashed
            .seal_once(next_second().await)
            .await
            .unwrap()
            .digests,
        1
    );
    let anchor =
        shared::audit::seal::read_anchor(&sealer.ssm, sealer.anchor_parameter.as_deref().unwrap())
            .await
            .unwrap();
    assert_eq!(anchor.map(|a| a.number), Some(1), "the anchor lags");

    // The next run finds digest 2 and goes on from it: nothing sealed twice, no gap.
    assert_eq!(
        sealer.seal_once(next_second().await).await.unwrap().digests,
        0
    );
    delivered_reads(&stack, 3..4).await;
    let report = sealer.seal_once(next_second().await).await.unwrap();
    assert_eq!((report.digests, report.records), (1, 1));
    assert_eq!(verify(&stack).await, intact(3, 3));
}

#[tokio::test]
async fn once_history_has_expired_sealing_goes_on_from_the_anchor_and_verification_from_what_is_kept()
 {
    let stack = TestStack::new().await;
    let sealer = sealer(&stack).await;
    let old = delivered_reads(&stack, 1..2).await;
    assert_eq!(
        sealer.seal_once(next_second().await).await.unwrap().digests,
        1
    );
    // The bucket's lifecycle removes the first digest and its object after the retention
    // period (here: deleted by hand, and every check done as if that much later).
    let s3 = s3(&stack);
    let bucket = stack.audit_store().bucket().to_string();
    for key in [digest_key(1), old] {
        s3.delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    }
    let later = sealer.retention.as_millis() as i64 + 86_400_000;
    assert_eq!(
        verify(&stack).await,
        Err("digest 1 is missing (the anchor names digest 1)".to_string()),
        "within the retention period, nothing may be gone"
    );
    assert!(verify_at(&stack, next_second().await + later).await.is_ok());

    // A new record: the next digest chains to the expired one through the anchor.
    delivered_reads(&stack, 2..3).await;
    let report = sealer.seal_once(next_second().await + later).await.unwrap();
    assert_eq!((report.digests, report.records), (1, 1));
    let kept = stack.audit_store().digests().await.unwrap();
    assert_eq!(kept.iter().map(|d| d.number).collect::<Vec<_>>(), vec![2]);
    assert_eq!(
        verify_at(&stack, shared::time::now_millis() + later).await,
        intact(1, 1)
    );
}

#[tokio::test]
async fn tampering_with_sealed_records_or_digests_is_named_and_the_command_says_so() {
    let stack = TestStack::new().await;
    let first = delivered_reads(&stack, 0..3).await;
    let second = delivered_reads(&stack, 3..6).await;
    sealer(&stack)
        .await
        .seal_once(next_second().await)
        .await
        .unwrap();
    assert!(verify(&stack).await.is_ok());

    let store = stack.audit_store();
    let bucket = store.bucket().to_string();
    let s3 = s3(&stack);
    let lines = store.lines(&first).await.unwrap().unwrap();
    let text = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

    // Altered: a record's principal rewritten in place (a new version of its object).
    let mut forged: AuditRecord = record_of_line(&lines[1]).unwrap();
    let request_id = forged.request_id.clone();
    forged.principal = "mallory".into();
    let mut altered = lines.clone();
    altered[1] = line_of(&forged);
    overwrite(&s3, &bucket, &first, text(&altered)).await;
    let expected = format!("{first}: line 2 (request {request_id}) was altered");
    assert_eq!(verify(&stack).await, Err(expected.clone()));
    // The command operators run says the same and fails.
    let settings = stack.settings();
    let output = neuraforge_tests::aws_env(&mut std::process::Command::new(
        workspace_root().join("target/debug/devstack"),
    ))
    .args(["audit-verify", "--bucket", &bucket])
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
    overwrite(&s3, &bucket, &first, text(&lines)).await;
    assert!(verify(&stack).await.is_ok(), "restored");

    // Deleted: a record's line left out.
    let mut without = lines.clone();
    without.remove(0);
    overwrite(&s3, &bucket, &first, text(&without)).await;
    assert_eq!(
        verify(&stack).await,
        Err(format!("{first}: line 1 is missing (sealed in digest 1)"))
    );
    overwrite(&s3, &bucket, &first, text(&lines)).await;

    // Inserted: a made-up record among sealed ones.
    let mut fake = record_of_line(&lines[0]).unwrap();
    fake.request_id = "made-up".into();
    let mut with = lines.clone();
    with.insert(2, line_of(&fake));
    overwrite(&s3, &bucket, &first, text(&with)).await;
    assert_eq!(
        verify(&stack).await,
        Err(format!(
            "{first}: line 3 (request made-up) was inserted after sealing"
        ))
    );
    overwrite(&s3, &bucket, &first, text(&lines)).await;
    assert!(verify(&stack).await.is_ok(), "restored");

    // A whole object deleted (a delete marker over its versions).
    s3.delete_object()
        .bucket(&bucket)
        .key(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        verify(&stack).await,
        Err(format!(
            "{second} is missing (sealed in digest 1): its 3 record(s) were deleted"
        ))
    );

    // The digest rewritten to match a forged record, its hash recomputed: unsigned.
    let digest: Digest = store.digest(1).await.unwrap().unwrap();
    let mut rewritten = digest.clone();
    rewritten.objects[0] =
        shared::audit::seal::SealedObject::of(&first, digest.objects[0].delivered, &altered);
    rewritten.hash = rewritten.compute_hash();
    overwrite(
        &s3,
        &bucket,
        &digest_key(1),
        serde_json::to_string(&rewritten).unwrap(),
    )
    .await;
    overwrite(&s3, &bucket, &first, text(&altered)).await;
    assert_eq!(
        verify(&stack).await,
        Err("digest 1 is not signed by the audit key".to_string())
    );

    // The newest digest deleted with its objects: the anchor still names it.
    for key in [digest_key(1), first.clone()] {
        s3.delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        verify(&stack).await,
        Err("digest 1 is missing (the anchor names digest 1)".to_string())
    );
}

#[tokio::test]
async fn an_object_put_into_a_sealed_period_is_named() {
    let stack = TestStack::new().await;
    delivered_reads(&stack, 1..2).await;
    // Sealed far ahead: the period reaches past the object planted next.
    sealer(&stack)
        .await
        .seal_once(shared::time::now_millis() + 60_000)
        .await
        .unwrap();
    let planted = stack
        .audit_store()
        .put_records(
            "forger",
            &[line_of(&neuraforge_tests::audit_record("made-up", 1))],
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        verify(&stack).await,
        Err(format!(
            "{planted} was inserted after sealing (received within digest 1's period, which \
             does not list it)"
        ))
    );
}

/// A writer that always fails, as a closed standard output would.
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_request_that_cannot_be_recorded_fails() {
    let stack = TestStack::new().await;
    let auditor = Pipeline::audited(stack.authenticator(), AuditLog::to_writer(Broken));
    let response = auditor
        .respond(&stack.get_api(), read_request("olga", 1))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        json_body(&response)["type"],
        "urn:neuraforge:problem:service-unavailable"
    );
}

#[tokio::test]
async fn a_stream_is_recorded_before_its_body_ends() {
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
    // No waiting: the line was written before the body's last chunk.
    let records = stack.audit_records_of("task-events").await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].status, records[0].target.clone()),
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
    let records = stack.audit_records_of("get-task").await;
    let anonymous = records
        .iter()
        .filter(|r| r.principal == "anonymous")
        .count();
    let olga = records.iter().filter(|r| r.principal == "olga").count();
    assert_eq!(
        (anonymous, olga),
        (shared::audit::ANONYMOUS_DENIALS_PER_MINUTE as usize, 12)
    );
}

#[test]
fn every_authenticated_route_s_log_group_sends_its_audit_lines_to_the_audit_bucket() {
    let template = devstack::Template::load(&workspace_root().join("template.yaml")).unwrap();
    let logical_of = |binary: &str| {
        template
            .of_kind("AWS::Serverless::Function")
            .find(|(_, f)| f.metadata["BuildProperties"]["Binary"] == binary)
            .map(|(l, _)| l.clone())
            .unwrap()
    };
    let subscriptions: Vec<&devstack::template::Resource> = template
        .of_kind("AWS::Logs::SubscriptionFilter")
        .filter(|(_, s)| s.properties["DestinationArn"]["Fn::GetAtt"] == "AuditDeliveryStream.Arn")
        .map(|(_, s)| s)
        .collect();
    for route in shared::routes::ALL.iter().filter(|r| r.authenticated) {
        let logical = logical_of(route.function);
        let group = format!("{logical}Logs");
        assert!(
            subscriptions.iter().any(|s| {
                s.properties["LogGroupName"]["Ref"] == group.as_str()
                    && s.properties["FilterPattern"] == "{ $.audit.request_id = * }"
            }),
            "{}: no audit subscription on {group}",
            route.function
        );
    }
    // The pattern passes exactly the lines the functions write.
    let line = line_of(&neuraforge_tests::audit_record("r1", 1));
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(parsed["audit"]["request_id"].is_string());
}
