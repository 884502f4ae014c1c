//! The payloads of the events a run records, one struct per event: the
//! compiler holds each event's fields to the contract clients read.
//! (`guardrail_triggered` carries a [`GuardrailDecision`], `negotiation_round`
//! a [`RoundSnapshot`].)

use super::agents::{RoutingDecision, ToolOutcome};
use super::negotiation::RoundSnapshot;
use crate::tasks::EventPayload;
use crate::tasks::{EntryPoint, GuardrailDecision, PlanStep, TaskId, event_names as names};
use serde::Serialize;
use serde_json::Value;

macro_rules! event {
    ($payload:ty, $name:expr) => {
        impl EventPayload for $payload {
            const NAME: &'static str = $name;
        }
    };
}

#[derive(Debug, Serialize)]
pub struct TaskStarted<'a> {
    pub entry_point: EntryPoint,
    pub backend: &'a str,
    pub prompt_chars: usize,
    pub continues: Option<TaskId>,
}
event!(TaskStarted<'_>, names::TASK_STARTED);

#[derive(Debug, Serialize)]
pub struct RoutingDecided<'a> {
    pub selected: Vec<&'a str>,
    pub decisions: &'a [RoutingDecision],
    pub plan: &'a [PlanStep],
}
event!(RoutingDecided<'_>, names::ROUTING_DECIDED);

#[derive(Debug, Serialize)]
pub struct AgentStarted<'a> {
    pub agent: &'a str,
    pub step: usize,
    pub objective: &'a str,
    pub fallback_for: Option<&'a str>,
}
event!(AgentStarted<'_>, names::AGENT_STARTED);

#[derive(Debug, Serialize)]
pub struct AgentCompleted<'a> {
    pub agent: &'a str,
    pub step: usize,
    pub content: &'a str,
    pub confidence: f64,
    pub tokens: u64,
    pub turns: u32,
}
event!(AgentCompleted<'_>, names::AGENT_COMPLETED);

#[derive(Debug, Serialize)]
pub struct AgentFailed<'a> {
    pub agent: &'a str,
    pub step: usize,
    pub reason: String,
    pub fallback: Option<&'a str>,
    /// No fallback is left: the delivery ends and the task is retried.
    pub retryable: bool,
}
event!(AgentFailed<'_>, names::AGENT_FAILED);

#[derive(Debug, Serialize)]
pub struct ToolInvoked<'a> {
    pub agent: &'a str,
    pub step: usize,
    pub tool: &'a str,
    pub input: &'a Value,
    pub outcome: ToolOutcome,
    pub output: &'a Value,
    /// Seconds the call took (v1's `latency`); 0 for in-process tools and refused calls.
    pub latency: f64,
}
event!(ToolInvoked<'_>, names::TOOL_INVOKED);

event!(GuardrailDecision, names::GUARDRAIL_TRIGGERED);
event!(RoundSnapshot, names::NEGOTIATION_ROUND);

#[derive(Debug, Serialize)]
pub struct ReviewRequested<'a> {
    pub reasons: &'a [String],
    pub winner: Option<&'a str>,
}
event!(ReviewRequested<'_>, names::REVIEW_REQUESTED);

#[derive(Debug, Serialize)]
pub struct TaskCompleted<'a> {
    pub winner: Option<&'a str>,
    pub summary: &'a str,
    pub agents: usize,
    pub tokens: u64,
}
event!(TaskCompleted<'_>, names::TASK_COMPLETED);

#[derive(Debug, Serialize)]
pub struct TaskFailed<'a> {
    pub reason: &'a str,
}
event!(TaskFailed<'_>, names::TASK_FAILED);
