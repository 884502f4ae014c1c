//! The audit log: one record for every request to a sensitive route, allowed or
//! denied, written once and never changed.
//!
//! - **Writing** (on the request path): one line, `{"audit":{…}}`, on the function's
//!   output, before the answer leaves: no AWS call, nothing read, no shared key. In AWS
//!   the function's log group passes these lines (subscription filter
//!   `{ $.audit.request_id = * }`) to a Firehose stream that writes them, as they were
//!   written, into objects under `records/` of a bucket with S3 Object Lock
//!   ([`store`]). Locally the same objects are written by the local stack's shipper
//!   and the test harness.
//! - **Sealing** (off the request path, [`seal`]): a scheduled function seals the
//!   objects delivered since its last run into a signed digest chained to the previous
//!   one, in the manner of CloudTrail's digest files.
//! - **Verifying** ([`verify`], `devstack audit-verify`): names the first altered,
//!   deleted or inserted record, a missing, altered or unsigned digest, and a deleted
//!   tail (against the anchor the sealer keeps in SSM).

pub mod digest;
pub mod seal;
pub mod store;
pub mod verify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// The principal of a request without a valid token.
pub const ANONYMOUS: &str = "anonymous";

/// The hash before the first digest.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record's line as the function writes it and the bucket keeps it.
pub fn line_of(record: &AuditRecord) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        audit: &'a AuditRecord,
    }
    serde_json::to_string(&Line { audit: record }).expect("an audit record serializes")
}

/// The record a line carries, if it is an audit line.
pub fn record_of_line(line: &str) -> Option<AuditRecord> {
    #[derive(Deserialize)]
    struct Line {
        audit: AuditRecord,
    }
    serde_json::from_str::<Line>(line).ok().map(|l| l.audit)
}

/// What happened to a request, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the epoch.
    pub time: i64,
    pub request_id: String,
    /// The caller's `sub`, or `anonymous` when no valid token came.
    pub principal: String,
    pub roles: Vec<String>,
    pub function: String,
    pub route: String,
    pub method: String,
    /// The task or run the request was about, if any. (An absent field is `None`: lines
    /// carry no nulls.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// SHA-256 of the request body (hex), never the body.
    pub body_sha256: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// A rule an administrator overrode to serve the request (`separation_of_duties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_of: Option<String>,
}

/// What a request's handler tells the audit log about the request, beyond its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// A rule an administrator overrode to serve the request.
    pub override_of: Option<&'static str>,
    /// What the request created, when its path names nothing (a submission's new task).
    pub target: Option<String>,
}

tokio::task_local! {
    /// The notes of the request being handled, collected by the audit middleware.
    static NOTES: std::cell::RefCell<Notes>;
}

/// Marks the current request as served under an override of `rule`: its audit
/// record says so. Outside an audited request it does nothing.
pub fn note_override(rule: &'static str) {
    let _ = NOTES.try_with(|n| n.borrow_mut().override_of = Some(rule));
}

/// Names what the current request created as its audit record's `target` (so no log
/// line has to). Outside an audited request it does nothing.
pub fn note_target(target: impl std::fmt::Display) {
    let _ = NOTES.try_with(|n| n.borrow_mut().target = Some(target.to_string()));
}

/// Runs a handler and returns what it gave with the notes it made.
pub async fn collect_notes<F: std::future::Future>(future: F) -> (F::Output, Notes) {
    NOTES
        .scope(std::cell::RefCell::default(), async {
            let output = future.await;
            (output, NOTES.with(|n| n.take()))
        })
        .await
}

impl AuditRecord {
    /// `allowed` (2xx/3xx), `denied` (401, 403, 429), `rejected` (other 4xx), `error`
    /// (5xx): follows from the status, so the line does not carry it.
    pub fn outcome(&self) -> &'static str {
        Self::outcome_of(self.status)
    }

    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            200..=399 => "allowed",
            401 | 403 | 429 => "denied",
            400..=499 => "rejected",
            _ => "error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit write failed: {0}")]
pub struct AuditError(pub String);

/// Where a function's audit lines go.
#[derive(Clone)]
enum Sink {
    /// The function's output (CloudWatch Logs in AWS, `.local/functions.log` locally).
    Stdout,
    /// Kept in memory for whoever ships them (the test harness, the cost meter).
    Collected(Collected),
    /// Any other writer (one line per `write_all`).
    Writer(Arc<Mutex<Box<dyn std::io::Write + Send>>>),
}

/// Audit lines written to memory, oldest first.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<String>>>);

impl Collected {
    /// An audit log that writes into this collection.
    pub fn log(&self) -> AuditLog {
        AuditLog {
            sink: Sink::Collected(self.clone()),
            anonymous: Arc::default(),
        }
    }

