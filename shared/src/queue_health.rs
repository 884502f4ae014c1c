//! Queue health, read by the scheduled `queue-health` function: messages per
//! queue by state, and the messages waiting in each queue's dead-letter queue,
//! sent as gauges while any queue holds something (and once after).
//!
//! The queues come from `QUEUE_HEALTH__QUEUES` (`tasks`, comma-separated): for each name
//! `<NAME>_QUEUE_URL` and `<NAME>_DLQ_URL`. The age of the oldest message is
//! not among SQS's queue attributes (only CloudWatch has
//! `ApproximateAgeOfOldestMessage`), and reading messages to learn it would
//! count as receives, so it is left to CloudWatch.

use crate::config::{ConfigError, Settings};
use crate::queue::QueueError;
use crate::telemetry::{QuietGauges, Reading, names, report_gauges};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct WatchedQueue {
    /// The `queue` label: `tasks`.
    pub name: String,
    pub url: String,
    pub dlq_url: String,
}

/// One queue's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueFigures {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_lettered: u64,
}

pub struct QueueHealth {
    pub client: Client,
    pub queues: Vec<WatchedQueue>,
    /// Fails the tasks of dead-lettered task messages, while there are any.
    pub reconciler: Option<crate::tasks::reconcile::DeadLetterReconciler>,
    gauges: QuietGauges,
}

impl QueueHealth {
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        let names = settings
            .optional("QUEUE_HEALTH__QUEUES")
            .unwrap_or_else(|| "tasks".into());
        let queues: Vec<WatchedQueue> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| {
                let upper = name.to_ascii_uppercase();
                Ok(WatchedQueue {
                    name: name.to_string(),
                    url: settings.required(&format!("{upper}_QUEUE_URL"))?,
                    dlq_url: settings.required(&format!("{upper}_DLQ_URL"))?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        // With the tasks table configured, dead-lettered task messages are reconciled too.
        let reconciler = match (
            settings.optional("TASKS_TABLE"),
            queues.iter().find(|q| q.name == "tasks"),
        ) {
            (Some(_), Some(tasks)) => Some(crate::tasks::reconcile::DeadLetterReconciler {
                sqs: Client::new(sdk),
                dlq_url: tasks.dlq_url.clone(),
                store: crate::tasks::store::TaskStore::new(
                    sdk,
                    crate::tasks::store::TaskTables::from_settings(settings)?,
                ),
                max_batches: 5,
            }),
            _ => None,
        };
        Ok(Self {
            client: Client::new(sdk),
            queues,
            reconciler,
            gauges: QuietGauges::default(),
        })
    }

    async fn counts(&self, url: &str) -> Result<[u64; 3], QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(QueueError::from_sdk)?;
        let attributes = out.attributes();
        let get = |name: QueueAttributeName| {
            attributes
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok([
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ])
    }

    async fn figures(&self, queue: &WatchedQueue) -> Result<QueueFigures, QueueError> {
        let [visible, in_flight, delayed] = self.counts(&queue.url).await?;
        let [dlq_visible, dlq_in_flight, _] = self.counts(&queue.dlq_url).await?;
        Ok(QueueFigures {
            visible,
            in_flight,
            delayed,
            dead_lettered: dlq_visible + dlq_in_flight,
        })
    }

    /// Reads every queue; one queue failing does not hide the others (it is logged and left out).
    pub async fn read(&self) -> BTreeMap<String, QueueFigures> {
        let mut out = BTreeMap::new();
        for queue in &self.queues {
            match self.figures(queue).await {
                Ok(f) => {
                    out.insert(queue.name.clone(), f);
                }
                Err(e) => {
                    tracing::warn!(queue = %queue.name, error = %e, "queue attributes not read")
                }
            }
        }
        out
    }
}

/// The gauges' readings.
pub fn readings(figures: &BTreeMap<String, QueueFigures>) -> Vec<Reading> {
    let mut out = Vec::new();
    for (queue, f) in figures {
        for (state, value) in [
            ("visible", f.visible),
            ("in_flight", f.in_flight),
            ("delayed", f.delayed),
        ] {
            out.push(Reading::new(
                names::QUEUE_MESSAGES,
                &[("queue", queue), ("state", state)],
                value as f64,
            ));
        }
        out.push(Reading::new(
            names::QUEUE_DEAD_LETTER_MESSAGES,
            &[("queue", queue)],
            f.dead_lettered as f64,
        ));
    }
    out
}

/// Whether any queue holds anything (in flight, delayed or dead-lettered included).
fn busy(figures: &BTreeMap<String, QueueFigures>) -> bool {
    figures
        .values()
        .any(|f| f.visible + f.in_flight + f.delayed + f.dead_lettered > 0)
}

/// What a run of [`QueueHealth`] read, and whether it sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueReport {
    pub queues: BTreeMap<String, QueueFigures>,
    pub reported: bool,
}

impl crate::runtime::ScheduledJob for QueueHealth {
    type Report = QueueReport;

    async fn run_once(&self) -> Result<Self::Report, lambda_runtime::Error> {
        let figures = self.read().await;
        // Sent while a queue holds something, and once after (see `QuietGauges`).
        let reported = self.gauges.report(busy(&figures));
        if reported {
            report_gauges(&readings(&figures));
        }
        if figures.len() < self.queues.len() {
            // Fail the invocation so the gap shows in Lambda's errors.
            return Err("some queues could not be read".into());
        }
        // Only while the tasks dead-letter queue holds messages: nothing is read at idle.
        if let Some(reconciler) = &self.reconciler
            && figures.get("tasks").is_some_and(|f| f.dead_lettered > 0)
        {
            let done = reconciler.run().await.map_err(|e| e.to_string())?;
            tracing::info!(
                messages = done.messages,
                failed = done.failed,
                "dead-lettered tasks reconciled"
            );
        }
        Ok(QueueReport {
            queues: figures,
            reported,
        })
    }
}
