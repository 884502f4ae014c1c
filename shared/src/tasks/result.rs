//! What a run produced, as the task records it: outputs, plan, negotiation,
//! guardrail decisions and, when a person must decide, the review request.
//! The orchestrator fills these; the task view, the reviews and the dossier read
//! them; the types carry the contract between them.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What the executor produced for a finished task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Which executor ran the task (`orchestrator/<backend>`).
    pub executor: String,
    /// One entry per agent output, in the v1 `outputs[]` shape.
    pub outputs: Vec<AgentOutput>,
    /// A Markdown report of the run, as results written before reports were built on
    /// read stored it; new results leave it empty ([`TaskResult::markdown`] builds it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub report: String,
    pub agents_completed: u32,
    pub agents_failed: u32,
    /// The orchestrator run that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `null` when the run stopped before planning (its input went to review).
    #[serde(default)]
    pub plan: Option<Vec<PlanStep>>,
    /// `null` when no negotiation took place.
    #[serde(default)]
    pub negotiation: Option<NegotiationSummary>,
    /// The guardrail decisions other than `allow`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub guardrails: Vec<GuardrailDecision>,
    #[serde(default)]
    pub guardrail_events: u32,
    #[serde(default)]
    pub negotiation_rounds: u32,
    /// Set when the run must wait for a person: the task becomes `awaiting_review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRequest>,
}

impl TaskResult {
    /// The run's report in Markdown (agents, negotiation, guardrails, why it went to
    /// review), built from the result rather than stored beside it.
    pub fn markdown(&self, task_id: impl std::fmt::Display) -> String {
        if !self.report.is_empty() {
            return self.report.clone();
        }
        let status = if self.review.is_some() {
            "awaiting_review"
        } else {
            "completed"
        };
        let run_id = self.run_id.as_deref().unwrap_or_default();
        let mut md = format!("# Task {task_id}\n\nRun `{run_id}`: **{status}**.\n\n## Agents\n\n");
        for o in &self.outputs {
            md.push_str(&format!(
                "- **{}** (confidence {:.2}): {}\n",
                o.agent, o.confidence, o.content
            ));
        }
        let winner = self.negotiation.as_ref().and_then(|n| n.winner.as_deref());
        md.push_str(&format!(
            "\n## Negotiation\n\n{} round(s); winner: {}.\n",
            self.negotiation_rounds,
            winner.unwrap_or("none")
        ));
        if !self.guardrails.is_empty() {
            md.push_str("\n## Guardrails\n\n");
            for d in &self.guardrails {
                md.push_str(&format!(
                    "- `{}` {} at {:?}: {}\n",
                    d.policy_id,
                    d.decision.as_str(),
                    d.stage,
                    d.reason
                ));
            }
        }
        if let Some(review) = &self.review {
            let reasons: Vec<String> = review.reasons.iter().map(|r| format!("- {r}")).collect();
            md.push_str(&format!("\n## Sent to review\n\n{}\n", reasons.join("\n")));
        }
        md
    }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One agent's output (v1 `outputs[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentOutput {
    pub agent: String,
    pub status: String,
    pub content: String,
    pub confidence: f64,
}

/// One step of a run's plan (v1 `plan[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanStep {
    pub step: u32,
    pub agent: String,
    pub objective: String,
    pub tools: Vec<String>,
}

/// How a negotiation round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoundDecision {
    Continue,
    Consensus,
    Deadlock,
    Escalate,
}

/// How the run's negotiation ended. A summary: the snapshots themselves are run
/// items (`snapshot#…`), which keeps the task's result far below DynamoDB's item
/// limit however long the answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NegotiationSummary {
    pub rounds: u32,
    pub outcome: Option<RoundDecision>,
    pub winner: Option<String>,
    pub scores: Option<BTreeMap<String, f64>>,
    pub supporters: Option<Vec<String>>,
    pub dissenters: Option<Vec<String>>,
}

/// What a policy decided, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    /// Continue with the offending text replaced.
    Redact,
    /// A person should look at it; the run pauses for review.
    Review,
    /// Like review, and urgent.
    Escalate,
    /// Stop: the task fails (or, for a tool call, the call is refused).
    Deny,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Redact => "redact",
            Decision::Review => "review",
            Decision::Escalate => "escalate",
            Decision::Deny => "deny",
        }
    }
}

/// Where in the run a policy looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Input,
    PlanStep,
    ToolCall,
    Output,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuardrailDecision {
    pub policy_id: String,
    pub stage: Stage,
    pub decision: Decision,
    pub reason: String,
    pub risk_score: f64,
    /// The agent or tool the decision is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A run's request for a person's decision: why, and what raised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRequest {
    pub reasons: Vec<String>,
    /// The guardrail decisions of the run (those at `review` or above raised it).
    pub decisions: Vec<GuardrailDecision>,
    pub negotiation: Option<NegotiationSummary>,
    /// The sequence of the `review_requested` event. It names the request: the same
    /// request replayed opens the same ticket.
    pub event_sequence: u64,
    /// The ticket the request opened, once the worker has opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
}

impl ReviewRequest {
    /// Where the request came from: `guardrail:<policy>` for each decision at
    /// `review` or above, and `negotiation` when the negotiation could not decide.
    pub fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .decisions
            .iter()
            .filter(|d| matches!(d.decision, Decision::Review | Decision::Escalate))
            .map(|d| format!("guardrail:{}", d.policy_id))
            .collect();
        if self
            .reasons
            .iter()
            .any(|r| r.starts_with(NEGOTIATION_REASON))
        {
            sources.push("negotiation".into());
        }
        sources.dedup();
        sources
    }
}

/// How every review reason raised by the negotiation begins.
pub const NEGOTIATION_REASON: &str = "negotiation";

/// A review ticket's id: a UUID, derived from the task and its review request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TicketId(String);

impl TicketId {
    /// A ticket id as derived by the reviews domain or read from a path or the store.
    /// Ticket ids are not probed by shape: an unknown id is simply not found.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A ticket id reads as the string it is (store keys, paths, comparisons).
impl std::ops::Deref for TicketId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
