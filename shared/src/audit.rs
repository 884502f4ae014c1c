//! The audit log: one record for every request to a sensitive route, allowed
//! or denied, in an append-only DynamoDB table where each record carries the
//! hash of the previous record of its chain, so that a changed or deleted
//! record is detectable ([`verify_chain`]).
//!
//! A chain is one function's records (`chain_id` = the function). Appending
//! record n+1 is one transaction: put the record (it must not exist), move the
//! chain head from n to n+1 (it must still be at n), and put a marker for the
//! request id (it must not exist, so a retried write never records a request
//! twice). Writers racing on a chain retry with the new head.
//!
//! If the append fails, the record goes to the audit queue and the
//! `audit-writer` function appends it later; only if that fails too does the
//! request fail. A record is never silently dropped.

use crate::aws::{describe_error, is_transient};
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Appended, n, s};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A chain's head (its last sequence number and hash) lives in a partition of its own,
/// `head#<chain>`: the functions that append may update heads only (IAM
/// `dynamodb:LeadingKeys`), and may only put records, never change or delete them.
pub fn head_key(chain_id: &str) -> String {
    format!("head#{chain_id}")
}

/// The hash before the first record of every chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

tokio::task_local! {
    /// The override a request's handler used, collected by the audit middleware.
    static OVERRIDE: std::cell::Cell<Option<&'static str>>;
}

/// Marks the current request as served under an override of `rule`: its audit
/// record says so. Outside an audited request it does nothing.
pub fn note_override(rule: &'static str) {
    let _ = OVERRIDE.try_with(|o| o.set(Some(rule)));
}

