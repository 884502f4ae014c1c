//! The cost meter: what a flow asked of AWS, in the units AWS bills, priced at the
//! list prices in `infra/cost/prices.yaml`.
//!
//! The calls come from [`crate::recorder::Recorder`] (a real SDK client that records
//! every request and response on its way to moto). For each write the recorder reads
//! the item before and after (through a client it does not record), so that write
//! units follow DynamoDB's rules for the larger of the two images:
//!
//! - writes: 1 WRU per 1 KB (rounded up) of the item; a failed condition still costs
//!   it; each affected global secondary index adds its own write (a delete and a put
//!   when the index key changes) sized by the projection; transactions cost double;
//! - reads: 1 RRU per 4 KB of the items read (rounded up per request), half for an
//!   eventually consistent read, double in a transaction;
//! - SQS: one request per 64 KB chunk of payload;
//! - item size: attribute names plus values (strings and binaries by length, numbers
//!   by digits, lists and maps with their overhead).

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// List prices (`infra/cost/prices.yaml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Prices {
    pub as_of: String,
    pub region: String,
    pub dynamodb: DynamoPrices,
    pub sqs: SqsPrices,
    pub lambda: LambdaPrices,
    pub logs: LogsPrices,
    pub cloudwatch: CloudWatchPrices,
    pub s3: S3Prices,
    pub firehose: FirehosePrices,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Prices {
    /// PUT, COPY, POST and LIST requests.
    pub writes_and_lists_per_thousand: f64,
    /// GET and other requests.
    pub reads_per_thousand: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirehosePrices {
    /// What the audit path's lines cost to deliver, per GB.
    pub audit_delivery_per_gb: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CloudWatchPrices {
    pub custom_metric_per_month: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DynamoPrices {
    pub write_request_units_per_million: f64,
    pub read_request_units_per_million: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SqsPrices {
    pub requests_per_million: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LambdaPrices {
    pub requests_per_million: f64,
    pub gb_second: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogsPrices {
    pub ingestion_per_gb: f64,
}

impl Prices {
    pub fn load() -> Self {
        let path = crate::workspace_root().join("infra/cost/prices.yaml");
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// Which attributes key a table and each of its global secondary indexes.
#[derive(Debug, Clone, Default)]
pub struct TableShape {
    /// The table's logical name in `template.yaml`.
    pub logical: String,
    /// Partition key, then sort key if any.
    pub key: Vec<String>,
    pub indexes: Vec<IndexShape>,
}

#[derive(Debug, Clone)]
pub struct IndexShape {
    pub name: String,
    pub key: Vec<String>,
    /// `None`: every attribute (`ALL`); otherwise the projected non-key attributes.
    pub projected: Option<Vec<String>>,
}

/// The shape of every table of a provisioned stack, by physical name.
pub fn table_shapes(tables: &BTreeMap<String, String>) -> HashMap<String, TableShape> {
    let template =
        devstack::Template::load(&crate::workspace_root().join("template.yaml")).unwrap();
    let keys = |schema: &Value| -> Vec<String> {
        let mut k: Vec<(String, String)> = schema
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["KeyType"].as_str().unwrap_or("").to_string(),
                    e["AttributeName"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        k.sort(); // HASH before RANGE
        k.into_iter().map(|(_, name)| name).collect()
    };
    tables
        .iter()
        .filter_map(|(logical, physical)| {
            let resource = template.resources.get(logical)?;
            let p = &resource.properties;
            let indexes = p["GlobalSecondaryIndexes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|gsi| IndexShape {
                    name: gsi["IndexName"].as_str().unwrap_or("").to_string(),
                    key: keys(&gsi["KeySchema"]),
                    projected: match gsi["Projection"]["ProjectionType"].as_str() {
                        Some("ALL") => None,
                        Some("INCLUDE") => Some(
                            gsi["Projection"]["NonKeyAttributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|a| a.as_str().map(String::from))
                                .collect(),
                        ),
                        _ => Some(vec![]),
                    },
                })
                .collect();
            Some((
                physical.clone(),
                TableShape {
                    logical: logical.clone(),
                    key: keys(&p["KeySchema"]),
                    indexes,
                },
            ))
        })
        .collect()
}

/// The size of one attribute value in DynamoDB JSON (`{"S": "…"}`), by DynamoDB's rules.
pub fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        // Base64 in JSON: the stored size is the decoded length.
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "N" => {
            let digits = inner
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .count();
            digits.div_ceil(2) + 1
        }
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| value_size(&serde_json::json!({ &kind[..1]: v })))
            .sum(),
        "L" => {
            3 + inner
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| value_size(v) + 1)
                .sum::<usize>()
        }
        "M" => 3 + item_size(inner) + inner.as_object().map_or(0, |m| m.len()),
        _ => 0,
    }
}

/// The size of an item in DynamoDB JSON: names plus values.
pub fn item_size(item: &Value) -> usize {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// The attributes of an item an index holds: its keys, the table's keys and the projection.
fn projected(item: &Value, table: &TableShape, index: &IndexShape) -> Value {
    let map = item.as_object().cloned().unwrap_or_default();
    match &index.projected {
        None => Value::Object(map),
        Some(extra) => Value::Object(
            map.into_iter()
                .filter(|(name, _)| {
                    index.key.contains(name) || table.key.contains(name) || extra.contains(name)
                })
                .collect(),
        ),
    }
}

/// The part of an item an index holds: its keys, the table's keys and the projection.
fn projected_size(item: &Value, table: &TableShape, index: &IndexShape) -> usize {
    let Some(map) = item.as_object() else {
        return 0;
    };
    match &index.projected {
        None => item_size(item),
        Some(extra) => map
            .iter()
            .filter(|(name, _)| {
                index.key.contains(name) || table.key.contains(name) || extra.contains(name)
            })
            .map(|(name, value)| name.len() + value_size(value))
            .sum(),
    }
}

/// One item a write touched: its table, key, and the item before and after (`None`: absent).
#[derive(Debug, Clone)]
pub struct Touched {
    pub table: String,
    pub key: Value,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The item the request itself carried (a put), which sizes a write that did not happen.
    pub sent: Option<Value>,
    pub transactional: bool,
}

/// What a set of calls costs, in billing units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Units {
    pub read_units: f64,
    pub write_units: f64,
    pub sqs_requests: f64,
    /// S3 PUT and LIST requests, and GET requests.
    pub s3_writes_and_lists: f64,
    pub s3_reads: f64,
    /// `table/partition-key-value` of every item written.
    pub keys_written: BTreeSet<String>,
    /// Write units by logical table and operation (`TasksTable PutItem`).
    pub writes_by: BTreeMap<String, f64>,
}

impl Units {
    pub fn add(&mut self, other: &Units) {
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.sqs_requests += other.sqs_requests;
        self.s3_writes_and_lists += other.s3_writes_and_lists;
        self.s3_reads += other.s3_reads;
        self.keys_written.extend(other.keys_written.iter().cloned());
        for (what, units) in &other.writes_by {
            *self.writes_by.entry(what.clone()).or_default() += units;
        }
    }
}

fn kb_units(bytes: usize, unit: usize) -> f64 {
    bytes.max(1).div_ceil(unit) as f64
}

/// The write units of one touched item, with its index writes.
pub fn write_units(t: &Touched, shapes: &HashMap<String, TableShape>) -> f64 {
    let largest = [&t.before, &t.after, &t.sent]
        .iter()
        .filter_map(|i| i.as_ref().map(item_size))
        .max()
        .unwrap_or(0);
    let mut units = kb_units(largest, 1024);
    if let Some(table) = shapes.get(&t.table) {
        for index in &table.indexes {
            let has_keys = |i: &&Value| index.key.iter().all(|k| i.get(k).is_some());
            let before = t.before.as_ref().filter(has_keys);
            let after = t.after.as_ref().filter(has_keys);
            let key_of = |i: &Value| index.key.iter().map(|k| i[k].clone()).collect::<Vec<_>>();
            units += match (before, after) {
                (None, None) => 0.0,
                (Some(_), None) => 1.0,
                (None, Some(a)) => kb_units(projected_size(a, table, index), 1024),
                (Some(b), Some(a)) if key_of(b) != key_of(a) => {
                    1.0 + kb_units(projected_size(a, table, index), 1024)
                }
                // An update that changes no attribute the index holds does not write it.
                (Some(b), Some(a)) if projected(b, table, index) == projected(a, table, index) => {
                    0.0
                }
                (Some(b), Some(a)) => kb_units(
                    projected_size(a, table, index).max(projected_size(b, table, index)),
                    1024,
                ),
            };
        }
    }
    if t.transactional { units * 2.0 } else { units }
}

/// The partition of a touched item, as `LogicalTable/value`.
pub fn partition_of(t: &Touched, shapes: &HashMap<String, TableShape>) -> String {
    let Some(shape) = shapes.get(&t.table) else {
        return t.table.clone();
    };
    let pk = shape
        .key
        .first()
        .and_then(|k| t.key[k].as_object()?.values().next().cloned())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
        .unwrap_or_default();
    format!("{}/{pk}", shape.logical)
}

/// The read units of one read request (`GetItem`, `Query`, `Scan`) from its response.
pub fn read_units(operation: &str, request: &Value, response: &Value) -> f64 {
    let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
    let bytes: usize = match operation {
        "GetItem" => item_size(&response["Item"]),
        "Query" | "Scan" => response["Items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(item_size)
            .sum(),
        "BatchGetItem" => {
            // Each item is read (and rounded up) on its own.
            let units: f64 = response["Responses"]
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(_, items)| items.as_array().into_iter().flatten())
                .map(|item| kb_units(item_size(item), 4096))
                .sum();
            let consistent = request["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(_, r)| r["ConsistentRead"].as_bool().unwrap_or(false));
            return if consistent { units } else { units / 2.0 };
        }
        _ => return 0.0,
    };
    let units = kb_units(bytes, 4096);
    if consistent { units } else { units / 2.0 }
}

/// SQS requests of one call: each 64 KB chunk of its payload counts as one.
pub fn sqs_requests(operation: &str, request: &Value, response: &Value) -> f64 {
    let payload: usize = match operation {
        "SendMessage" => request["MessageBody"].as_str().map_or(0, str::len),
        "SendMessageBatch" => request["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["MessageBody"].as_str().map_or(0, str::len))
            .sum(),
        "ReceiveMessage" => response["Messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["Body"].as_str().map_or(0, str::len))
            .sum(),
        _ => 0,
    };
    kb_units(payload, 64 * 1024)
}

/// A flow's cost per request, by component, in dollars per million requests.
#[derive(Debug, Clone, Default)]
pub struct Priced {
    pub dynamodb_writes: f64,
    pub dynamodb_reads: f64,
    pub sqs: f64,
    pub lambda_requests: f64,
    pub lambda_compute: f64,
    /// CloudWatch Logs ingestion of what the function wrote (tracing lines, EMF documents,
    /// audit lines).
    pub logs: f64,
    /// The audit lines' way to the audit bucket (Firehose), and S3 requests.
    pub audit_path: f64,
}

impl Priced {
    pub fn total(&self) -> f64 {
        self.dynamodb_writes
            + self.dynamodb_reads
            + self.sqs
            + self.lambda_requests
            + self.lambda_compute
            + self.logs
            + self.audit_path
    }
}

/// Prices per-request averages at a million requests.
pub fn price(
    units: &Units,
    invocations: f64,
    gb_seconds: f64,
    log_bytes: f64,
    audit_bytes: f64,
    prices: &Prices,
) -> Priced {
    Priced {
        dynamodb_writes: units.write_units * prices.dynamodb.write_request_units_per_million,
        dynamodb_reads: units.read_units * prices.dynamodb.read_request_units_per_million,
        sqs: units.sqs_requests * prices.sqs.requests_per_million,
        lambda_requests: invocations * prices.lambda.requests_per_million,
        lambda_compute: gb_seconds * prices.lambda.gb_second * 1_000_000.0,
        logs: log_bytes * prices.logs.ingestion_per_gb / 1e9 * 1_000_000.0,
        audit_path: audit_bytes * prices.firehose.audit_delivery_per_gb / 1e9 * 1_000_000.0
            + units.s3_writes_and_lists * prices.s3.writes_and_lists_per_thousand * 1_000.0
            + units.s3_reads * prices.s3.reads_per_thousand * 1_000.0,
    }
}

/// Keys written by every one of `iterations` (each a set of keys): the flow's singletons.
pub fn singletons(per_iteration: &[BTreeSet<String>]) -> BTreeSet<String> {
    let Some((first, rest)) = per_iteration.split_first() else {
        return BTreeSet::new();
    };
    if rest.is_empty() {
        return BTreeSet::new();
    }
    first
        .iter()
        .filter(|k| rest.iter().all(|keys| keys.contains(*k)))
        .cloned()
        .collect()
}
