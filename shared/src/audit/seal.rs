//! Sealing the audit log: a scheduled function (`audit-sealer`) seals the record objects
//! S3 received since its last run (by `LastModified`, up to a grace period ago) into one
//! digest: each object's key and a prefix of the hash of each of its lines, the period it
//! covers, the hash of the previous digest, its own hash, and an HMAC-SHA256 signature
//! with a key only the sealer (and the verifier) can read. After sealing it writes the
//! newest digest's number and hash to an SSM parameter, the anchor, whose history SSM
//! keeps: deleting the newest digests then shows as a digest the anchor names but the
//! bucket lacks.
//!
//! Idle costs nothing but a listing: a run that finds no new object writes nothing. Two
//! sealers racing cannot both write a digest number (the put is conditional); a run that
//! crashes after its digest and before the anchor is followed by one that finds that
//! digest (listing after the anchor's number) and goes on from it.

pub use super::digest::{Digest, HASH_PREFIX, SealedObject, hmac_sha256, line_hash};
use super::store::{AuditStore, Listed, hour_prefix};
use super::{AuditError, GENESIS};
use crate::aws::describe_error;
use crate::config::{ConfigError, Settings};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The newest digest, as the sealer last wrote it to the anchor (`None` before the first).
pub type Anchor = Option<AnchorEntry>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorEntry {
    pub number: u64,
    pub hash: String,
    /// The end of the digest's period: once that is older than the retention period, the
    /// digest may have expired, and the anchor alone carries the chain on.
    #[serde(default)]
    pub until: i64,
}

/// What one sealing run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SealReport {
    pub digests: usize,
    pub objects: usize,
    pub records: usize,
}

/// The settings of the anchor: the SSM parameter the sealer writes.
pub const ANCHOR_SETTING: &str = "AUDIT__ANCHOR_PARAMETER";
/// The setting naming the SecureString that holds the signing key.
pub const KEY_SETTING: &str = "AUDIT__SIGNING_KEY_PARAMETER";

pub struct Sealer {
    pub store: AuditStore,
    pub key: Vec<u8>,
    /// Objects S3 received less than this ago are left for the next run: `LastModified`
    /// is when an upload began, and a long upload may not be listed yet.
    pub grace: Duration,
    /// How far before its period a run looks for objects: Firehose names an object by the
    /// hour its first line arrived, and may deliver it later (buffering, retries).
    pub lookback: Duration,
    pub ssm: aws_sdk_ssm::Client,
    /// `None`: no anchor kept (tests of sealing alone).
    pub anchor_parameter: Option<String>,
    /// How long the bucket keeps records and digests (`AuditRetentionDays`).
    pub retention: Duration,
}

