//! The audit log: one record for every request to a sensitive route, allowed or
//! denied, written once and never changed.
//!
//! - **Writing** (on the request path): one conditional `PutItem` per request, under
//!   `chain_id = "records#<shard>"` (16 shards, by request id) and `seq = time ms ×
//!   1000 + a number from the request id`: no head to read, no transaction, no item
//!   written by every request. The key follows from the record, so a retried write
//!   finds its own record (`AlreadyRecorded`); a different request on the same key
//!   (rare) takes the next `seq`. A request whose record can be neither put nor queued
//!   for the `audit-writer` is refused (`503`): none goes unrecorded.
//! - **Sealing** (off the request path, [`seal`]): a scheduled function seals each
//!   shard's records older than a grace period into signed digests chained to the
//!   shard's previous digest, in the manner of CloudTrail's digest files.
//! - **Verifying** ([`verify`], `devstack audit-verify`): names the first altered,
//!   deleted or inserted record, a missing, altered or unsigned digest, and a deleted
//!   tail (against the anchor the sealer keeps in SSM).

pub mod seal;
pub mod verify;

use crate::aws::describe_error;
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Appended, Item, n, s};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The principal of a request without a valid token.
pub const ANONYMOUS: &str = "anonymous";

/// How many partitions the records are spread over.
pub const SHARDS: u32 = 16;

/// Room in `seq` below one millisecond: requests of one shard and millisecond get
/// different keys from their ids, and probe upwards on the rare collision.
const SEQ_PER_MS: u64 = 1000;

/// The hash before a shard's first digest.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The partition of a shard's records.
pub fn records_partition(shard: u32) -> String {
    format!("records#{shard}")
}

/// The shard of a request's record, and where in the millisecond its key starts.
fn placement(request_id: &str) -> (u32, u64) {
    let digest = Sha256::digest(request_id.as_bytes());
    let shard = u32::from(digest[0]) % SHARDS;
    let offset = u64::from(u16::from_be_bytes([digest[1], digest[2]])) % SEQ_PER_MS;
    (shard, offset)
}

/// The shard and first candidate `seq` of a record.
pub fn key_of(record: &AuditRecord) -> (u32, u64) {
    let (shard, offset) = placement(&record.request_id);
    (shard, record.time.max(0) as u64 * SEQ_PER_MS + offset)
}

/// SHA-256 over a record's place (shard, seq) and its canonical JSON: what a digest seals.
pub fn leaf_hash(shard: u32, seq: u64, record: &AuditRecord) -> String {
    let body = serde_json::to_string(record).expect("an audit record serializes");
    let mut hasher = Sha256::new();
    for part in [records_partition(shard).as_str(), &seq.to_string(), &body] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
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
    /// The task or run the request was about, if any.
    pub target: Option<String>,
    /// SHA-256 of the request body (hex), never the body.
    pub body_sha256: String,
    pub status: u16,
    /// `allowed` (2xx/3xx), `denied` (401, 403, 404 of an unreadable object, 429),
    /// `rejected` (other 4xx), `error` (5xx).
    pub outcome: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// A rule an administrator overrode to serve the request (`separation_of_duties`).
    /// Absent from records without one, so their hashes are unchanged.
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
    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            200..=399 => "allowed",
            401 | 403 | 429 => "denied",
            400..=499 => "rejected",
            _ => "error",
        }
    }
}

/// A record as stored: its place and the hash the sealer seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub shard: u32,
    pub seq: u64,
    pub hash: String,
    pub record: AuditRecord,
}

#[derive(Debug, thiserror::Error)]
#[error("audit write failed: {0}")]
pub struct AuditError(pub String);

