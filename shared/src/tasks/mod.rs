//! Tasks: submission, status, the queue worker and the outbox that guarantees
//! every accepted task is enqueued.

pub mod executor;
pub mod model;
pub mod outbox;
pub mod reconcile;
pub mod status;
pub mod store;
pub mod submit;
pub mod worker;

pub use model::{Task, TaskId, TaskMessage, TaskResult, TaskStatus};
pub use store::TaskStore;