    /// The lines written since the last take.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Clone)]
pub struct AuditLog {
    sink: Sink,
    anonymous: Arc<AnonymousDenials>,
}

/// Anonymous `401`s recorded per source address and minute, per function instance:
/// a flood of unauthenticated requests cannot write unbounded data; the rest are counted
/// (`neuraforge_audit_anonymous_denials_unrecorded_total`).
pub const ANONYMOUS_DENIALS_PER_MINUTE: u32 = 10;

/// Addresses tracked per minute: past this, the minute's counts start over (the bound
/// on memory; a flood from more addresses than this is still bounded per address).
const TRACKED_ADDRESSES: usize = 4096;

#[derive(Debug, Default)]
struct AnonymousDenials {
    /// The minute counted, and the denials recorded per address in it.
    seen: std::sync::Mutex<(i64, std::collections::HashMap<String, u32>)>,
}

impl AnonymousDenials {
    /// Whether this denial is recorded: the first few per address and minute are.
    fn admit(&self, address: &str, now_millis: i64) -> bool {
        let minute = now_millis.div_euclid(60_000);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0 != minute || seen.1.len() >= TRACKED_ADDRESSES {
            *seen = (minute, std::collections::HashMap::new());
        }
        let count = seen.1.entry(address.to_string()).or_default();
        *count += 1;
        *count <= ANONYMOUS_DENIALS_PER_MINUTE
    }
}

impl AuditLog {
    /// Lines on the function's output: the log in AWS.
    pub fn stdout() -> Self {
        Self {
            sink: Sink::Stdout,
            anonymous: Arc::default(),
        }
    }

    /// Lines written to `writer`.
    pub fn to_writer(writer: impl std::io::Write + Send + 'static) -> Self {
        Self {
            sink: Sink::Writer(Arc::new(Mutex::new(Box::new(writer)))),
            anonymous: Arc::default(),
        }
    }

    /// Writes a record's line: one `write` of the whole line, so lines of concurrent
    /// requests never interleave.
    pub fn record(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let line = line_of(record);
        let write = |out: &mut dyn std::io::Write| {
            out.write_all(format!("{line}\n").as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| AuditError(format!("writing the audit line: {e}")))
        };
        match &self.sink {
            Sink::Stdout => write(&mut std::io::stdout().lock()),
            Sink::Writer(w) => write(&mut **w.lock().unwrap_or_else(|e| e.into_inner())),
            Sink::Collected(c) => {
                c.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                Ok(())
            }
        }
    }
}

/// What is known of a request before its handler runs.
pub struct PendingAudit {
    record: AuditRecord,
}

fn source_ip(request: &lambda_http::Request) -> Option<String> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.clone(),
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl AuditLog {
    /// Starts the record of a request: who (the caller the pipeline verified, or
    /// `anonymous`), what, and a digest of the body.
    pub fn begin(
        &self,
        route: &crate::routes::Route,
        request: &lambda_http::Request,
        request_id: &str,
        principal: Option<&crate::auth::Principal>,
    ) -> PendingAudit {
        use crate::http::request::{body_bytes, header_str, path_param};
        let target = path_param(request, "task_id").or_else(|| path_param(request, "run_id"));
        PendingAudit {
            record: AuditRecord {
                time: crate::time::now_millis(),
                request_id: request_id.to_string(),
                principal: principal.map_or_else(|| ANONYMOUS.to_string(), |p| p.subject.clone()),
                roles: principal
                    .map(|p| p.roles.iter().cloned().collect())
                    .unwrap_or_default(),
                function: route.function.to_string(),
                route: route.path.to_string(),
                method: request.method().as_str().to_string(),
                target,
                body_sha256: hex::encode(Sha256::digest(body_bytes(request))),
                status: 0,
                source_ip: source_ip(request),
                user_agent: header_str(request, "user-agent")
                    .map(|u| u.chars().take(256).collect()),
                override_of: None,
            },
        }
    }

    /// Records the request with its final status and what its handler noted.
    pub fn finish(
        &self,
        pending: PendingAudit,
        status: u16,
        notes: Notes,
    ) -> Result<(), AuditError> {
        let mut record = pending.record;
        record.status = status;
        record.override_of = notes.override_of.map(String::from);
        if record.target.is_none() {
            record.target = notes.target;
        }
        if status == 401 && record.principal == ANONYMOUS {
            let address = record.source_ip.as_deref().unwrap_or("unknown");
            if !self.anonymous.admit(address, record.time) {
                metrics::counter!(
                    crate::telemetry::names::AUDIT_DENIALS_UNRECORDED,
                    "function" => record.function.clone()
                )
                .increment(1);
                return Ok(());
            }
        }
        self.record(&record)
    }
}

#[cfg(test)]
mod tests {
    use super::store::RecordObject;
    use super::*;

