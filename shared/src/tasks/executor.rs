//! The seam where a task's work runs. The orchestrator
//! (`crate::orchestrator::engine::Orchestrator`) implements it.

use super::model::Task;
use super::result::TaskResult;
use std::future::Future;

/// Why a run did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// Retrying cannot help (a guardrail denied it, a failed predecessor): the task fails now.
    #[error("{0}")]
    Permanent(String),
    /// Might succeed later (a dependency is busy or not ready): the message is retried.
    #[error("{0}")]
    Transient(String),
}

/// What the executor knows besides the task itself.
#[derive(Debug, Clone, Default)]
pub struct ExecutionContext {
    /// The completed task this one continues, if any.
    pub continuation: Option<Task>,
    /// Which delivery this is (1 for the first).
    pub attempt: u32,
}

pub trait TaskExecutor: Send + Sync {
    /// Runs the task. A result with `review` set sends the task to human review.
    fn execute(
        &self,
        task: &Task,
        context: &ExecutionContext,
    ) -> impl Future<Output = Result<TaskResult, ExecutionError>> + Send;

    /// Told when the worker gives up on a task after its last retry.
    fn record_failure(&self, _task: &Task, _reason: &str) -> impl Future<Output = ()> + Send {
        async {}
    }
}
