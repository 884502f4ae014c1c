//! Records every AWS call a function's code makes, at the HTTP layer of the SDK (a
//! real client that also sends each request on to moto): as the IAM actions and
//! resources the call needs (`tests/it/iam.rs` compares them with the function's
//! policy in `template.yaml`), and, when metering, with its response and the items
//! each write touched before and after (the cost meter, `crate::cost`, prices them).

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What the recorded requests named: physical table names, queue URLs, parameter names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawUse {
    pub action: String,
    /// `table:<name>`, `index:<table>`, `queue:<url>`, `parameter:<name>`.
    pub target: String,
    /// The item's key or item attributes (DynamoDB, as JSON text), to find its partition key.
    pub key: Option<String>,
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `X-Amz-Target`, for example `DynamoDB_20120810.GetItem`.
    pub target: String,
    pub request: Value,
    /// The JSON response (recorded when metering).
    pub response: Value,
    /// The items a write touched, before and after (recorded when metering).
    pub touched: Vec<crate::cost::Touched>,
}

impl Call {
    /// The operation (`GetItem`, `SendMessage`).
    pub fn operation(&self) -> &str {
        self.target.rsplit('.').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Recorder {
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    /// Every request in order.
    log: Arc<Mutex<Vec<Call>>>,
    /// Set when metering: reads items around each write, through a client not recorded.
    meter: Option<Arc<Meter>>,
}

#[derive(Debug)]
struct Meter {
    dynamodb: aws_sdk_dynamodb::Client,
    shapes: std::collections::HashMap<String, crate::cost::TableShape>,
}

impl Recorder {
    /// A recorder that also keeps responses and the items each write touched, for the
    /// cost meter. `base` reads the items (unrecorded); `tables` names the stack's tables.
    pub fn metering(base: &SdkConfig, tables: &std::collections::BTreeMap<String, String>) -> Self {
        Self {
            meter: Some(Arc::new(Meter {
                dynamodb: aws_sdk_dynamodb::Client::new(base),
                shapes: crate::cost::table_shapes(tables),
            })),
            ..Self::default()
        }
    }

    /// An SDK configuration like `base` whose every request is recorded here.
    pub fn sdk(&self, base: &SdkConfig) -> SdkConfig {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        base.to_builder()
            .http_client(SharedHttpClient::new(RecordingClient {
                inner,
                uses: Arc::clone(&self.uses),
                log: Arc::clone(&self.log),
                meter: self.meter.clone(),
            }))
            .build()
    }

    /// Every call so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.log.lock().unwrap())
    }

    pub fn take(&self) -> BTreeSet<RawUse> {
        std::mem::take(&mut self.uses.lock().unwrap())
    }

    /// The requests sent so far whose target ends with `operation` (`GetItem`, `Query`).
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.target.ends_with(&format!(".{operation}")))
            .map(|call| call.request.clone())
            .collect()
    }
}

#[derive(Debug, Clone)]
struct RecordingClient {
    inner: SharedHttpClient,
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    log: Arc<Mutex<Vec<Call>>>,
    meter: Option<Arc<Meter>>,
}

impl HttpClient for RecordingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RecordingConnector {
            inner: self.inner.http_connector(settings, components),
            uses: Arc::clone(&self.uses),
            log: Arc::clone(&self.log),
            meter: self.meter.clone(),
        })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    log: Arc<Mutex<Vec<Call>>>,
    meter: Option<Arc<Meter>>,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_string();
        let mut body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        if target.is_empty()
            && let Some((s3_target, s3_body)) = s3_call(request.method(), request.uri())
        {
            (target, body) = (s3_target, s3_body);
        }
        self.uses.lock().unwrap().extend(uses_of(&target, &body));
        let Some(meter) = self.meter.clone() else {
            self.log.lock().unwrap().push(Call {
                target,
                request: body,
                response: Value::Null,
                touched: vec![],
            });
            return self.inner.call(request);
        };
        let (inner, log) = (self.inner.clone(), Arc::clone(&self.log));
        HttpConnectorFuture::new(async move {
            let mut touched = meter.touched_by(&target, &body);
            for t in &mut touched {
                t.before = meter.item(&t.table, &t.key).await;
            }
            let mut response = inner.call(request).await?;
            let bytes = aws_smithy_types::byte_stream::ByteStream::new(response.take_body())
                .collect()
                .await
                .map(|b| b.into_bytes())
                .unwrap_or_default();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            *response.body_mut() = aws_smithy_types::body::SdkBody::from(bytes);
            for t in &mut touched {
                t.after = meter.item(&t.table, &t.key).await;
            }
            log.lock().unwrap().push(Call {
                target,
                request: body,
                response: json,
                touched,
            });
            Ok(response)
        })
    }
}