    fn record(i: u16) -> AuditRecord {
        AuditRecord {
            time: 1_700_000_000_000 + i64::from(i),
            request_id: format!("r{i}"),
            principal: "alice".into(),
            roles: vec!["submitter".into()],
            function: "submit-task".into(),
            route: "/api/v1/submit_task".into(),
            method: "POST".into(),
            target: None,
            body_sha256: "ab".into(),
            status: 200,
            source_ip: Some("127.0.0.1".into()),
            user_agent: None,
            override_of: None,
        }
    }

    fn object(key: &str, delivered: i64, requests: &[u16]) -> RecordObject {
        RecordObject {
            key: key.into(),
            delivered,
            lines: requests.iter().map(|i| line_of(&record(*i))).collect(),
        }
    }

    const KEY: &[u8] = b"the audit signing key";

    /// Three objects sealed as two digests (received before 2 000 and before 5 000).
    fn sealed() -> (Vec<RecordObject>, Vec<seal::Digest>) {
        let objects = vec![
            object("records/a", 1_000, &[1, 2]),
            object("records/b", 3_000, &[3, 4, 5]),
            object("records/c", 4_000, &[6]),
        ];
        let mut digests: Vec<seal::Digest> = Vec::new();
        for (number, (from, until)) in [(0i64, 2_000i64), (2_000, 5_000)].into_iter().enumerate() {
            let prev = digests
                .last()
                .map_or(GENESIS.to_string(), |d| d.hash.clone());
            let sealed = objects
                .iter()
                .filter(|o| (from..until).contains(&o.delivered))
                .map(|o| seal::SealedObject::of(&o.key, o.delivered, &o.lines))
                .collect();
            digests.push(
                seal::Digest {
                    number: number as u64 + 1,
                    from,
                    until,
                    prev,
                    objects: sealed,
                    hash: String::new(),
                    signature: String::new(),
                }
                .sign(KEY),
            );
        }
        (objects, digests)
    }

    fn anchor_of(d: &seal::Digest) -> seal::AnchorEntry {
        seal::AnchorEntry {
            number: d.number,
            hash: d.hash.clone(),
            until: d.until,
        }
    }

    #[test]
    fn history_past_the_retention_horizon_may_be_gone_and_nothing_younger() {
        let (objects, digests) = sealed();
        let anchor = anchor_of(&digests[1]);
        // Digest 1 and its object expired; digest 2 began before the horizon.
        let kept = &objects[1..];
        let verify = |horizon| verify::verify_log(kept, &digests[1..], KEY, Some(&anchor), horizon);
        assert_eq!(verify(None).unwrap_err(), "digest 1 is missing");
        assert_eq!(verify(Some(1_500)).unwrap_err(), "digest 1 is missing");
        assert_eq!(verify(Some(2_500)).map(|r| r.sealed), Ok(4));
        // A sealed object may be gone only if S3 received it before the horizon.
        let fewer = &objects[2..];
        let check = |horizon| verify::verify_log(fewer, &digests[1..], KEY, Some(&anchor), horizon);
        assert!(check(Some(3_500)).is_ok());
        assert_eq!(
            check(Some(2_500)).unwrap_err(),
            "records/b is missing (sealed in digest 2): its 3 record(s) were deleted"
        );
        assert_eq!(
            verify::verify_log(fewer, &digests, KEY, Some(&anchor), Some(1_500)).unwrap_err(),
            "records/b is missing (sealed in digest 2): its 3 record(s) were deleted"
        );
        // Every digest expired: the anchor names one that may be gone.
        assert!(verify::verify_log(&[], &[], KEY, Some(&anchor), Some(6_000)).is_ok());
        assert!(verify::verify_log(&[], &[], KEY, Some(&anchor), Some(4_000)).is_err());
    }

    #[test]
    fn an_intact_log_verifies_and_newer_objects_count_as_unsealed() {
        let (mut objects, digests) = sealed();
        objects.push(object("records/d", 6_000, &[9, 10]));
        let report =
            verify::verify_log(&objects, &digests, KEY, Some(&anchor_of(&digests[1])), None);
        assert_eq!(
            report,
            Ok(verify::Report {
                digests: 2,
                sealed: 6,
                unsealed: 2
            })
        );
    }

