//! Task events: the v1 envelope (`neuraforge.task-event.v1`) with a per-task
//! sequence number from 1. The event log is append-only and ordered.

use super::model::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA: &str = "neuraforge.task-event.v1";

pub mod names {
    pub const TASK_STARTED: &str = "task_started";
    pub const ROUTING_DECIDED: &str = "routing_decided";
    pub const AGENT_STARTED: &str = "agent_started";
    pub const AGENT_COMPLETED: &str = "agent_completed";
    pub const AGENT_FAILED: &str = "agent_failed";
    pub const TOOL_INVOKED: &str = "tool_invoked";
    pub const GUARDRAIL_TRIGGERED: &str = "guardrail_triggered";
    pub const NEGOTIATION_ROUND: &str = "negotiation_round";
    pub const REVIEW_REQUESTED: &str = "review_requested";
    /// A reviewer resolved or dismissed the task's ticket (after `review_requested`).
    pub const REVIEW_DECIDED: &str = "review_decided";
    pub const TASK_COMPLETED: &str = "task_completed";
    pub const TASK_FAILED: &str = "task_failed";
    /// An operator replayed the task's dead-lettered message: it runs again after this.
    pub const TASK_REOPENED: &str = "task_reopened";
    pub const ALL: &[&str] = &[
        TASK_STARTED,
        ROUTING_DECIDED,
        AGENT_STARTED,
        AGENT_COMPLETED,
        AGENT_FAILED,
        TOOL_INVOKED,
        GUARDRAIL_TRIGGERED,
        NEGOTIATION_ROUND,
        REVIEW_REQUESTED,
        TASK_COMPLETED,
        TASK_FAILED,
        TASK_REOPENED,
    ];
    /// After one of these, a task's stream ends (until a review resumes it, or an operator
    /// reopens it).
    pub const TERMINAL: &[&str] = &[TASK_COMPLETED, TASK_FAILED, REVIEW_REQUESTED];
}

/// A typed event payload: the struct is the contract of its event's `payload`.
pub trait EventPayload: Serialize {
    /// The event's name in the envelope (`agent_started`).
    const NAME: &'static str;

    /// The payload as the log stores it.
    fn to_payload(&self) -> Value {
        // Payloads are plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The payloads of one kind of event (`negotiation_round`, `guardrail_triggered`), in
/// order: the run's snapshots and decisions, kept once, in the event log.
pub fn payloads_of<'a>(events: &'a [TaskEvent], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.event == name)
        .map(|e| &e.payload)
        .collect()
}

/// One event, exactly as clients receive it (the SSE `data` line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskEvent {
    pub version: u32,
    pub schema: String,
    pub event: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sequence: u64,
    pub task_id: TaskId,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
}

impl TaskEvent {
    pub fn new(
        task_id: TaskId,
        run_id: Option<String>,
        sequence: u64,
        event: &str,
        payload: Value,
        at_millis: i64,
    ) -> Self {
        Self {
            version: 1,
            schema: SCHEMA.into(),
            event: event.into(),
            kind: event.into(),
            sequence,
            task_id,
            timestamp: crate::time::rfc3339(at_millis),
            run_id,
            payload,
        }
    }

    /// An event from a typed payload.
    pub fn of<P: EventPayload>(
        task_id: TaskId,
        run_id: Option<String>,
        sequence: u64,
        payload: &P,
        at_millis: i64,
    ) -> Self {
        Self::new(
            task_id,
            run_id,
            sequence,
            P::NAME,
            payload.to_payload(),
            at_millis,
        )
    }

    pub fn is_terminal(&self) -> bool {
        names::TERMINAL.contains(&self.event.as_str())
    }

    /// The agent an event is about, if any (the v1 task document's `events[].agent`).
    pub fn agent(&self) -> Option<&str> {
        self.payload.get("agent").and_then(Value::as_str)
    }

    /// The v1 task document's form: `{sequence, event_type, agent, payload, created_at}`.
    pub fn v1_view(&self) -> V1Event {
        V1Event {
            sequence: self.sequence,
            event_type: self.event.clone(),
            agent: self.agent().map(str::to_string),
            payload: with_v1_keys(&self.event, self.payload.clone()),
            created_at: self.timestamp.clone(),
        }
    }

