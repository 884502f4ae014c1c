//! DynamoDB streams, read as Lambda's event source mapping reads them: shard by shard from
//! the oldest record, each record turned into the record of the event Lambda sends.
//! The local stack's stream sources and the test harness both read through this.

use anyhow::{Context, Result, anyhow};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Each shard's next iterator (`None` once a closed shard is read to its end).
    iterators: BTreeMap<String, Option<String>>,
}

impl StreamReader {
    /// The stream of `table` (its latest), read from its oldest record.
    pub async fn open(sdk: &aws_config::SdkConfig, table: &str) -> Result<Self> {
        let described = aws_sdk_dynamodb::Client::new(sdk)
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("describing {table}"))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| anyhow!("table {table} has no stream"))?
            .to_string();
        Ok(Self {
            client: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn,
            iterators: BTreeMap::new(),
        })
    }

    /// Every record written since the last read, oldest first within each shard, as
    /// Lambda's event records (`eventName`, `dynamodb.Keys`, `dynamodb.SequenceNumber`, …).
    pub async fn read(&mut self) -> Result<Vec<Value>> {
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .context("describing the stream")?;
        for shard in stream
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
        {
            let Some(id) = shard.shard_id() else { continue };
            if !self.iterators.contains_key(id) {
                let iterator = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .context("opening a shard")?;
                self.iterators
                    .insert(id.to_string(), iterator.shard_iterator().map(String::from));
            }
        }
        let mut out = Vec::new();
        for iterator in self.iterators.values_mut() {
            while let Some(current) = iterator.clone() {
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(current)
                    .send()
                    .await
                    .context("reading a shard")?;
                *iterator = page.next_shard_iterator().map(String::from);
                if page.records().is_empty() {
                    break;
                }
                out.extend(
                    page.records()
                        .iter()
                        .map(|r| lambda_record(r, &self.stream_arn)),
                );
            }
        }
        Ok(out)
    }
}

/// A stream record as the record of a Lambda event.
pub fn lambda_record(record: &Record, stream_arn: &str) -> Value {
    let change = record.dynamodb();
    let image = |m: Option<&std::collections::HashMap<String, AttributeValue>>| {
        m.map(|m| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), attribute(v)))
                    .collect::<Map<_, _>>(),
            )
        })
    };
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change
            .and_then(|c| c.approximate_creation_date_time())
            .map_or(0, |t| t.secs()),
        "Keys": image(change.and_then(|c| c.keys())).unwrap_or(json!({})),
        "SequenceNumber": change.and_then(|c| c.sequence_number()),
        "SizeBytes": change.and_then(|c| c.size_bytes()).unwrap_or(0),
        "StreamViewType": change
            .and_then(|c| c.stream_view_type())
            .map(|v| v.as_str().to_string()),
    });
    for (name, value) in [
        ("NewImage", image(change.and_then(|c| c.new_image()))),
        ("OldImage", image(change.and_then(|c| c.old_image()))),
    ] {
        if let Some(value) = value {
            dynamodb[name] = value;
        }
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str().to_string()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region().unwrap_or(crate::template::REGION),
        "eventSourceARN": stream_arn,
        "dynamodb": dynamodb,
    })
}

/// DynamoDB's JSON form of a value (binary values, which no table here holds, as null).
fn attribute(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(items) => json!({ "L": items.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({
            "M": m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect::<Map<_, _>>()
        }),
        _ => json!({ "NULL": true }),
    }
}

/// Whether a record passes an event source mapping's filter patterns (`{"eventName":
/// ["INSERT", …]}`, the only kind this stack uses); no patterns pass everything.
pub fn passes(patterns: &[Vec<String>], record: &Value) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|names| {
            record["eventName"]
                .as_str()
                .is_some_and(|n| names.iter().any(|x| x == n))
        })
}

/// The event names a filter pattern lets through; other patterns are refused (they would
/// run differently here than in AWS).
pub fn event_names(pattern: &str) -> Result<Vec<String>> {
    let value: Value = serde_json::from_str(pattern).context("a filter pattern")?;
    let object = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| anyhow!("only {{\"eventName\": [...]}} patterns run locally"))?;
    object
        .get("eventName")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("only {{\"eventName\": [...]}} patterns run locally"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| anyhow!("eventName values are strings"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, sequence: &str) -> Value {
        json!({"eventName": name, "dynamodb": {"SequenceNumber": sequence}})
    }

    #[test]
    fn a_filter_passes_only_the_event_names_it_lists() {
        let inserts = vec![event_names(r#"{"eventName": ["INSERT"]}"#).unwrap()];
        assert!(passes(&inserts, &record("INSERT", "1")));
        assert!(!passes(&inserts, &record("MODIFY", "2")));
        assert!(passes(&[], &record("REMOVE", "3")), "no filter passes all");
        // A pattern this stand-in cannot run as AWS would is refused, not ignored.
        assert!(
            event_names(r#"{"dynamodb": {"Keys": {"task_id": {"S": [{"prefix": "a"}]}}}}"#)
                .is_err()
        );
        assert!(event_names(r#"{"eventName": [{"anything-but": "REMOVE"}]}"#).is_err());
    }

    #[test]
    fn a_batch_is_handled_up_to_its_first_failed_record() {
        let batch = [
            record("INSERT", "10"),
            record("INSERT", "11"),
            record("INSERT", "12"),
        ];
        let none = json!({"batchItemFailures": []});
        assert_eq!(crate::sources::first_failure(&none, &batch), 3);
        let second = json!({"batchItemFailures": [{"itemIdentifier": "11"}]});
        assert_eq!(crate::sources::first_failure(&second, &batch), 1);
        // Several named: the mapping restarts from the earliest of them.
        let both =
            json!({"batchItemFailures": [{"itemIdentifier": "12"}, {"itemIdentifier": "10"}]});
        assert_eq!(crate::sources::first_failure(&both, &batch), 0);
    }
}
