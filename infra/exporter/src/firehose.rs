//! Amazon Data Firehose HTTP endpoint deliveries of CloudWatch Logs
//! subscription data.
//!
//! A request is `{"requestId", "timestamp", "records": [{"data": base64}]}`
//! (the body itself possibly gzipped, `Content-Encoding: gzip`), with the
//! access key in `X-Amz-Firehose-Access-Key`. Each record is a gzipped
//! CloudWatch Logs batch `{"messageType": "DATA_MESSAGE", "logEvents":
//! [{"message"}]}`; each message is one line of a function's output.
//!
//! Answers, as Firehose expects: `200 {"requestId", "timestamp"}` once the
//! request is taken; otherwise `{"requestId", "timestamp", "errorMessage"}`
//! with 401 (wrong key: Firehose retries, then backs the data up to S3) or
//! 400 (a body that is not a delivery). A corrupt record is counted and
//! skipped: retrying would not mend it, and would deliver the good records of
//! the same request twice.

use crate::registry::{Registry, Reject};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::io::Read;

/// Decoded sizes are capped, so a small gzip bomb cannot exhaust memory.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    request_id: String,
    #[serde(default)]
    timestamp: Option<i64>,
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    data: String,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Remembers recent request ids: Firehose resends a request it got no answer
/// for, and counter deltas must not be counted twice.
#[derive(Debug, Default)]
pub struct RecentRequests {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentRequests {
    pub const CAPACITY: usize = 4096;

    /// True if `id` was new (and is now remembered).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }
}

pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(std::io::Error::other("decoded data over the size limit"));
    }
    Ok(out)
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn error(status: u16, request_id: &str, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"requestId": request_id, "timestamp": now_millis(), "errorMessage": message}),
    }
}

/// Handles one delivery. `expected_key`: the configured access key (None: none required).
pub fn handle(
    registry: &mut Registry,
    recent: &mut RecentRequests,
    expected_key: Option<&str>,
    given_key: Option<&str>,
    header_request_id: Option<&str>,
    gzipped_body: bool,
    body: &[u8],
) -> Answer {
    let fallback_id = header_request_id.unwrap_or("");
    if let Some(expected) = expected_key
        && !given_key.is_some_and(|k| constant_time_eq(k.as_bytes(), expected.as_bytes()))
    {
        registry.count_firehose("unauthorized");
        return error(401, fallback_id, "invalid access key");
    }
    let decoded;
    let body = if gzipped_body {
        match gunzip(body) {
            Ok(bytes) => {
                decoded = bytes;
                &decoded[..]
            }
            Err(_) => {
                registry.count_firehose("bad_request");
                return error(400, fallback_id, "the request body is not valid gzip");
            }
        }
    } else {
        body
    };
    let delivery: Delivery = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            registry.count_firehose("bad_request");
            return error(400, fallback_id, &format!("not a Firehose delivery: {e}"));
        }
    };
    let ok = Answer {
        status: 200,
        body: json!({"requestId": delivery.request_id, "timestamp": delivery.timestamp.unwrap_or_else(now_millis)}),
    };
    if !recent.first_time(&delivery.request_id) {
        registry.count_firehose("duplicate");
        return ok;
    }
    for record in &delivery.records {
        ingest_record(registry, &record.data);
    }
    registry.count_firehose("ok");
    ok
}

/// One record: base64 → gzip → CloudWatch Logs batch → lines.
fn ingest_record(registry: &mut Registry, data: &str) {
    let Ok(compressed) = base64::engine::general_purpose::STANDARD.decode(data) else {
        registry.count_rejected(Reject::InvalidJson);
        return;
    };
    let Ok(json) = gunzip(&compressed) else {
        registry.count_rejected(Reject::InvalidJson);
        return;
    };
    let Ok(batch) = serde_json::from_slice::<Value>(&json) else {
        registry.count_rejected(Reject::InvalidJson);
        return;
    };
    if batch["messageType"] == "CONTROL_MESSAGE" {
        return;
    }
    for event in batch["logEvents"].as_array().into_iter().flatten() {
        let Some(message) = event["message"].as_str() else {
            registry.count_rejected(Reject::InvalidJson);
            continue;
        };
        ingest_message(registry, message);
    }
}

/// A log message is the EMF line itself, or (Lambda's JSON log format) an
/// object whose `message` is that line.
fn ingest_message(registry: &mut Registry, message: &str) {
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(message)
        && !obj.contains_key("_aws")
        && let Some(Value::String(inner)) = obj.get("message")
        && inner.trim_start().starts_with('{')
    {
        registry.ingest_line(inner);
        return;
    }
    registry.ingest_line(message);
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
