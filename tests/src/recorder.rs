//! Records every AWS call a function's code makes, at the HTTP layer of the SDK (a
//! real client that also sends each request on to moto), as the IAM actions and
//! resources the call needs. `tests/it/iam.rs` compares them with the function's
//! policy in `template.yaml`.

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

#[derive(Debug, Clone, Default)]
pub struct Recorder {
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    /// Every request in order: its `X-Amz-Target` and JSON body.
    log: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    /// An SDK configuration like `base` whose every request is recorded here.
    pub fn sdk(&self, base: &SdkConfig) -> SdkConfig {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        base.to_builder()
            .http_client(SharedHttpClient::new(RecordingClient {
                inner,
                uses: Arc::clone(&self.uses),
                log: Arc::clone(&self.log),
            }))
            .build()
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
            .filter(|(target, _)| target.ends_with(&format!(".{operation}")))
            .map(|(_, body)| body.clone())
            .collect()
    }
}

#[derive(Debug, Clone)]
struct RecordingClient {
    inner: SharedHttpClient,
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    log: Arc<Mutex<Vec<(String, Value)>>>,
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
        })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    uses: Arc<Mutex<BTreeSet<RawUse>>>,
    log: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let uses = uses_of(target, &body);
        self.uses.lock().unwrap().extend(uses);
        self.log.lock().unwrap().push((target.to_string(), body));
        self.inner.call(request)
    }
}

/// The permissions one request needs (JSON protocols: DynamoDB, SQS, SSM).
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