impl Meter {
    /// The items a DynamoDB write names (their keys; a put's item as sent).
    fn touched_by(&self, target: &str, body: &Value) -> Vec<crate::cost::Touched> {
        let one = |inner: &Value, transactional: bool| {
            let table = inner["TableName"].as_str()?.to_string();
            let sent = inner.get("Item").cloned();
            let key = match (inner.get("Key"), &sent, self.shapes.get(&table)) {
                (Some(key), _, _) => key.clone(),
                (None, Some(item), Some(shape)) => Value::Object(
                    shape
                        .key
                        .iter()
                        .map(|k| (k.clone(), item[k].clone()))
                        .collect(),
                ),
                _ => return None,
            };
            Some(crate::cost::Touched {
                table,
                key,
                before: None,
                after: None,
                sent,
                transactional,
            })
        };
        match target.rsplit('.').next().unwrap_or_default() {
            "PutItem" | "UpdateItem" | "DeleteItem" => one(body, false).into_iter().collect(),
            "TransactWriteItems" => body["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| one(item.as_object()?.values().next()?, true))
                .collect(),
            _ => vec![],
        }
    }

    /// An item as it is now (strongly consistent), in DynamoDB JSON.
    async fn item(&self, table: &str, key: &Value) -> Option<Value> {
        let key = key
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), attribute_from_json(v)?)))
            .collect::<Option<std::collections::HashMap<_, _>>>()?;
        let out = self
            .dynamodb
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .ok()?;
        out.item().map(|item| {
            Value::Object(
                item.iter()
                    .map(|(k, v)| (k.clone(), attribute_to_json(v)))
                    .collect(),
            )
        })
    }
}

/// `{"<partition key>": value}` of a query, from the first clause of its key condition
/// (`chain_id = :c AND …`, names and values through their placeholders).
fn queried_partition(body: &Value) -> Option<Value> {
    let condition = body["KeyConditionExpression"].as_str()?;
    let (name, rest) = condition.split_once('=')?;
    let name = name.trim();
    let name = body["ExpressionAttributeNames"][name]
        .as_str()
        .unwrap_or(name);
    let placeholder = rest.split_whitespace().next()?;
    let value = body["ExpressionAttributeValues"].get(placeholder)?;
    Some(serde_json::json!({ name: value }))
}

/// A key attribute from DynamoDB JSON (keys are strings, numbers or binaries).
fn attribute_from_json(value: &Value) -> Option<aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let (kind, inner) = value.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "S" => A::S(inner.as_str()?.to_string()),
        "N" => A::N(inner.as_str()?.to_string()),
        _ => return None,
    })
}

/// An attribute as DynamoDB JSON, for sizing.
fn attribute_to_json(value: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use serde_json::json;
    match value {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::B(b) => json!({ "B": "x".repeat(b.as_ref().len() * 4 / 3) }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(_) => json!({ "NULL": true }),
        A::Ss(v) => json!({ "SS": v }),
        A::Ns(v) => json!({ "NS": v }),
        A::L(items) => json!({ "L": items.iter().map(attribute_to_json).collect::<Vec<_>>() }),
        A::M(map) => json!({
            "M": map.iter().map(|(k, v)| (k.clone(), attribute_to_json(v))).collect::<serde_json::Map<_, _>>()
        }),
        _ => Value::Null,
    }
}

/// An S3 call (a REST call: no `x-amz-target`, path-style addressing) as
/// `AmazonS3.<Operation>` with its bucket and key.
fn s3_call(method: &str, uri: &str) -> Option<(String, Value)> {
    let url = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path_query = &url[url.find('/')?..];
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let (bucket, key) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path.trim_start_matches('/'), ""));
    if bucket.is_empty() {
        return None;
    }
    let params: Vec<&str> = query.split('&').collect();
    let operation = if params.contains(&"list-type=2") {
        "ListObjectsV2"
    } else if let Some(op) = params.iter().find_map(|p| p.strip_prefix("x-id=")) {
        op
    } else {
        match (method, key.is_empty()) {
            ("GET", false) => "GetObject",
            ("PUT", false) => "PutObject",
            ("PUT", true) => "CreateBucket",
            ("HEAD", false) => "HeadObject",
            ("DELETE", false) => "DeleteObject",
            _ => return None,
        }
    };
    Some((
        format!("AmazonS3.{operation}"),
        serde_json::json!({"Bucket": bucket, "Key": key}),
    ))
}