/// Runs a handler and returns what it gave with the override it noted, if any.
pub async fn collect_override<F: std::future::Future>(
    future: F,
) -> (F::Output, Option<&'static str>) {
    OVERRIDE
        .scope(std::cell::Cell::new(None), async {
            let output = future.await;
            (output, OVERRIDE.with(|o| o.get()))
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

/// A record in its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedRecord {
    pub chain_id: String,
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub record: AuditRecord,
}

/// SHA-256 over the previous hash, the position and the record's canonical JSON.
pub fn link_hash(chain_id: &str, seq: u64, prev_hash: &str, record: &AuditRecord) -> String {
    let body = serde_json::to_string(record).expect("an audit record serializes");
    let mut hasher = Sha256::new();
    for part in [chain_id, &seq.to_string(), prev_hash, &body] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

/// The first broken link of a chain, if any: a record whose hash is wrong, whose
/// `prev_hash` does not match, or a gap in the sequence (a deleted record).
pub fn verify_chain(records: &[ChainedRecord]) -> Result<usize, String> {
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if r.seq != expected_seq {
            return Err(format!(
                "chain {}: record {expected_seq} is missing (found {} next)",
                r.chain_id, r.seq
            ));
        }
        if r.prev_hash != prev {
            return Err(format!(
                "chain {}: record {} does not follow record {}",
                r.chain_id,
                r.seq,
                r.seq - 1
            ));
        }
        if link_hash(&r.chain_id, r.seq, &r.prev_hash, &r.record) != r.hash {
            return Err(format!(
                "chain {}: record {} was altered",
                r.chain_id, r.seq
            ));
        }
        prev = r.hash.clone();
    }
    Ok(records.len())
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
}

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

    /// Records a request: appended to its chain, or queued for the audit writer.
    pub async fn record(&self, chain_id: &str, record: &AuditRecord) -> Result<(), AuditError> {
        match self.append(chain_id, record).await {
            Ok(_) => Ok(()),
            Err(append_error) => {
                tracing::warn!(
                    error = %append_error, request_id = %record.request_id,
                    "audit append failed; queueing the record"
                );
                let body = serde_json::to_string(&QueuedRecord {
                    chain_id: chain_id.into(),
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

    /// Appends to the chain, unless this request id was already recorded.
    pub async fn append(
        &self,
        chain_id: &str,
        record: &AuditRecord,
    ) -> Result<Appended, AuditError> {
        for attempt in 0..40u32 {
            let head = self
                .dynamodb
                .get_item()
                .table_name(&self.table)
                .key("chain_id", s(&head_key(chain_id)))
                .key("seq", n(0))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| AuditError(describe_error(&e)))?;
            let (last_seq, last_hash) = head
                .item()
                .map(|i| {
                    let seq = i
                        .get("last_seq")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let hash = i
                        .get("last_hash")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_else(|| GENESIS.into());
                    (seq, hash)
                })
                .unwrap_or((0, GENESIS.to_string()));
            let seq = last_seq + 1;
            let hash = link_hash(chain_id, seq, &last_hash, record);
            let body = serde_json::to_string(record).map_err(|e| AuditError(e.to_string()))?;
            let put_record = Put::builder()
                .table_name(&self.table)
                .set_item(Some(HashMap::from([
                    ("chain_id".into(), s(chain_id)),
                    ("seq".into(), n(seq)),
                    ("prev_hash".into(), s(&last_hash)),
                    ("hash".into(), s(&hash)),
                    ("record".into(), s(&body)),
                ])))
                .condition_expression("attribute_not_exists(seq)")
                .build()
                .map_err(|e| AuditError(e.to_string()))?;
            let move_head = Update::builder()
                .table_name(&self.table)
                .key("chain_id", s(&head_key(chain_id)))
                .key("seq", n(0))
                .update_expression("SET last_seq = :seq, last_hash = :hash")
                .condition_expression("attribute_not_exists(last_seq) OR last_seq = :last")
                .expression_attribute_values(":seq", n(seq))
                .expression_attribute_values(":hash", s(&hash))
                .expression_attribute_values(":last", n(last_seq))
                .build()
                .map_err(|e| AuditError(e.to_string()))?;
            let mark_request = Put::builder()
                .table_name(&self.table)
                .set_item(Some(HashMap::from([
                    (
                        "chain_id".into(),
                        s(&format!("request#{}", record.request_id)),
                    ),
                    ("seq".into(), n(0)),
                    ("recorded_in".into(), s(&format!("{chain_id}#{seq}"))),
                ])))
                .condition_expression("attribute_not_exists(chain_id)")
                .build()
                .map_err(|e| AuditError(e.to_string()))?;
            let result = self
                .dynamodb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_record).build())
                .transact_items(TransactWriteItem::builder().update(move_head).build())
                .transact_items(TransactWriteItem::builder().put(mark_request).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Appended::Written),
                Err(err) => {
                    let cancelled = crate::dynamo::Cancelled::of(&err);
                    let failed =
                        |i: usize| cancelled.as_ref().is_some_and(|c| c.condition_failed(i));
                    if failed(2) {
                        return Ok(Appended::AlreadyRecorded); // already in a chain
                    }
                    // Retried: another writer moved the head (a failed condition on the record or
                    // the head), a transaction in flight on the same items (a collision), throttling.
                    let collided = cancelled.as_ref().is_some_and(|c| c.collided());
                    if !(failed(0) || failed(1) || collided || is_transient(&err)) {
                        return Err(AuditError(describe_error(&err)));
                    }
                    // Another writer moved the head first: try again on the new head,
                    // backing off exponentially (capped) with jitter so racers spread out.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 25;
                    let backoff = (5u64 << attempt.min(5)).min(120);
                    tokio::time::sleep(std::time::Duration::from_millis(backoff + jitter)).await;
                }
            }
        }
        Err(AuditError(format!("chain {chain_id} stayed contended")))
    }

    /// Every record of a chain, in order.
    pub async fn chain(&self, chain_id: &str) -> Result<Vec<ChainedRecord>, AuditError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .key_condition_expression("chain_id = :c AND seq > :zero")
                .expression_attribute_values(":c", s(chain_id))
                .expression_attribute_values(":zero", n(0))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AuditError(describe_error(&e)))?;
            for item in page.items() {
                let get = |k: &str| {
                    item.get(k)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                out.push(ChainedRecord {
                    chain_id: chain_id.to_string(),
                    seq: item
                        .get("seq")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    prev_hash: get("prev_hash"),
                    hash: get("hash"),
                    record: serde_json::from_str(&get("record"))
                        .map_err(|e| AuditError(format!("record unreadable: {e}")))?,
                });
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
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
                principal: principal.map_or_else(|| "anonymous".to_string(), |p| p.subject.clone()),
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

    /// Records the request with its final status and the override it was served under.
    pub async fn finish(
        &self,
        pending: PendingAudit,
        status: u16,
        override_of: Option<&str>,
    ) -> Result<(), AuditError> {
        let mut record = pending.record;
        record.status = status;
        record.override_of = override_of.map(String::from);
        record.outcome = AuditRecord::outcome_of(status).to_string();
        let chain = record.function.clone();
        self.record(&chain, &record).await
    }
}

/// A record waiting on the audit queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedRecord {
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

    fn chain(len: u16) -> Vec<ChainedRecord> {
        let mut prev = GENESIS.to_string();
        (1..=len)
            .map(|i| {
                let r = record(i);
                let hash = link_hash("c", u64::from(i), &prev, &r);
                let c = ChainedRecord {
                    chain_id: "c".into(),
                    seq: u64::from(i),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    record: r,
                };
                prev = hash;
                c
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
    }

    #[test]
    fn an_altered_record_is_named() {
        let mut c = chain(5);
        c[2].record.status = 403;
        assert_eq!(
            verify_chain(&c),
            Err("chain c: record 3 was altered".into())
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut c = chain(5);
        c.remove(3);
        assert_eq!(
            verify_chain(&c),
            Err("chain c: record 4 is missing (found 5 next)".into())
        );
    }

    #[test]
    fn a_rehashed_forgery_still_breaks_the_next_link() {
        let mut c = chain(5);
        c[1].record.principal = "mallory".into();
        c[1].hash = link_hash("c", 2, &c[1].prev_hash, &c[1].record);
        assert_eq!(
            verify_chain(&c),
            Err("chain c: record 3 does not follow record 2".into())
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
