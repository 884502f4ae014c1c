//! Where the audit log is kept: one S3 bucket (Object Lock, compliance mode, in AWS).
//!
//! - `records/YYYY/MM/DD/HH/<source>-<time>-<id>`: objects of audit lines, one per line,
//!   as Firehose delivers them (its default naming under the `records/` prefix, the hour
//!   of arrival). The local shipper, the test harness and `nf-ops` write the same names.
//! - `digests/<number, 20 digits>.json`: the sealer's signed digests, one per run that
//!   found something to seal, never overwritten (`If-None-Match: *`).

use super::AuditError;
use super::digest::Digest;
use crate::aws::describe_error;
use aws_sdk_s3::primitives::ByteStream;

/// The prefix of the record objects.
pub const RECORDS: &str = "records/";
/// The prefix of the digests.
pub const DIGESTS: &str = "digests/";

/// The setting naming the bucket.
pub const BUCKET_SETTING: &str = "AUDIT_BUCKET";

/// A record object as listed: its key and when S3 received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// S3's `LastModified`, epoch milliseconds (whole seconds).
    pub delivered: i64,
}

/// A record object and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordObject {
    pub key: String,
    pub delivered: i64,
    pub lines: Vec<String>,
}

/// `records/2026/12/03/02/`: the prefix of the objects that arrived in `millis`'s hour.
pub fn hour_prefix(millis: i64) -> String {
    let t = crate::time::rfc3339(millis);
    format!(
        "{RECORDS}{}/{}/{}/{}/",
        &t[0..4],
        &t[5..7],
        &t[8..10],
        &t[11..13]
    )
}

/// The key of a new record object from `source` (Firehose's naming: hour prefix, source,
/// time of arrival, a unique id).
pub fn record_key(source: &str, millis: i64) -> String {
    let t = crate::time::rfc3339(millis);
    let stamp = format!(
        "{}-{}-{}-{}-{}-{}",
        &t[0..4],
        &t[5..7],
        &t[8..10],
        &t[11..13],
        &t[14..16],
        &t[17..19]
    );
    format!(
        "{}{source}-{stamp}-{}",
        hour_prefix(millis),
        uuid::Uuid::new_v4()
    )
}

/// The key of digest `number`: zero-padded, so keys sort as numbers.
pub fn digest_key(number: u64) -> String {
    format!("{DIGESTS}{number:020}.json")
}

#[derive(Clone)]
pub struct AuditStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

fn failed<E, R>(what: &str, e: &aws_sdk_s3::error::SdkError<E, R>) -> AuditError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    AuditError(format!("{what}: {}", describe_error(e)))
}

impl AuditStore {
    pub fn new(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self {
            s3: crate::aws::s3(sdk),
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Keys under `prefix` after `start_after`, in key order, every page.
    async fn list(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, AuditError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .start_after(start_after)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| failed(&format!("listing {prefix}"), &e))?;
            out.extend(page.contents().iter().map(|o| {
                Listed {
                    key: o.key().unwrap_or_default().to_string(),
                    delivered: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                }
            }));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The record objects whose keys sort after `start_after` (an hour prefix, or `""`).
    pub async fn record_objects_after(&self, start_after: &str) -> Result<Vec<Listed>, AuditError> {
        self.list(RECORDS, start_after).await
    }

    /// A record object's lines, or `None` if it is gone.
    pub async fn lines(&self, key: &str) -> Result<Option<Vec<String>>, AuditError> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(Some(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }

    /// Every record object with its lines (verification and operators' reads).
    pub async fn all_record_objects(&self) -> Result<Vec<RecordObject>, AuditError> {
        let mut out = Vec::new();
        for listed in self.record_objects_after("").await? {
            if let Some(lines) = self.lines(&listed.key).await? {
                out.push(RecordObject {
                    key: listed.key,
                    delivered: listed.delivered,
                    lines,
                });
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AuditError> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| AuditError(format!("reading {key}: {e}")))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(failed(&format!("reading {key}"), &e)),
        }
    }

    /// Puts an object unless its key is taken; `false` if it was.
    async fn put_new(&self, key: &str, body: Vec<u8>) -> Result<bool, AuditError> {
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(failed(&format!("writing {key}"), &e)),
        }
    }

    /// Writes lines as one new record object from `source` (what Firehose does in AWS);
    /// its key.
    pub async fn put_records(
        &self,
        source: &str,
        lines: &[String],
        now_millis: i64,
    ) -> Result<String, AuditError> {
        let key = record_key(source, now_millis);
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.put_new(&key, body.into_bytes()).await?;
        Ok(key)
    }

    /// Digest `number`, if it was written.
    pub async fn digest(&self, number: u64) -> Result<Option<Digest>, AuditError> {
        let key = digest_key(number);
        self.get(&key)
            .await?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| AuditError(format!("{key} unreadable: {e}")))
            })
            .transpose()
    }

    /// The numbers of the digests after `number`, in order.
    pub async fn digest_numbers_after(&self, number: u64) -> Result<Vec<u64>, AuditError> {
        let start = if number == 0 {
            String::new()
        } else {
            digest_key(number)
        };
        Ok(self
            .list(DIGESTS, &start)
            .await?
            .iter()
            .filter_map(|l| {
                l.key
                    .strip_prefix(DIGESTS)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect())
    }

    /// Every digest, in order of number (a key that does not parse is skipped: the
    /// numbering check then names the gap).
    pub async fn digests(&self) -> Result<Vec<Digest>, AuditError> {
        let mut out = Vec::new();
        for number in self.digest_numbers_after(0).await? {
            if let Some(d) = self.digest(number).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Writes a digest unless its number is taken; `false` if it was.
    pub async fn put_digest(&self, digest: &Digest) -> Result<bool, AuditError> {
        let body = serde_json::to_vec(digest).map_err(|e| AuditError(e.to_string()))?;
        self.put_new(&digest_key(digest.number), body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_hour_and_number() {
        // 2026-12-03T02:41:07Z
        let t = 1_796_265_667_000;
        assert_eq!(hour_prefix(t), "records/2026/12/03/02/");
        let key = record_key("local", t);
        assert!(
            key.starts_with("records/2026/12/03/02/local-2026-12-03-02-41-07-"),
            "{key}"
        );
        assert!(hour_prefix(t) < hour_prefix(t + 3_600_000));
        assert!(digest_key(9) < digest_key(10));
    }
}