    #[test]
    fn an_altered_deleted_inserted_or_moved_record_is_named() {
        let (objects, digests) = sealed();
        let anchor = anchor_of(&digests[1]);
        let check = |objects: &[RecordObject]| {
            verify::verify_log(objects, &digests, KEY, Some(&anchor), None).unwrap_err()
        };
        let mut altered = objects.clone();
        let mut forged = record(4);
        forged.status = 403;
        altered[1].lines[1] = line_of(&forged);
        assert_eq!(
            check(&altered),
            "records/b: line 2 (request r4) was altered"
        );
        let mut deleted = objects.clone();
        deleted[1].lines.remove(1);
        assert_eq!(
            check(&deleted),
            "records/b: line 2 is missing (sealed in digest 2)"
        );
        let mut tail = objects.clone();
        tail[1].lines.pop();
        assert_eq!(
            check(&tail),
            "records/b: line 3 is missing (sealed in digest 2)"
        );
        let mut inserted = objects.clone();
        inserted[0].lines.insert(1, line_of(&record(7)));
        assert_eq!(
            check(&inserted),
            "records/a: line 2 (request r7) was inserted after sealing"
        );
        let mut reordered = objects.clone();
        reordered[1].lines.swap(0, 2);
        assert_eq!(
            check(&reordered),
            "records/b: line 1 (request r5) was moved: the lines were re-ordered after sealing"
        );
        let mut gone = objects.clone();
        gone.remove(2);
        assert_eq!(
            check(&gone),
            "records/c is missing (sealed in digest 2): its 1 record(s) were deleted"
        );
        let mut planted = objects.clone();
        planted.push(object("records/x", 2_500, &[8]));
        assert_eq!(
            check(&planted),
            "records/x was inserted after sealing (received within digest 2's period, \
             which does not list it)"
        );
    }

    #[test]
    fn a_forged_deleted_or_replaced_digest_is_named() {
        let (objects, digests) = sealed();
        let anchor = anchor_of(&digests[1]);
        // A record changed and its digest re-hashed: the signature no longer holds.
        let mut objects_forged = objects.clone();
        let mut forged_record = record(1);
        forged_record.principal = "mallory".into();
        objects_forged[0].lines[0] = line_of(&forged_record);
        let mut forged = digests.clone();
        forged[0].objects[0] = seal::SealedObject::of("records/a", 1_000, &objects_forged[0].lines);
        forged[0].hash = forged[0].compute_hash();
        assert_eq!(
            verify::verify_log(&objects_forged, &forged, KEY, Some(&anchor), None).unwrap_err(),
            "digest 1 is not signed by the audit key"
        );
        // The newest digest and its objects deleted: the anchor still names it.
        let tail = verify::verify_log(&objects[..1], &digests[..1], KEY, Some(&anchor), None);
        assert_eq!(
            tail.unwrap_err(),
            "digest 2 is missing (the anchor names digest 2)"
        );
        // A digest in the middle deleted: numbering breaks.
        assert_eq!(
            verify::verify_log(&objects, &digests[1..], KEY, None, None).unwrap_err(),
            "digest 1 is missing"
        );
        // Digests of another key (a self-made log) are refused.
        assert_eq!(
            verify::verify_log(&objects, &digests, b"another key", None, None).unwrap_err(),
            "digest 1 is not signed by the audit key"
        );
        // A digest replaced by another properly signed one: the anchor no longer matches.
        let mut replaced = digests.clone();
        replaced[1] = seal::Digest {
            objects: vec![],
            ..replaced[1].clone()
        }
        .sign(KEY);
        assert_eq!(
            verify::verify_log(&objects[..1], &replaced, KEY, Some(&anchor), None).unwrap_err(),
            "digest 2 is not the one the anchor names"
        );
    }

    #[test]
    fn a_line_carries_its_record_and_nothing_else_reads_as_one() {
        let r = record(3);
        let line = line_of(&r);
        assert!(line.starts_with(r#"{"audit":{"#), "{line}");
        assert_eq!(record_of_line(&line), Some(r));
        assert_eq!(record_of_line(r#"{"_aws":{},"level":"INFO"}"#), None);
    }

    #[test]
    fn collected_lines_are_taken_once() {
        let collected = Collected::default();
        let log = collected.log();
        log.record(&record(1)).unwrap();
        log.record(&record(2)).unwrap();
        let lines = collected.take();
        assert_eq!(lines.len(), 2);
        assert_eq!(record_of_line(&lines[1]).unwrap().request_id, "r2");
        assert!(collected.take().is_empty());
    }

    #[test]
    fn anonymous_denials_are_recorded_up_to_the_limit_per_address_and_minute() {
        let denials = AnonymousDenials::default();
        let minute = 1_795_000_020_000;
        let admitted = (0..15)
            .filter(|_| denials.admit("198.51.100.7", minute))
            .count();
        assert_eq!(admitted, ANONYMOUS_DENIALS_PER_MINUTE as usize);
        assert!(
            denials.admit("203.0.113.9", minute),
            "another address has its own count"
        );
        assert!(
            denials.admit("198.51.100.7", minute + 60_000),
            "a new minute starts over"
        );
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(AuditRecord::outcome_of(200), "allowed");
        assert_eq!(AuditRecord::outcome_of(403), "denied");
        assert_eq!(AuditRecord::outcome_of(429), "denied");
        assert_eq!(AuditRecord::outcome_of(422), "rejected");
        assert_eq!(AuditRecord::outcome_of(503), "error");
    }
}