#[derive(Clone)]
pub struct AuditLog {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queue_url: String,
    anonymous: std::sync::Arc<AnonymousDenials>,
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

/// Keys to probe past a taken one before giving up (collisions need the same shard,
/// millisecond and offset: a handful at most).
const MAX_PROBES: u64 = 64;

impl AuditLog {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        queue_url: impl Into<String>,
    ) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            table: table.into(),
            queue_url: queue_url.into(),
            anonymous: std::sync::Arc::default(),
        }
    }

    /// `AUDIT_TABLE` and `AUDIT_QUEUE_URL`.
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(
            sdk,
            settings.required("AUDIT_TABLE")?,
            settings.required("AUDIT_QUEUE_URL")?,
        ))
    }

    pub(crate) fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Records a request: put, or queued for the audit writer.
    pub async fn record(&self, record: &AuditRecord) -> Result<(), AuditError> {
        match self.append(record).await {
            Ok(_) => Ok(()),
            Err(append_error) => {
                tracing::warn!(
                    error = %append_error, request_id = %record.request_id,
                    "audit append failed; queueing the record"
                );
                let body = serde_json::to_string(&QueuedRecord {
                    chain_id: record.function.clone(),
                    record: record.clone(),
                })
                .map_err(|e| AuditError(e.to_string()))?;
                self.sqs
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        AuditError(format!(
                            "append: {append_error}; queue: {}",
                            describe_error(&e)
                        ))
                    })
            }
        }
    }

    /// Puts the record under its key, unless it is already there. A key another request
    /// took first (the put's condition hands back the item that holds it) moves on to
    /// the next `seq`.
    pub async fn append(&self, record: &AuditRecord) -> Result<Appended, AuditError> {
        let (shard, first) = key_of(record);
        let body = serde_json::to_string(record).map_err(|e| AuditError(e.to_string()))?;
        for seq in first..first + MAX_PROBES {
            let hash = leaf_hash(shard, seq, record);
            let put = self
                .dynamodb
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Item::from([
                    ("chain_id".into(), s(&records_partition(shard))),
                    ("seq".into(), n(seq)),
                    ("hash".into(), s(&hash)),
                    ("record".into(), s(&body)),
                ])))
                .condition_expression("attribute_not_exists(seq)")
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let err = match put {
                Ok(_) => return Ok(Appended::Written),
                Err(err) => err,
            };
            use aws_sdk_dynamodb::operation::put_item::PutItemError;
            let holder = match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(taken)) => taken
                    .item()
                    .and_then(|i| crate::dynamo::get_s(i, "record"))
                    .and_then(|held| serde_json::from_str::<AuditRecord>(&held).ok()),
                _ => return Err(AuditError(describe_error(&err))),
            };
            // The key holds this very request: an earlier try (or the queue) wrote it.
            if holder.is_some_and(|h| h.request_id == record.request_id) {
                return Ok(Appended::AlreadyRecorded);
            }
        }
        Err(AuditError(format!(
            "{MAX_PROBES} keys after {first} in shard {shard} were all taken"
        )))
    }

    /// A shard's records with `from <= seq < until`, in order.
    pub async fn records(
        &self,
        shard: u32,
        from: u64,
        until: u64,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        let query = self
            .partition_query(&records_partition(shard), "AND seq BETWEEN :from AND :last")
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":last", n(until.saturating_sub(1)));
        self.query_all(query)
            .await?
            .iter()
            .map(|item| stored_record(shard, item))
            .collect()
    }

    /// A strongly consistent query of one partition (`chain_id`), with more of a key
    /// condition after it (`AND seq …`, or nothing).
    pub(crate) fn partition_query(
        &self,
        partition: &str,
        and: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("chain_id = :c {and}").trim().to_string())
            .expression_attribute_values(":c", s(partition))
            .consistent_read(true)
    }

    /// Every item a query matches, page after page.
    pub(crate) async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, AuditError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AuditError(describe_error(&e)))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// The records one function wrote, oldest first (operators' reads and the tests:
    /// every shard is read).
    pub async fn records_of(&self, function: &str) -> Result<Vec<StoredRecord>, AuditError> {
        let mut records: Vec<StoredRecord> = self
            .all_records()
            .await?
            .into_iter()
            .filter(|r| r.record.function == function)
            .collect();
        records.sort_by_key(|r| (r.record.time, r.shard, r.seq));
        Ok(records)
    }

    /// Every record of every shard (operators' reads and the tests), by shard.
    pub async fn all_records(&self) -> Result<Vec<StoredRecord>, AuditError> {
        let mut out = Vec::new();
        for shard in 0..SHARDS {
            out.extend(self.records(shard, 0, u64::MAX).await?);
        }
        Ok(out)
    }
}

fn stored_record(shard: u32, item: &Item) -> Result<StoredRecord, AuditError> {
    let get = |k: &str| crate::dynamo::get_s(item, k).unwrap_or_default();
    Ok(StoredRecord {
        shard,
        seq: item
            .get("seq")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        hash: get("hash"),
        record: serde_json::from_str(&get("record"))
            .map_err(|e| AuditError(format!("record unreadable: {e}")))?,
    })
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
                outcome: String::new(),
                source_ip: source_ip(request),
                user_agent: header_str(request, "user-agent")
                    .map(|u| u.chars().take(256).collect()),
                override_of: None,
            },
        }
    }

    /// Records the request with its final status and what its handler noted.
    pub async fn finish(
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
        record.outcome = AuditRecord::outcome_of(status).to_string();
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
        self.record(&record).await
    }
}

/// A record waiting on the audit queue (written by a request that could not put it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedRecord {
    /// The function's name (the unsharded layout's chain id; kept so queued messages
    /// of either layout read the same).
    #[serde(default)]
    pub chain_id: String,
    pub record: AuditRecord,
}

