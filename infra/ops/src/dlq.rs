//! Dead-letter queues: read without consuming, replay to the source queue, purge, redrive.

use crate::stack::DeadLetterQueue;
use anyhow::{Result, anyhow};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use serde::Serialize;
use shared::tasks::replay::{self, Readiness};
use shared::tasks::worker::{REPLAY_COUNT, REPLAY_OF, REPLAYED_BY};
use shared::tasks::{RunStore, TaskId, TaskMessage, TaskStore};
use std::collections::HashSet;
use std::time::Duration;

/// Which messages a command takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub task_id: Option<TaskId>,
    /// A substring of the task's failures (or last error).
    pub reason: Option<String>,
    pub older_than: Option<Duration>,
}

/// One dead-lettered message, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub message_id: String,
    pub receive_count: u32,
    /// Since the message was first sent, in seconds.
    pub age_seconds: u64,
    pub task_id: Option<String>,
    pub task_status: Option<String>,
    pub attempts: Option<u32>,
    pub first_failure: Option<String>,
    pub last_failure: Option<String>,
    /// How often it was replayed before (the `replay_count` attribute).
    pub replay_count: u32,
    #[serde(skip)]
    body: String,
    #[serde(skip)]
    receipt: String,
    #[serde(skip)]
    replay_of: String,
}

pub struct Dlq<'a> {
    pub sqs: aws_sdk_sqs::Client,
    pub queue: &'a DeadLetterQueue,
    pub tasks: Option<TaskStore>,
}

/// How long a message taken for a look stays hidden (it is released at once after).
const LOOK_SECONDS: i32 = 60;