impl Sealer {
    /// `AUDIT_BUCKET`, the signing key from `AUDIT__SIGNING_KEY_PARAMETER` (SSM
    /// SecureString), the anchor `AUDIT__ANCHOR_PARAMETER`, `AUDIT__SEAL_GRACE_SECONDS`
    /// (300), `AUDIT__SEAL_LOOKBACK_HOURS` (3), `AUDIT__RETENTION_DAYS` (400).
    pub async fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings<'_>,
    ) -> Result<Self, ConfigError> {
        let key_parameter = settings.required(KEY_SETTING)?;
        let key = crate::aws::secure_parameter(sdk, KEY_SETTING, &key_parameter).await?;
        Ok(Self {
            store: AuditStore::new(sdk, settings.required(super::store::BUCKET_SETTING)?),
            key: key.into_bytes(),
            grace: Duration::from_secs(settings.bounded_or(
                "AUDIT__SEAL_GRACE_SECONDS",
                300,
                0..=86_400,
            )?),
            lookback: Duration::from_secs(
                3600 * settings.bounded_or("AUDIT__SEAL_LOOKBACK_HOURS", 3, 1..=48)?,
            ),
            ssm: aws_sdk_ssm::Client::new(sdk),
            anchor_parameter: Some(settings.required(ANCHOR_SETTING)?),
            retention: retention(settings)?,
        })
    }

    /// Where the next digest goes on from: the newest digest (the anchor's, or one a
    /// crashed run wrote after it), or the anchor itself once that digest has expired.
    async fn newest(&self, now_millis: i64) -> Result<Option<AnchorEntry>, AuditError> {
        let anchor = match &self.anchor_parameter {
            Some(name) => read_anchor(&self.ssm, name).await?,
            None => None,
        };
        let anchored = anchor.as_ref().map_or(0, |a| a.number);
        let number = self
            .store
            .digest_numbers_after(anchored)
            .await?
            .last()
            .copied()
            .unwrap_or(anchored);
        if number == 0 {
            return Ok(None);
        }
        match (self.store.digest(number).await?, anchor) {
            (Some(d), _) => Ok(Some(AnchorEntry {
                number: d.number,
                hash: d.hash,
                until: d.until,
            })),
            (None, Some(a))
                if a.number == number && a.until < horizon(self.retention, now_millis) =>
            {
                Ok(Some(a))
            }
            (None, _) => Err(AuditError(format!(
                "digest {number}, which the anchor names, is missing: run audit-verify"
            ))),
        }
    }

    /// Seals the record objects received since the last digest, up to the grace period
    /// ago, into one digest (none if there are none).
    pub async fn seal_once(&self, now_millis: i64) -> Result<SealReport, AuditError> {
        let newest = self.newest(now_millis).await?;
        let (number, from, prev) = match &newest {
            Some(d) => (d.number + 1, d.until, d.hash.clone()),
            None => (1, 0, GENESIS.to_string()),
        };
        // Whole seconds: LastModified has no finer grain.
        let until = (now_millis - self.grace.as_millis() as i64).div_euclid(1000) * 1000;
        if until <= from {
            return Ok(SealReport::default());
        }
        let start_after = if from == 0 {
            String::new()
        } else {
            hour_prefix(from - self.lookback.as_millis() as i64)
        };
        let mut period: Vec<Listed> = self
            .store
            .record_objects_after(&start_after)
            .await?
            .into_iter()
            .filter(|o| (from..until).contains(&o.delivered))
            .collect();
        if period.is_empty() {
            return Ok(SealReport::default());
        }
        period.sort_by(|a, b| (a.delivered, &a.key).cmp(&(b.delivered, &b.key)));
        let mut objects = Vec::with_capacity(period.len());
        for listed in &period {
            // Listed a moment ago: gone now means deleted (Object Lock refuses that in AWS).
            let lines =
                self.store.lines(&listed.key).await?.ok_or_else(|| {
                    AuditError(format!("{} vanished while being sealed", listed.key))
                })?;
            objects.push(SealedObject::of(&listed.key, listed.delivered, &lines));
        }
        let digest = Digest {
            number,
            from,
            until,
            prev,
            objects,
            hash: String::new(),
            signature: String::new(),
        }
        .sign(&self.key);
        if !self.store.put_digest(&digest).await? {
            // Another sealer wrote this number first: this period is its.
            return Ok(SealReport::default());
        }
        if let Some(name) = &self.anchor_parameter {
            let anchor = AnchorEntry {
                number,
                hash: digest.hash.clone(),
                until: digest.until,
            };
            write_anchor(&self.ssm, name, &anchor).await?;
        }
        Ok(SealReport {
            digests: 1,
            objects: digest.objects.len(),
            records: digest.records(),
        })
    }
}

/// `AUDIT__RETENTION_DAYS` (400): how long the bucket keeps the log.
pub fn retention(settings: &Settings<'_>) -> Result<Duration, ConfigError> {
    let days = settings.bounded_or("AUDIT__RETENTION_DAYS", 400, 1..=3653)?;
    Ok(Duration::from_secs(days * 86_400))
}

/// The retention horizon at `now_millis`: history older than this may have expired.
pub fn horizon(retention: Duration, now_millis: i64) -> i64 {
    now_millis - retention.as_millis() as i64
}

/// The anchor as the sealer last wrote it (`None` before the first seal).
pub async fn read_anchor(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Anchor, AuditError> {
    let out = match ssm.get_parameter().name(name).send().await {
        Ok(out) => out,
        // Never written: nothing sealed yet.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(AuditError(format!("anchor {name}: {}", describe_error(&e)))),
    };
    let text = out.parameter().and_then(|p| p.value()).unwrap_or("{}");
    parse_anchor(text).map_err(|e| AuditError(format!("anchor {name} unreadable: {e}")))
}

/// `{}` (the template's initial value): nothing sealed yet.
fn parse_anchor(text: &str) -> Result<Anchor, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    if value.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some)
}

async fn write_anchor(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    anchor: &AnchorEntry,
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
    fn the_templates_initial_anchor_names_no_digest() {
        assert_eq!(parse_anchor("{}").unwrap(), None);
        let anchor = parse_anchor(r#"{"number":3,"hash":"ab"}"#).unwrap();
        assert_eq!(anchor.map(|a| a.number), Some(3));
        assert!(parse_anchor("[]").is_err());
    }
}
