//! The task enqueuer: every task the tasks table accepts goes onto the tasks queue.
//!
//! A submission is one conditional `PutItem`; the table's stream (keys only) carries each
//! new task to this function (an event source mapping filtered to `INSERT`, so updates
//! never invoke it), which sends the tasks' messages ten to a `SendMessageBatch`. The
//! request path writes DynamoDB once and SQS never; the stream keeps a record 24 hours
//! and the mapping retries a failed batch from its first unsent record, so an accepted
//! task cannot be lost to a failed send or a function that dies between two writes
//! (see `docs/architecture.md`). A record sent twice (a retried batch) is harmless: the
//! worker's conditional claim runs a task once.

use super::model::{TaskId, TaskMessage};
use crate::queue::{SQS_MAX_BATCH, TaskQueue};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

/// The task a stream record announces, if it is a new one.
pub fn inserted_task(record: &EventRecord) -> Option<TaskId> {
    if record.event_name != "INSERT" {
        return None;
    }
    let keys = serde_json::to_value(&record.change.keys).ok()?;
    TaskId::parse(keys.pointer("/task_id/S")?.as_str()?)
}

pub struct TaskEnqueuer {
    pub queue: TaskQueue,
}

impl TaskEnqueuer {
    /// Sends a message for each new task of the batch, in order. At the first record that
    /// could not be sent, stops and names it: Lambda retries the batch from there (the
    /// records before it are done), so nothing is skipped and little is sent twice.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let records: Vec<(&EventRecord, TaskId)> = event
            .records
            .iter()
            .filter_map(|r| inserted_task(r).map(|id| (r, id)))
            .collect();
        for chunk in records.chunks(SQS_MAX_BATCH) {
            let messages: Vec<TaskMessage> = chunk
                .iter()
                .map(|(_, task_id)| TaskMessage {
                    task_id: *task_id,
                    request_id: None,
                })
                .collect();
            let sent = match self.queue.send_all(&messages).await {
                Ok(sent) => sent,
                Err(err) => {
                    tracing::warn!(error = %err, "tasks could not be enqueued; the stream retries");
                    Vec::new()
                }
            };
            if let Some((record, task_id)) = chunk.iter().find(|(_, id)| !sent.contains(id)) {
                tracing::warn!(%task_id, "enqueue failed; retrying the batch from this task");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
                metrics::counter!(crate::telemetry::names::ENQUEUE_RETRIED).increment(1);
                return response;
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, task_id: &str) -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "eventID": "1",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_795_000_000.0,
                "Keys": {"task_id": {"S": task_id}},
                "SequenceNumber": "100",
                "SizeBytes": 50,
                "StreamViewType": "KEYS_ONLY"
            }
        }))
        .expect("a stream record")
    }

    #[test]
    fn only_an_insert_of_a_task_is_a_new_task() {
        let id = TaskId::new();
        assert_eq!(inserted_task(&record("INSERT", &id.to_string())), Some(id));
        assert_eq!(inserted_task(&record("MODIFY", &id.to_string())), None);
        assert_eq!(inserted_task(&record("REMOVE", &id.to_string())), None);
        assert_eq!(inserted_task(&record("INSERT", "not-a-task")), None);
    }
}
