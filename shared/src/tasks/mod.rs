//! Tasks: submission, status, the event log of their runs, the enqueuer that puts
//! every accepted task on the queue, and the queue worker.
//!
//! Other domains (the orchestrator, reviews) import what is re-exported here,
//! never a submodule's internals; this folder imports no other domain.

pub mod document;
pub mod enqueue;
pub mod events;
pub mod executor;
pub mod history;
pub mod leases;
pub mod ledger;
pub mod model;
pub mod reconcile;
pub mod replay;
pub mod result;
pub mod runs;
pub mod runs_api;
pub mod status;
pub mod store;
pub mod stream;
pub mod submit;
pub mod worker;

pub use events::{EventPayload, TaskEvent, names as event_names, payloads_of};
pub use executor::{ExecutionContext, ExecutionError, TaskExecutor};
pub use model::{EntryPoint, Task, TaskId, TaskMessage, TaskStatus};
pub use result::{
    AgentOutput, Decision, GuardrailDecision, NEGOTIATION_REASON, NegotiationSummary, PlanStep,
    ReviewRequest, RoundDecision, Stage, TaskResult, TicketId,
};
pub use runs::{Read, RunStore, RunTables, run_id_for};
pub use runs_api::run_with_ending;
pub use status::{
    MAX_EVENTS_IN_VIEW, TASK_NOT_FOUND, TaskView, task_id_param, task_view, task_view_for,
};
pub use store::{TaskStore, TaskTables};
pub use submit::MetadataChoices;
pub use worker::ReviewDesk;
