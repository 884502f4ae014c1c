//! The stack's queues and tables, found by name from the stack's prefix (`<stack>-<Logical>`,
//! as CloudFormation and the local provisioner name them) and the queues' own redrive
//! policies: nothing is typed in but the stack's name.

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use std::collections::HashMap;

/// A dead-letter queue and the queue it takes messages from.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterQueue {
    pub name: String,
    pub url: String,
    pub arn: String,
    pub source_name: String,
    pub source_url: String,
    pub source_arn: String,
    pub max_receive_count: u32,
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub dead_letter_queues: Vec<DeadLetterQueue>,
    tables: Vec<String>,
    /// S3 bucket names of the stack (lower case, as S3 requires).
    buckets: Vec<String>,
}

struct QueueInfo {
    name: String,
    url: String,
    arn: String,
    /// The dead-letter queue's ARN and `maxReceiveCount`, if it has one.
    redrive: Option<(String, u32)>,
}

impl Stack {
    pub async fn discover(sdk: &aws_config::SdkConfig, name: &str) -> Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let prefix = format!("{name}-");
        let mut urls = Vec::new();
        let mut next = None;
        loop {
            let page = sqs
                .list_queues()
                .queue_name_prefix(&prefix)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| anyhow!("listing queues: {}", shared::aws::describe_error(&e)))?;
            urls.extend(page.queue_urls().iter().cloned());
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        let mut infos = Vec::new();
        for url in urls {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| anyhow!("reading {url}: {}", shared::aws::describe_error(&e)))?;
            let get = |n: QueueAttributeName| attributes.attributes().and_then(|a| a.get(&n));
            let redrive = get(QueueAttributeName::RedrivePolicy)
                .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
                .and_then(|policy| {
                    let target = policy["deadLetterTargetArn"].as_str()?.to_string();
                    let max = match &policy["maxReceiveCount"] {
                        serde_json::Value::Number(n) => n.as_u64()?,
                        serde_json::Value::String(s) => s.parse().ok()?,
                        _ => return None,
                    };
                    Some((target, max as u32))
                });
            infos.push(QueueInfo {
                name: url.rsplit('/').next().unwrap_or_default().to_string(),
                arn: get(QueueAttributeName::QueueArn)
                    .cloned()
                    .unwrap_or_default(),
                url,
                redrive,
            });
        }
        let by_arn: HashMap<&str, &QueueInfo> = infos.iter().map(|q| (q.arn.as_str(), q)).collect();
        let mut dead_letter_queues: Vec<DeadLetterQueue> = infos
            .iter()
            .filter_map(|source| {
                let (target, max) = source.redrive.as_ref()?;
                let dlq = by_arn.get(target.as_str())?;
                Some(DeadLetterQueue {
                    name: dlq.name.clone(),
                    url: dlq.url.clone(),
                    arn: dlq.arn.clone(),
                    source_name: source.name.clone(),
                    source_url: source.url.clone(),
                    source_arn: source.arn.clone(),
                    max_receive_count: *max,
                })
            })
            .collect();
        dead_letter_queues.sort_by(|a, b| a.name.cmp(&b.name));
        if infos.is_empty() {
            bail!("no queue is named {prefix}…: is the stack name right?");
        }

        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let mut tables = Vec::new();
        let mut start = None;
        loop {
            let page = dynamodb
                .list_tables()
                .set_exclusive_start_table_name(start)
                .send()
                .await
                .map_err(|e| anyhow!("listing tables: {}", shared::aws::describe_error(&e)))?;
            tables.extend(
                page.table_names()
                    .iter()
                    .filter(|t| t.starts_with(&prefix))
                    .cloned(),
            );
            start = page.last_evaluated_table_name().map(str::to_string);
            if start.is_none() {
                break;
            }
        }
        let buckets = shared::aws::s3(sdk)
            .list_buckets()
            .send()
            .await
            .map_err(|e| anyhow!("listing buckets: {}", shared::aws::describe_error(&e)))?
            .buckets()
            .iter()
            .filter_map(|b| b.name())
            .filter(|b| b.starts_with(&prefix.to_lowercase()))
            .map(str::to_string)
            .collect();
        Ok(Self {
            name: name.to_string(),
            dead_letter_queues,
            buckets,
            tables,
        })
    }

    /// `<stack>-<logical>` or `<stack>-<logical>-<suffix>`: a resource of the stack by its
    /// logical id in the template.
    fn named<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
        logical: &str,
    ) -> Option<&'a String> {
        let exact = format!("{}-{logical}", self.name);
        let suffixed = format!("{exact}-");
        names
            .into_iter()
            .find(|n| **n == exact || n.starts_with(&suffixed))
    }

    pub fn table(&self, logical: &str) -> Result<String> {
        self.named(self.tables.iter(), logical)
            .cloned()
            .with_context(|| format!("the stack has no {logical}"))
    }

    /// A bucket of the stack by its logical id (`AuditBucket`).
    pub fn bucket(&self, logical: &str) -> Result<String> {
        let exact = format!("{}-{logical}", self.name).to_lowercase();
        let suffixed = format!("{exact}-");
        self.buckets
            .iter()
            .find(|b| **b == exact || b.starts_with(&suffixed))
            .cloned()
            .with_context(|| format!("the stack has no {logical}"))
    }

    /// A dead-letter queue by its logical id (`TasksDeadLetterQueue`), its name or its URL.
    pub fn dead_letter_queue(&self, which: &str) -> Result<&DeadLetterQueue> {
        let exact = format!("{}-{which}", self.name);
        self.dead_letter_queues
            .iter()
            .find(|q| {
                q.name == which
                    || q.url == which
                    || q.name == exact
                    || q.name.starts_with(&format!("{exact}-"))
            })
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .dead_letter_queues
                    .iter()
                    .map(|q| q.name.as_str())
                    .collect();
                anyhow!(
                    "no dead-letter queue {which:?} in the stack (it has: {})",
                    known.join(", ")
                )
            })
    }
}