impl Dlq<'_> {
    /// Takes up to ten messages not seen before (hidden for [`LOOK_SECONDS`]); an empty
    /// answer when the queue has nothing more to show.
    async fn take(&self, seen: &mut HashSet<String>) -> Result<Vec<Letter>> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(LOOK_SECONDS)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "receiving from {}: {}",
                    self.queue.name,
                    shared::aws::describe_error(&e)
                )
            })?;
        let now = shared::time::now_millis();
        let mut out = Vec::new();
        for m in received.messages() {
            let id = m.message_id().unwrap_or_default().to_string();
            let receipt = m.receipt_handle().unwrap_or_default().to_string();
            if !seen.insert(id.clone()) {
                self.release(&receipt).await?;
                continue;
            }
            let system =
                |n: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&n)).cloned();
            let attribute = |n: &str| {
                m.message_attributes()
                    .and_then(|a| a.get(n))
                    .and_then(|v| v.string_value().map(str::to_string))
            };
            let sent: i64 = system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse().ok())
                .unwrap_or(now);
            let body = m.body().unwrap_or_default().to_string();
            let mut letter = Letter {
                receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                age_seconds: ((now - sent).max(0) / 1000) as u64,
                task_id: None,
                task_status: None,
                attempts: None,
                first_failure: None,
                last_failure: None,
                replay_count: attribute(REPLAY_COUNT)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                replay_of: attribute(REPLAY_OF).unwrap_or_else(|| id.clone()),
                message_id: id,
                body,
                receipt,
            };
            self.describe(&mut letter).await?;
            out.push(letter);
        }
        Ok(out)
    }

    /// Adds the task's side: status, attempts, first and last failure.
    async fn describe(&self, letter: &mut Letter) -> Result<()> {
        let Ok(message) = serde_json::from_str::<TaskMessage>(&letter.body) else {
            return Ok(());
        };
        letter.task_id = Some(message.task_id.to_string());
        let Some(tasks) = &self.tasks else {
            return Ok(());
        };
        if let Some(task) = tasks.get(message.task_id).await? {
            let line = |f: &shared::tasks::model::FailedAttempt| {
                format!("#{} {:?}: {}", f.attempt, f.class, f.message)
            };
            letter.task_status = Some(task.status.as_str().to_string());
            letter.attempts = Some(task.attempts);
            letter.first_failure = task.failures.first().map(line);
            letter.last_failure = task.failures.last().map(line).or(task.last_error.clone());
        }
        Ok(())
    }

    fn selected(&self, letter: &Letter, filter: &Filter) -> bool {
        let task_ok = filter
            .task_id
            .is_none_or(|id| letter.task_id.as_deref() == Some(id.to_string().as_str()));
        let reason_ok = filter.reason.as_ref().is_none_or(|text| {
            [&letter.first_failure, &letter.last_failure]
                .iter()
                .any(|f| f.as_deref().is_some_and(|f| f.contains(text.as_str())))
        });
        let age_ok = filter
            .older_than
            .is_none_or(|d| letter.age_seconds >= d.as_secs());
        task_ok && reason_ok && age_ok
    }

    async fn release(&self, receipt: &str) -> Result<()> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.queue.url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("releasing a message: {}", shared::aws::describe_error(&e)))
    }

    /// The messages `filter` selects, at most `limit`, each made visible again at once.
    pub async fn inspect(&self, filter: &Filter, limit: usize) -> Result<Vec<Letter>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        loop {
            let batch = self.take(&mut seen).await?;
            if batch.is_empty() {
                break;
            }
            for letter in batch {
                self.release(&letter.receipt).await?;
                if out.len() < limit && self.selected(&letter, filter) {
                    out.push(letter);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Moves the selected messages back to the source queue (see [`Replay`]).
    pub async fn replay(
        &self,
        plan: &Replay<'_>,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Replayed>> {
        let mut seen = HashSet::new();
        let mut out: Vec<Replayed> = Vec::new();
        let gap = Duration::from_secs_f64(1.0 / plan.rate);
        let mut last_send: Option<std::time::Instant> = None;
        loop {
            let batch = self.take(&mut seen).await?;
            if batch.is_empty() {
                break;
            }
            for letter in batch {
                let taken = out.iter().filter(|r| r.action != Action::Skipped).count();
                if taken >= plan.max || !self.selected(&letter, &plan.filter) {
                    self.release(&letter.receipt).await?;
                    continue;
                }
                let done = self.replay_one(plan, &letter, &mut last_send, gap).await;
                let done = match done {
                    Ok(done) => done,
                    Err(e) => {
                        self.release(&letter.receipt).await?;
                        return Err(e);
                    }
                };
                if done.action != Action::Moved {
                    self.release(&letter.receipt).await?;
                }
                progress.inc(1);
                out.push(done);
            }
        }
        Ok(out)
    }

    async fn replay_one(
        &self,
        plan: &Replay<'_>,
        letter: &Letter,
        last_send: &mut Option<std::time::Instant>,
        gap: Duration,
    ) -> Result<Replayed> {
        let task_id = letter.task_id.as_deref().and_then(TaskId::parse);
        let readiness = match (&task_id, &self.tasks, plan.dry_run) {
            // Not a task message (the audit queue's records): it goes back as it is.
            (None, _, _) | (_, None, _) => Readiness::Unsettled,
            (Some(id), Some(tasks), true) => match tasks.get(*id).await? {
                None => Readiness::Missing,
                Some(t)
                    if t.status == shared::tasks::TaskStatus::Failed
                        && t.last_error
                            .as_deref()
                            .is_some_and(|e| e.starts_with(replay::DEAD_LETTERED)) =>
                {
                    Readiness::Reopened
                }
                Some(t)
                    if matches!(
                        t.status,
                        shared::tasks::TaskStatus::Queued | shared::tasks::TaskStatus::InProgress
                    ) =>
                {
                    Readiness::Unsettled
                }
                Some(t) => Readiness::Settled { status: t.status },
            },
            (Some(id), Some(tasks), false) => {
                let now = shared::time::now_millis();
                replay::reopen(tasks, plan.runs, *id, &letter.replay_of, plan.operator, now).await?
            }
        };
        let mut done = Replayed {
            message_id: letter.message_id.clone(),
            task_id: letter.task_id.clone(),
            readiness: readiness.clone(),
            action: match (readiness.replays(), plan.dry_run) {
                (false, _) => Action::Skipped,
                (true, true) => Action::WouldMove,
                (true, false) => Action::Moved,
            },
        };
        if done.action != Action::Moved {
            return Ok(done);
        }
        if let Some(at) = *last_send {
            tokio::time::sleep(gap.saturating_sub(at.elapsed())).await;
        }
        *last_send = Some(std::time::Instant::now());
        let string = |v: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("data type and value are set")
        };
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.queue.source_url)
            .message_body(&letter.body)
            .message_attributes(REPLAY_OF, string(letter.replay_of.clone()))
            .message_attributes(REPLAY_COUNT, string((letter.replay_count + 1).to_string()))
            .message_attributes(REPLAYED_BY, string(plan.operator.to_string()))
            .send()
            .await;
        if let Err(e) = sent {
            // The message stays in the dead-letter queue; the task, reopened, waits for it.
            done.action = Action::Failed;
            eprintln!(
                "nf-ops: message {} not sent ({}); it stays in {}",
                letter.message_id,
                shared::aws::describe_error(&e),
                self.queue.name
            );
            return Ok(done);
        }
        // Deleted only once the source queue has it.
        self.sqs
            .delete_message()
            .queue_url(&self.queue.url)
            .receipt_handle(&letter.receipt)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "deleting a replayed message: {}",
                    shared::aws::describe_error(&e)
                )
            })?;
        Ok(done)
    }

    pub async fn depth(&self) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "reading {}: {}",
                    self.queue.name,
                    shared::aws::describe_error(&e)
                )
            })?;
        let get = |n: A| -> u64 {
            out.attributes()
                .and_then(|a| a.get(&n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible))
    }

    /// The oldest message's age in seconds, from a look at up to 100 messages.
    pub async fn oldest_age_seconds(&self) -> Result<Option<u64>> {
        let letters = self.inspect(&Filter::default(), 100).await?;
        Ok(letters.iter().map(|l| l.age_seconds).max())
    }

    pub async fn purge(&self) -> Result<()> {
        self.sqs
            .purge_queue()
            .queue_url(&self.queue.url)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                anyhow!(
                    "purging {}: {}",
                    self.queue.name,
                    shared::aws::describe_error(&e)
                )
            })
    }
}

/// What `dlq replay` does.
pub struct Replay<'a> {
    pub filter: Filter,
    pub dry_run: bool,
    pub max: usize,
    /// Messages sent per second at most.
    pub rate: f64,
    pub runs: &'a RunStore,
    /// The operator's IAM identity.
    pub operator: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Moved,
    WouldMove,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub message_id: String,
    pub task_id: Option<String>,
    pub readiness: Readiness,
    pub action: Action,
}