    /// The event as clients read it: the stored payload with v1's keys added where v1 named
    /// the same thing otherwise (`agent_completed`'s `output.content`, the failures' `error`,
    /// `tool_invoked`'s `status`). Added when read, so the stored event stays one copy.
    pub fn for_clients(mut self) -> Self {
        self.payload = with_v1_keys(&self.event, std::mem::take(&mut self.payload));
        self
    }
}

/// `payload` of an `event` with v1's keys added (see [`TaskEvent::for_clients`]).
fn with_v1_keys(event: &str, mut payload: Value) -> Value {
    let Some(fields) = payload.as_object_mut() else {
        return payload;
    };
    let copy = |from: &str| fields.get(from).cloned();
    let added = match event {
        names::AGENT_COMPLETED => copy("content").map(|content| {
            let output = serde_json::json!({
                "agent": fields.get("agent"),
                "content": content,
                "confidence": fields.get("confidence"),
            });
            ("output", output)
        }),
        names::AGENT_FAILED | names::TASK_FAILED => copy("reason").map(|r| ("error", r)),
        names::TOOL_INVOKED => fields.get("outcome").map(|outcome| {
            let status = if outcome == "ok" { "success" } else { "error" };
            ("status", Value::from(status))
        }),
        _ => None,
    };
    if let Some((key, value)) = added {
        fields.entry(key).or_insert(value);
    }
    payload
}

/// An event as the v1 task document lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct V1Event {
    pub sequence: u64,
    pub event_type: String,
    pub agent: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_read_v1s_keys_beside_the_stored_ones() {
        let id = TaskId::new();
        let event = |name: &str, payload: Value| {
            TaskEvent::new(id, None, 2, name, payload, 0)
                .for_clients()
                .payload
        };
        let completed = event(
            names::AGENT_COMPLETED,
            serde_json::json!({"agent": "finance_agent", "content": "42", "confidence": 0.8}),
        );
        assert_eq!(completed["output"]["content"], "42");
        assert_eq!(completed["output"]["agent"], "finance_agent");
        assert_eq!(completed["content"], "42", "today's keys stay");
        for name in [names::AGENT_FAILED, names::TASK_FAILED] {
            let failed = event(name, serde_json::json!({"reason": "timed out"}));
            assert_eq!(failed["error"], "timed out", "{name}");
            assert_eq!(failed["reason"], "timed out", "{name}");
        }
        for (outcome, status) in [("ok", "success"), ("refused", "error"), ("error", "error")] {
            let tool = event(names::TOOL_INVOKED, serde_json::json!({"outcome": outcome}));
            assert_eq!(tool["status"], status);
        }
        // What an event already carries under a v1 key is not overwritten.
        let own = event(
            names::TASK_FAILED,
            serde_json::json!({"reason": "a", "error": "b"}),
        );
        assert_eq!(own["error"], "b");
    }

    #[test]
    fn the_envelope_matches_the_v1_contract() {
        let id = TaskId::new();
        let e = TaskEvent::new(
            id,
            Some("r1".into()),
            3,
            names::AGENT_STARTED,
            serde_json::json!({"agent": "finance_agent"}),
            0,
        );
        let v = serde_json::to_value(&e).unwrap();
        for key in [
            "version",
            "schema",
            "event",
            "type",
            "sequence",
            "task_id",
            "timestamp",
            "run_id",
            "payload",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["version"], 1);
        assert_eq!(v["schema"], "neuraforge.task-event.v1");
        assert_eq!(v["type"], v["event"]);
        assert_eq!(e.v1_view().agent.as_deref(), Some("finance_agent"));
        let without_run =
            TaskEvent::new(id, None, 1, names::TASK_STARTED, serde_json::json!({}), 0);
        assert!(
            serde_json::to_value(&without_run)
                .unwrap()
                .get("run_id")
                .is_none()
        );
    }
}
