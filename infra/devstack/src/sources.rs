//! Local stand-ins for the Lambda event sources AWS runs for us: the SQS event
//! source mapping (long-poll, invoke with a batch, delete what succeeded), DynamoDB
//! stream mappings (read the stream, invoke with the records the filter passes, retry
//! from the first failed one) and EventBridge schedules. Functions are invoked through
//! the Lambda Invoke API that `cargo lambda watch` serves.

use crate::provision::{LocalQueue, LocalStack};
use crate::template::{EventSource, REGION};
use anyhow::{Context, Result, anyhow};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use std::collections::HashMap;
use std::time::Duration;

/// Invokes functions through the Lambda Invoke API (`cargo lambda watch`, or anything that speaks it).
#[derive(Clone)]
pub struct Invoker {
    http: reqwest::Client,
    base_url: String,
}

/// What an invocation returned: the payload, or the function's error.
pub type InvokeResult = Result<serde_json::Value, String>;

impl Invoker {
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("HTTP client"),
            base_url: base_url.into().trim_end_matches('/').to_string(),
        }
    }

    /// `Ok(Err(..))` is a function error; `Err(..)` means the invoke itself failed.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<InvokeResult> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .http
            .post(&url)
            .json(payload)
            .send()
            .await
            .with_context(|| format!("invoking {function}"))?;
        let function_error = response.headers().contains_key("x-amz-function-error");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if function_error || !status.is_success() {
            return Ok(Err(format!("{status}: {body}")));
        }
        Ok(Ok(body))
    }
}

/// Turns received SQS messages into the event Lambda's SQS integration sends.
pub fn sqs_event(queue: &LocalQueue, messages: &[Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(String::from);
            record.receipt_handle = m.receipt_handle().map(String::from);
            record.body = m.body().map(String::from);
            record.md5_of_body = m.md5_of_body().map(String::from);
            record.attributes = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            record.message_attributes = m
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(k, v)| {
                            let mut a = SqsMessageAttribute::default();
                            a.string_value = v.string_value().map(String::from);
                            a.data_type = Some(v.data_type().to_string());
                            (k.clone(), a)
                        })
                        .collect::<HashMap<_, _>>()
                })
                .unwrap_or_default();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(queue.arn.clone());
            record.aws_region = Some(REGION.into());
            record
        })
        .collect();
    event
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub deleted: usize,
    pub retried: usize,
}

/// One round of the SQS event source mapping: receive up to `batch_size`,
/// invoke, delete the messages the function did not report as failed. A
/// function error retries the whole batch, as Lambda does.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    invoker: &Invoker,
    function: &str,
    queue: &LocalQueue,
    batch_size: i32,
    wait_seconds: i32,
) -> Result<PollReport> {
    let received = sqs
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(batch_size.clamp(1, 10))
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        // A long poll outlasts the functions' short SDK time-outs (shared::aws).
        .customize()
        .config_override(
            aws_sdk_sqs::config::Builder::default().timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(wait_seconds.max(0) as u64 + 5))
                    .operation_timeout(Duration::from_secs(wait_seconds.max(0) as u64 + 10))
                    .build(),
            ),
        )
        .send()
        .await
        .context("receiving from the queue")?;
    let messages = received.messages();
    if messages.is_empty() {
        return Ok(PollReport::default());
    }
    let event = sqs_event(queue, messages);
    let failed: Vec<String> = match invoker
        .invoke(function, &serde_json::to_value(&event)?)
        .await?
    {
        Ok(payload) => serde_json::from_value::<SqsBatchResponse>(payload)
            .map(|r| {
                r.batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect()
            })
            .unwrap_or_default(),
        Err(error) => {
            tracing::warn!(function, %error, "function error: the whole batch will be retried");
            messages
                .iter()
                .filter_map(|m| m.message_id().map(String::from))
                .collect()
        }
    };
    let to_delete: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .expect("id and receipt handle are set")
        })
        .collect();
    let deleted = to_delete.len();
    if !to_delete.is_empty() {
        sqs.delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(to_delete))
            .send()
            .await
            .context("deleting processed messages")?;
    }
    Ok(PollReport {
        received: messages.len(),
        deleted,
        retried: messages.len() - deleted,
    })
}

/// The event an EventBridge schedule sends.
pub fn scheduled_event(rule: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": crate::template::ACCOUNT,
        "time": shared::time::rfc3339(shared::time::now_millis()),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{}:rule/{rule}", crate::template::ACCOUNT)],
        "detail": {}
    })
}

