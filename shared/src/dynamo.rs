//! DynamoDB plumbing in one place: attribute values in and out of items, the
//! storage error every store reports, and the classification of failed writes.
//!
//! Transaction outcomes:
//! A `TransactWriteItems` that DynamoDB cancels says why per item: a failed
//! condition (`ConditionalCheckFailed`, an answer: someone got there first) or a
//! collision with another transaction in flight (`TransactionConflict`, real
//! DynamoDB only: try again shortly). Callers branch on [`Cancelled`] and send
//! through [`send_transaction`], which retries collisions with jittered back-off
//! and never past the time it is given.

use crate::aws::{describe_error, is_transient};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub type TransactError =
    SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>;
pub type TransactResult = Result<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
    TransactError,
>;

/// An item as the SDK reads and writes it.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

/// A number attribute.
pub fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute of an item, if it is there and a string.
pub fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

/// A number attribute of an item, if it is there and a whole number.
pub fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// An update expression assembled from clauses, never from string surgery: each
/// attribute gets a `#name` and a `:value` placeholder of its own, so any attribute
/// (a reserved word like `status` included) can be set, added to or removed.
#[derive(Debug, Clone, Default)]
pub struct UpdateExpression {
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    names: Vec<(String, String)>,
    values: Vec<(String, AttributeValue)>,
}

impl UpdateExpression {
    pub fn new() -> Self {
        Self::default()
    }

    fn placeholders(&mut self, attribute: &str, value: Option<AttributeValue>) -> (String, String) {
        let slug: String = attribute
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let (name, placeholder) = (format!("#{slug}"), format!(":{slug}"));
        self.names.push((name.clone(), attribute.to_string()));
        if let Some(value) = value {
            self.values.push((placeholder.clone(), value));
        }
        (name, placeholder)
    }

    /// `SET attribute = value`.
    pub fn set(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, placeholder) = self.placeholders(attribute, Some(value));
        self.set.push(format!("{name} = {placeholder}"));
        self
    }

    /// `ADD attribute value` (a number added to, or starting from zero).
    pub fn add(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, placeholder) = self.placeholders(attribute, Some(value));
        self.add.push(format!("{name} {placeholder}"));
        self
    }

    /// `REMOVE attribute`.
    pub fn remove(mut self, attribute: &str) -> Self {
        let (name, _) = self.placeholders(attribute, None);
        self.remove.push(name);
        self
    }

    /// A value the condition expression refers to (`:seen`).
    pub fn condition_value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.push((placeholder.to_string(), value));
        self
    }

    /// The expression text: `SET … ADD … REMOVE …`, each clause only when it has actions.
    pub fn expression(&self) -> String {
        [
            ("SET", &self.set),
            ("ADD", &self.add),
            ("REMOVE", &self.remove),
        ]
        .iter()
        .filter(|(_, actions)| !actions.is_empty())
        .map(|(verb, actions)| format!("{verb} {}", actions.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// A transaction's update with this expression, its names and its values.
    pub fn apply(
        self,
        mut update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        update = update.update_expression(self.expression());
        for (name, attribute) in self.names {
            update = update.expression_attribute_names(name, attribute);
        }
        for (placeholder, value) in self.values {
            update = update.expression_attribute_values(placeholder, value);
        }
        update
    }
}

/// A storage failure, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Transient SDK errors (throttling, timeouts, connection failures) are `Unavailable`.
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let text = describe_error(&err);
        if is_transient(&err) {
            StoreError::Unavailable(text)
        } else {
            StoreError::Internal(text)
        }
    }

    /// A transaction that failed: one that kept colliding with others is `Unavailable`
    /// (retry shortly), like throttling.
    pub fn from_transaction(err: TransactError) -> Self {
        if collided(&err) {
            StoreError::Unavailable("transaction kept colliding with others".into())
        } else {
            Self::from_sdk(err)
        }
    }
}

/// Whether a single-item write failed only because its condition did not hold (an
/// answer: someone got there first), whatever the operation.
pub fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(e) if e.err().code() == Some("ConditionalCheckFailedException"))
}

/// What appending to a log (the event log, an audit chain) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Written,
    /// That entry was already there (a replay, a redelivery): nothing new was written.
    AlreadyRecorded,
}

/// What a conditional write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    Applied,
    /// Its condition did not hold: nothing was written.
    ConditionFailed,
}

