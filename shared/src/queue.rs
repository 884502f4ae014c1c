//! The tasks queue (SQS). Messages carry only the task id: the task itself
//! lives in DynamoDB, so a message stays far below SQS's 256 KiB limit and a
//! stale message can never carry stale data.

use crate::aws::{describe_error, is_transient};
use crate::config::{ConfigError, Settings};
use crate::tasks::model::{TaskId, TaskMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

/// SQS takes at most ten messages per batch call.
pub const SQS_MAX_BATCH: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("queue {kind}: {cause}")]
pub struct QueueError {
    /// `unavailable` (worth retrying) or `error`.
    pub kind: &'static str,
    pub cause: String,
}

impl QueueError {
    pub(crate) fn from_sdk<E, R>(err: aws_sdk_sqs::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        Self {
            kind: if is_transient(&err) {
                "unavailable"
            } else {
                "error"
            },
            cause: describe_error(&err),
        }
    }
}

#[derive(Clone)]
pub struct TaskQueue {
    client: Client,
    url: String,
}

impl TaskQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            url: url.into(),
        }
    }

    /// The queue named by `TASKS_QUEUE_URL`.
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(sdk, settings.required("TASKS_QUEUE_URL")?))
    }

    pub async fn send(&self, message: &TaskMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body(message))
            .send()
            .await
            .map(|_| ())
            .map_err(QueueError::from_sdk)
    }

    /// Sends up to any number of messages, ten per call; returns the ids that were sent.
    pub async fn send_all(&self, messages: &[TaskMessage]) -> Result<Vec<TaskId>, QueueError> {
        let mut sent = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(SQS_MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body(m))
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(QueueError::from_sdk)?;
            for ok in output.successful() {
                if let Some(m) = ok.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                    sent.push(m.task_id);
                }
            }
        }
        Ok(sent)
    }

    /// Readiness probe: the queue exists and answers.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map(|_| ())
            .map_err(QueueError::from_sdk)
    }
}

fn body(message: &TaskMessage) -> String {
    serde_json::to_string(message).expect("a task message always serializes")
}
