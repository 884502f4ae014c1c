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

/// A conditional write's outcome: `true` if it was applied, `false` if its condition
/// did not hold.
pub fn applied<O, E, R>(result: Result<O, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if condition_failed(&err) => Ok(false),
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