/// A conditional write's outcome; any other failure is a [`StoreError`].
pub fn applied<O, E, R>(result: Result<O, SdkError<E, R>>) -> Result<Conditional, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(Conditional::Applied),
        Err(err) if condition_failed(&err) => Ok(Conditional::ConditionFailed),
        Err(err) => Err(StoreError::from_sdk(err)),
    }
}

/// Why DynamoDB cancelled a transaction, item by item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// One code per item, in the order the items were sent (`None` for an item that was fine).
    pub codes: Vec<Option<String>>,
}

impl Cancelled {
    /// The cancellation behind an error, if it is one.
    pub fn of<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Self> {
        match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(Self {
                codes: c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().filter(|c| *c != "None").map(String::from))
                    .collect(),
            }),
            _ => None,
        }
    }

    /// Whether the condition of item `index` failed.
    pub fn condition_failed(&self, index: usize) -> bool {
        self.codes.get(index).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
    }

    /// Whether any item's condition failed: the transaction's answer is "no".
    pub fn any_condition_failed(&self) -> bool {
        self.codes
            .iter()
            .any(|c| c.as_deref() == Some("ConditionalCheckFailed"))
    }

    /// A collision with another transaction and no failed condition: worth a retry.
    pub fn collided(&self) -> bool {
        !self.any_condition_failed()
            && self
                .codes
                .iter()
                .any(|c| c.as_deref() == Some("TransactionConflict"))
    }
}

/// Whether an error is a transaction cancelled only by collisions.
pub fn collided<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    Cancelled::of(err).is_some_and(|c| c.collided())
}

/// How long [`send_transaction`] keeps retrying collisions when not told otherwise.
pub const DEFAULT_COLLISION_BUDGET: Duration = Duration::from_secs(2);

/// Sends a transaction, retrying collisions (`TransactionConflict`) with jittered
/// exponential back-off until `deadline` (a failed condition is an answer: never retried).
pub async fn send_transaction(
    tx: TransactWriteItemsFluentBuilder,
    deadline: Option<Instant>,
) -> TransactResult {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + DEFAULT_COLLISION_BUDGET);
    let mut attempt = 0u32;
    loop {
        match tx.clone().send().await {
            Err(err) if collided(&err) => {
                attempt += 1;
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 32);
                let pause = Duration::from_millis((10u64 << attempt.min(6)) + jitter);
                if Instant::now() + pause >= deadline {
                    return Err(err);
                }
                tracing::debug!(attempt, "transaction collided; retrying");
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_expression_is_its_clauses_with_a_placeholder_per_attribute() {
        let update = UpdateExpression::new()
            .set("status", s("open"))
            .set("closed_at", n(5))
            .add("count_open", n(1))
            .remove("assigned_to")
            .condition_value(":seen", n(3));
        assert_eq!(
            update.expression(),
            "SET #status = :status, #closed_at = :closed_at ADD #count_open :count_open REMOVE #assigned_to"
        );
        assert_eq!(
            UpdateExpression::new().remove("a").expression(),
            "REMOVE #a"
        );
        let built = update
            .apply(aws_sdk_dynamodb::types::Update::builder())
            .table_name("t")
            .set_key(Some(Item::from([("k".to_string(), s("v"))])))
            .build()
            .unwrap();
        let names = built.expression_attribute_names().unwrap();
        assert_eq!(names["#status"], "status");
        assert_eq!(names.len(), 4);
        let values = built.expression_attribute_values().unwrap();
        assert_eq!(values.len(), 4, "{values:?}");
        assert_eq!(values[":seen"], n(3));
    }

    fn cancelled(codes: &[Option<&str>]) -> Cancelled {
        Cancelled {
            codes: codes.iter().map(|c| c.map(String::from)).collect(),
        }
    }

    #[test]
    fn a_failed_condition_is_an_answer_and_a_conflict_alone_is_a_collision() {
        let conflict = cancelled(&[Some("TransactionConflict"), None]);
        assert!(conflict.collided() && !conflict.any_condition_failed());
        let both = cancelled(&[Some("TransactionConflict"), Some("ConditionalCheckFailed")]);
        assert!(!both.collided() && both.condition_failed(1) && !both.condition_failed(0));
        let none = cancelled(&[None, None]);
        assert!(!none.collided() && !none.any_condition_failed());
    }
}