#[cfg(test)]
mod tests {
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
            outcome: "allowed".into(),
            source_ip: Some("127.0.0.1".into()),
            user_agent: None,
            override_of: None,
        }
    }

    fn stored(shard: u32, seq: u64, i: u16) -> StoredRecord {
        let record = record(i);
        StoredRecord {
            shard,
            seq,
            hash: leaf_hash(shard, seq, &record),
            record,
        }
    }

    const KEY: &[u8] = b"the audit signing key";

    /// Five records of shard 3, sealed as two digests (seq below 300 and below 900).
    fn sealed() -> (Vec<StoredRecord>, Vec<seal::Digest>) {
        let records: Vec<StoredRecord> = [100, 200, 300, 400, 500]
            .iter()
            .zip(1..)
            .map(|(seq, i)| stored(3, *seq, i))
            .collect();
        let mut digests = Vec::new();
        let mut prev = GENESIS.to_string();
        for (number, (from, until)) in [(0u64, 300u64), (300, 900)].into_iter().enumerate() {
            let entries = records
                .iter()
                .filter(|r| (from..until).contains(&r.seq))
                .map(seal::Digest::entry)
                .collect();
            let mut d = seal::Digest {
                shard: 3,
                number: number as u64 + 1,
                from,
                until,
                prev: prev.clone(),
                entries,
                hash: String::new(),
                signature: String::new(),
            };
            d.hash = d.compute_hash();
            d.signature = seal::hmac_sha256(KEY, d.hash.as_bytes());
            prev = d.hash.clone();
            digests.push(d);
        }
        (records, digests)
    }

    fn anchor_of(d: &seal::Digest) -> seal::AnchorEntry {
        seal::AnchorEntry {
            number: d.number,
            hash: d.hash.clone(),
        }
    }

    #[test]
    fn intact_shards_verify_and_newer_records_count_as_unsealed() {
        let (mut records, digests) = sealed();
        records.push(stored(3, 950, 9));
        let report =
            verify::verify_shard(3, &records, &digests, KEY, Some(&anchor_of(&digests[1])));
        assert_eq!(
            report,
            Ok(verify::ShardReport {
                shard: 3,
                digests: 2,
                sealed: 5,
                unsealed: 1
            })
        );
    }

    #[test]
    fn an_altered_deleted_or_inserted_record_is_named() {
        let (records, digests) = sealed();
        let anchor = anchor_of(&digests[1]);
        let check = |records: &[StoredRecord]| {
            verify::verify_shard(3, records, &digests, KEY, Some(&anchor)).unwrap_err()
        };
        let mut altered = records.clone();
        altered[3].record.status = 403;
        // Recomputing the record's own stored hash does not help: the digest sealed it.
        altered[3].hash = leaf_hash(3, 400, &altered[3].record);
        assert_eq!(
            check(&altered),
            "shard 3: record 400 (request r4) was altered"
        );
        let mut deleted = records.clone();
        deleted.remove(1);
        assert_eq!(
            check(&deleted),
            "shard 3: record 200 is missing (sealed in digest 1)"
        );
        let mut inserted = records.clone();
        inserted.insert(2, stored(3, 250, 7));
        assert_eq!(
            check(&inserted),
            "shard 3: record 250 (request r7) was inserted after sealing"
        );
    }

    #[test]
    fn a_forged_deleted_or_replaced_digest_is_named() {
        let (records, digests) = sealed();
        let anchor = anchor_of(&digests[1]);
        // A record changed and its digest re-hashed: the signature no longer holds.
        let mut records_forged = records.clone();
        records_forged[0].record.principal = "mallory".into();
        let mut forged = digests.clone();
        forged[0].entries[0] = seal::Digest::entry(&records_forged[0]);
        forged[0].hash = forged[0].compute_hash();
        assert_eq!(
            verify::verify_shard(3, &records_forged, &forged, KEY, Some(&anchor)).unwrap_err(),
            "shard 3: digest 1 is not signed by the audit key"
        );
        // The newest digest and its records deleted: the anchor still names it.
        let tail = verify::verify_shard(3, &records[..2], &digests[..1], KEY, Some(&anchor));
        assert_eq!(
            tail.unwrap_err(),
            "shard 3: digest 2 is missing (the anchor names digest 2)"
        );
        // A digest in the middle deleted: numbering breaks.
        assert_eq!(
            verify::verify_shard(3, &records, &digests[1..], KEY, None).unwrap_err(),
            "shard 3: digest 1 is missing"
        );
        // Digests of another key (a self-made log) are refused.
        assert_eq!(
            verify::verify_shard(3, &records, &digests, b"another key", None).unwrap_err(),
            "shard 3: digest 1 is not signed by the audit key"
        );
    }

    #[test]
    fn a_requests_key_is_stable_and_spreads_over_the_shards() {
        let mut shards = std::collections::BTreeSet::new();
        for i in 0..200u16 {
            let r = record(i);
            assert_eq!(key_of(&r), key_of(&r));
            let (shard, seq) = key_of(&r);
            assert_eq!(seq / SEQ_PER_MS, r.time as u64);
            shards.insert(shard);
        }
        assert_eq!(shards.len(), SHARDS as usize);
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