/// The permissions one request needs (JSON protocols: DynamoDB, SQS, SSM; S3 as
/// [`s3_call`] names it).
pub fn uses_of(target: &str, body: &Value) -> Vec<RawUse> {
    let Some((service, operation)) = target.split_once('.') else {
        return Vec::new();
    };
    let one = |action: String, target: String, key: Option<&Value>| RawUse {
        action,
        target,
        key: key.map(Value::to_string),
    };
    let table = |b: &Value| b["TableName"].as_str().unwrap_or_default().to_string();
    if service.starts_with("DynamoDB") {
        match operation {
            "TransactWriteItems" => body["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| {
                    let (kind, inner) = item.as_object()?.iter().next()?;
                    let action = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        _ => "ConditionCheckItem",
                    };
                    let key = inner.get("Key").or_else(|| inner.get("Item"));
                    Some(one(
                        format!("dynamodb:{action}"),
                        format!("table:{}", table(inner)),
                        key,
                    ))
                })
                .collect(),
            "BatchGetItem" => body["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(t, request)| {
                    request["Keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |key| {
                            one(
                                "dynamodb:BatchGetItem".into(),
                                format!("table:{t}"),
                                Some(key),
                            )
                        })
                })
                .collect(),
            "BatchWriteItem" => body["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(t, _)| one("dynamodb:BatchWriteItem".into(), format!("table:{t}"), None))
                .collect(),
            "Query" | "Scan" if body.get("IndexName").is_some() => vec![one(
                format!("dynamodb:{operation}"),
                format!(
                    "index:{}/{}",
                    table(body),
                    body["IndexName"].as_str().unwrap_or_default()
                ),
                None,
            )],
            "Query" => {
                // The partition a query reads, as `dynamodb:LeadingKeys` sees it.
                let key = queried_partition(body);
                vec![one(
                    "dynamodb:Query".into(),
                    format!("table:{}", table(body)),
                    key.as_ref(),
                )]
            }
            _ => {
                let key = body.get("Key").or_else(|| body.get("Item"));
                vec![one(
                    format!("dynamodb:{operation}"),
                    format!("table:{}", table(body)),
                    key,
                )]
            }
        }
    } else if service == "AmazonSQS" {
        // The batch calls need the single call's permission.
        let action = operation.trim_end_matches("Batch");
        vec![one(
            format!("sqs:{action}"),
            format!("queue:{}", body["QueueUrl"].as_str().unwrap_or_default()),
            None,
        )]
    } else if service == "AmazonS3" {
        let bucket = body["Bucket"].as_str().unwrap_or_default();
        match operation {
            // Listing needs s3:ListBucket on the bucket.
            "ListObjectsV2" => vec![one(
                "s3:ListBucket".into(),
                format!("bucket:{bucket}"),
                None,
            )],
            _ => vec![one(
                format!("s3:{operation}"),
                format!(
                    "object:{bucket}/{}",
                    body["Key"].as_str().unwrap_or_default()
                ),
                None,
            )],
        }
    } else if service == "AmazonSSM" {
        vec![one(
            format!("ssm:{operation}"),
            format!("parameter:{}", body["Name"].as_str().unwrap_or_default()),
            None,
        )]
    } else {
        vec![one(format!("{service}:{operation}"), String::new(), None)]
    }
}