/// How many records of a stream batch were handled: all of them, or those before the
/// first `batchItemFailures` entry (its `itemIdentifier` is a record's sequence number).
pub fn first_failure(response: &serde_json::Value, batch: &[serde_json::Value]) -> usize {
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    batch
        .iter()
        .position(|r| {
            r["dynamodb"]["SequenceNumber"]
                .as_str()
                .is_some_and(|s| failed.contains(&s))
        })
        .unwrap_or(batch.len())
}

/// Runs every SQS, stream and schedule source of the stack until Ctrl-C.
/// `schedule_override` replaces every schedule's period (local runs want it faster).
pub async fn run_all(
    sdk: &aws_config::SdkConfig,
    stack: &LocalStack,
    invoker: Invoker,
    schedule_override: Option<Duration>,
) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut tasks = tokio::task::JoinSet::new();
    for function in stack.functions.values() {
        for source in &function.events {
            let (invoker, binary) = (invoker.clone(), function.binary.clone());
            match source {
                EventSource::Sqs {
                    queue, batch_size, ..
                } => {
                    let queue = stack
                        .queues
                        .get(queue)
                        .ok_or_else(|| anyhow!("no queue {queue}"))?
                        .clone();
                    let (sqs, batch_size) = (sqs.clone(), *batch_size);
                    tracing::info!(function = %binary, queue = %queue.name, "polling SQS");
                    tasks.spawn(async move {
                        loop {
                            match poll_once(&sqs, &invoker, &binary, &queue, batch_size, 20).await {
                                Ok(r) if r.received > 0 => tracing::info!(function = %binary, received = r.received, deleted = r.deleted, retried = r.retried, "batch"),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(function = %binary, error = %format!("{e:#}"), "poll failed; retrying in 2 s");
                                    tokio::time::sleep(Duration::from_secs(2)).await;
                                }
                            }
                        }
                    });
                }
                EventSource::Schedule { every_seconds } => {
                    let period = schedule_override.unwrap_or(Duration::from_secs(*every_seconds));
                    let rule = format!("{}-{}", stack.stack_name, function.logical_id);
                    tracing::info!(function = %binary, period_seconds = period.as_secs(), "scheduling");
                    tasks.spawn(async move {
                        let mut ticker = tokio::time::interval(period);
                        ticker.tick().await;
                        loop {
                            ticker.tick().await;
                            match invoker.invoke(&binary, &scheduled_event(&rule)).await {
                                Ok(Ok(out)) => tracing::info!(function = %binary, result = %out, "scheduled run"),
                                Ok(Err(e)) => tracing::warn!(function = %binary, error = %e, "scheduled run failed"),
                                Err(e) => tracing::warn!(function = %binary, error = %format!("{e:#}"), "could not invoke"),
                            }
                        }
                    });
                }
                EventSource::DynamoDbStream {
                    table,
                    batch_size,
                    event_names,
                } => {
                    let table = stack
                        .tables
                        .get(table)
                        .ok_or_else(|| anyhow!("no table {table}"))?
                        .clone();
                    let mut reader = crate::streams::StreamReader::open(sdk, &table).await?;
                    let (batch_size, event_names) = (*batch_size as usize, event_names.clone());
                    tracing::info!(function = %binary, table = %table, "reading the stream");
                    tasks.spawn(async move {
                        // Records not yet handled, oldest first: a failed batch is retried
                        // from its first failed record, as the event source mapping does.
                        let mut pending: std::collections::VecDeque<serde_json::Value> =
                            Default::default();
                        loop {
                            match reader.read().await {
                                Ok(records) => pending.extend(
                                    records
                                        .into_iter()
                                        .filter(|r| crate::streams::passes(&event_names, r)),
                                ),
                                Err(e) => tracing::warn!(function = %binary, error = %format!("{e:#}"), "stream read failed"),
                            }
                            while !pending.is_empty() {
                                let batch: Vec<_> =
                                    pending.iter().take(batch_size).cloned().collect();
                                let handled = match invoker
                                    .invoke(&binary, &serde_json::json!({ "Records": batch }))
                                    .await
                                {
                                    Ok(Ok(out)) => first_failure(&out, &batch),
                                    Ok(Err(e)) => {
                                        tracing::warn!(function = %binary, error = %e, "stream batch failed");
                                        0
                                    }
                                    Err(e) => {
                                        tracing::warn!(function = %binary, error = %format!("{e:#}"), "could not invoke");
                                        0
                                    }
                                };
                                pending.drain(..handled);
                                if handled < batch.len() {
                                    break;
                                }
                            }
                            let pause = if pending.is_empty() { 100 } else { 1000 };
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                    });
                }
                EventSource::Api { .. } => {}
            }
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(result) = tasks.join_next() => result.map_err(|e| anyhow!("event source stopped: {e}")),
    }
}
