//! Sealing the audit log: a scheduled function (`audit-sealer`) seals each shard's
//! records older than a grace period into a digest: the records' `seq` and a prefix
//! of their hashes, the range of `seq` it covers, the hash of the shard's previous
//! digest, its own hash, and an HMAC-SHA256 signature with a key only the sealer (and
//! the verifier) can read. After sealing it writes the newest digest of every shard to
//! an SSM parameter, the anchor, whose history SSM keeps: deleting the newest digests
//! then shows as digests the anchor names but the table lacks.
//!
//! Idle costs nothing: a shard with no new records gets no digest. Two sealers racing
//! cannot both write a digest number (the put is conditional); a run that crashes
//! half-way leaves whole digests, and the next run goes on after the last one.

use super::{AuditError, AuditLog, GENESIS, SEQ_PER_MS, SHARDS, StoredRecord, leaf_hash};
use crate::aws::describe_error;
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Item, n, s};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// The partition of a shard's digests (`seq` = the digest's number).
pub fn digests_partition(shard: u32) -> String {
    format!("digests#{shard}")
}

/// Records per digest: keeps a digest item far below DynamoDB's 400 KB.
pub const MAX_ENTRIES: usize = 4000;

/// Hex characters of a record's hash a digest keeps (64 bits: forging a record to
/// match takes 2^64 tries).
pub const HASH_PREFIX: usize = 16;

/// One sealed stretch of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub shard: u32,
    /// 1, 2, 3… per shard.
    pub number: u64,
    /// It seals the shard's records with `from <= seq < until`.
    pub from: u64,
    pub until: u64,
    /// The hash of the shard's previous digest ([`GENESIS`] before the first).
    pub prev: String,
    /// `(seq, hash prefix)` of every record in the range, in order.
    pub entries: Vec<(u64, String)>,
    pub hash: String,
    /// HMAC-SHA256 of `hash` with the audit signing key (hex).
    pub signature: String,
}

impl Digest {
    /// SHA-256 over everything the digest says but its own hash and signature.
    pub fn compute_hash(&self) -> String {
        let entries = serde_json::to_string(&self.entries).expect("entries serialize");
        let mut hasher = Sha256::new();
        for part in [
            digests_partition(self.shard),
            self.number.to_string(),
            self.from.to_string(),
            self.until.to_string(),
            self.prev.clone(),
            entries,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        hex::encode(hasher.finalize())
    }

    /// The entry a record gets in a digest.
    pub fn entry(record: &StoredRecord) -> (u64, String) {
        let hash = leaf_hash(record.shard, record.seq, &record.record);
        (record.seq, hash[..HASH_PREFIX].to_string())
    }
}

/// HMAC-SHA256 (RFC 2104), hex.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// The newest digest of each shard, as the sealer last wrote it to the anchor.
pub type Anchor = BTreeMap<u32, AnchorEntry>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorEntry {
    pub number: u64,
    pub hash: String,
}

/// What one sealing run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SealReport {
    pub digests: usize,
    pub records: usize,
}

/// The settings of the anchor: the SSM parameter the sealer writes.
pub const ANCHOR_SETTING: &str = "AUDIT__ANCHOR_PARAMETER";
/// The setting naming the SecureString that holds the signing key.
pub const KEY_SETTING: &str = "AUDIT__SIGNING_KEY_PARAMETER";

pub struct Sealer {
    pub log: AuditLog,
    pub key: Vec<u8>,
    /// Records younger than this are left for a later run: a record the audit writer
    /// puts late (from the queue) must not land in a sealed range.
    pub grace: Duration,
    pub ssm: aws_sdk_ssm::Client,
    /// `None`: no anchor kept (tests of sealing alone).
    pub anchor_parameter: Option<String>,
}

impl Sealer {
    /// `AUDIT_TABLE`, the signing key from `AUDIT__SIGNING_KEY_PARAMETER` (SSM
    /// SecureString), the anchor `AUDIT__ANCHOR_PARAMETER`, `AUDIT__SEAL_GRACE_SECONDS`
    /// (900).
    pub async fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings<'_>,
    ) -> Result<Self, ConfigError> {
        let key_parameter = settings.required(KEY_SETTING)?;
        let key = crate::aws::secure_parameter(sdk, KEY_SETTING, &key_parameter).await?;
        Ok(Self {
            log: AuditLog::new(sdk, settings.required("AUDIT_TABLE")?, ""),
            key: key.into_bytes(),
            grace: Duration::from_secs(settings.bounded_or(
                "AUDIT__SEAL_GRACE_SECONDS",
                900,
                0..=86_400,
            )?),
            ssm: aws_sdk_ssm::Client::new(sdk),
            anchor_parameter: Some(settings.required(ANCHOR_SETTING)?),
        })
    }

    /// Seals every shard's records older than the grace period.
    pub async fn seal_once(&self, now_millis: i64) -> Result<SealReport, AuditError> {
        let cutoff_ms = (now_millis - self.grace.as_millis() as i64).max(0) as u64;
        let until = cutoff_ms * SEQ_PER_MS;
        let mut report = SealReport::default();
        let mut anchor = match &self.anchor_parameter {
            Some(name) => read_anchor(&self.ssm, name).await?,
            None => Anchor::new(),
        };
        for shard in 0..SHARDS {
            let last = last_digest(&self.log, shard).await?;
            let (mut number, mut from, mut prev) = match &last {
                Some(d) => (d.number + 1, d.until, d.hash.clone()),
                None => (1, 0, GENESIS.to_string()),
            };
            if from >= until {
                continue;
            }
            let records = self.log.records(shard, from, until).await?;
            let chunks: Vec<&[StoredRecord]> = records.chunks(MAX_ENTRIES).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let chunk_until = if i + 1 == chunks.len() {
                    until
                } else {
                    chunk.last().map_or(until, |r| r.seq + 1)
                };
                let mut digest = Digest {
                    shard,
                    number,
                    from,
                    until: chunk_until,
                    prev: prev.clone(),
                    entries: chunk.iter().map(Digest::entry).collect(),
                    hash: String::new(),
                    signature: String::new(),
                };
                digest.hash = digest.compute_hash();
                digest.signature = hmac_sha256(&self.key, digest.hash.as_bytes());
                if !put_digest(&self.log, &digest).await? {
                    // Another sealer wrote this number first: this shard is its.
                    break;
                }
                report.digests += 1;
                report.records += chunk.len();
                anchor.insert(
                    shard,
                    AnchorEntry {
                        number,
                        hash: digest.hash.clone(),
                    },
                );
                (number, from, prev) = (number + 1, chunk_until, digest.hash);
            }
        }
        if report.digests > 0
            && let Some(name) = &self.anchor_parameter
        {
            write_anchor(&self.ssm, name, &anchor).await?;
        }
        Ok(report)
    }
}

/// A shard's newest digest, if any.
pub async fn last_digest(log: &AuditLog, shard: u32) -> Result<Option<Digest>, AuditError> {
    let page = log
        .partition_query(&digests_partition(shard), "")
        .scan_index_forward(false)
        .limit(1)
        .send()
        .await
        .map_err(|e| AuditError(describe_error(&e)))?;
    page.items().first().map(digest_from).transpose()
}

/// Every digest of a shard, in order.
pub async fn digests(log: &AuditLog, shard: u32) -> Result<Vec<Digest>, AuditError> {
    let query = log.partition_query(&digests_partition(shard), "");
    log.query_all(query)
        .await?
        .iter()
        .map(digest_from)
        .collect()
}

fn digest_from(item: &Item) -> Result<Digest, AuditError> {
    let body = crate::dynamo::get_s(item, "digest").unwrap_or_default();
    serde_json::from_str(&body).map_err(|e| AuditError(format!("digest unreadable: {e}")))
}

/// Writes a digest unless its number is taken; `false` if it was.
async fn put_digest(log: &AuditLog, digest: &Digest) -> Result<bool, AuditError> {
    let body = serde_json::to_string(digest).map_err(|e| AuditError(e.to_string()))?;
    let put = log
        .dynamodb()
        .put_item()
        .table_name(log.table())
        .set_item(Some(Item::from([
            ("chain_id".into(), s(&digests_partition(digest.shard))),
            ("seq".into(), n(digest.number)),
            ("digest".into(), s(&body)),
        ])))
        .condition_expression("attribute_not_exists(seq)")
        .send()
        .await;
    match crate::dynamo::applied(put).map_err(|e| AuditError(e.to_string()))? {
        crate::dynamo::Conditional::Applied => Ok(true),
        crate::dynamo::Conditional::ConditionFailed => Ok(false),
    }
}

/// The anchor as the sealer last wrote it (empty before the first seal).
pub async fn read_anchor(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Anchor, AuditError> {
    let out = match ssm.get_parameter().name(name).send().await {
        Ok(out) => out,
        // Never written: nothing sealed yet.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            return Ok(Anchor::new());
        }
        Err(e) => return Err(AuditError(format!("anchor {name}: {}", describe_error(&e)))),
    };
    let text = out.parameter().and_then(|p| p.value()).unwrap_or("{}");
    serde_json::from_str(text).map_err(|e| AuditError(format!("anchor {name} unreadable: {e}")))
}

async fn write_anchor(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    anchor: &Anchor,
) -> Result<(), AuditError> {
    let value = serde_json::to_string(anchor).map_err(|e| AuditError(e.to_string()))?;
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AuditError(format!("anchor {name}: {}", describe_error(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
