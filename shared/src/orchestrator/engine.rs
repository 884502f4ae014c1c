//! The run engine: one task, run as a team of agents.
//!
//! input guardrails → routing → for each planned agent (with fallbacks): turns
//! of agent replies and guarded tool calls → output guardrails → negotiation
//! rounds → budget → completed, sent to review, or failed.
//!
//! Every step is recorded as a task event. A run may be replayed (a redelivered
//! message, a crash between two writes): agent replies and tool results are
//! memoized in the runs table, so the replay computes the same steps, and the
//! recorder finds the events already written instead of writing them again.
//! A replay therefore ends in the same recorded state as a run that never crashed.
//!
//! This file holds the orchestrator and what a run carries; `steps` runs it,
//! `turns` puts the agents to work, `recorder` writes it down, `report` sums it up.

use super::agents::AgentBackend;
use super::events::TaskFailed;
use super::guardrails::Guardrails;
use super::negotiation::NegotiationConfig;
use super::recorder::Recorder;
use super::tools::ToolRegistry;
use crate::dynamo::StoreError;
use crate::tasks::{
    ExecutionContext, ExecutionError, GuardrailDecision, NegotiationSummary, PlanStep, RunStore,
    Task, TaskExecutor, TaskResult, run_id_for,
};
use std::time::Duration;

/// Bounds on one run.
#[derive(Debug, Clone)]
pub struct RunLimits {
    pub max_agents: usize,
    pub max_tool_calls: usize,
    /// Turns one agent may take (tool requests and replies): the planner's recursion limit.
    pub max_agent_turns: u32,
    /// Wall time from the task's first start.
    pub wall_time: Duration,
    /// Longest agent output kept, in bytes.
    pub max_output_bytes: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            max_agents: 3,
            max_tool_calls: 12,
            max_agent_turns: 3,
            wall_time: Duration::from_secs(45),
            max_output_bytes: 8 * 1024,
        }
    }
}

pub struct Orchestrator<B> {
    pub store: RunStore,
    pub backend: B,
    pub tools: ToolRegistry,
    pub guardrails: Guardrails,
    pub negotiation: NegotiationConfig,
    pub limits: RunLimits,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Stop for good: a guardrail denied the run, or a limit was passed.
    #[error("{0}")]
    Denied(String),
    /// Worth another delivery: the backend failed and no fallback was left.
    #[error("{0}")]
    Retry(String),
}

/// What a run accumulates as it goes.
#[derive(Default)]
pub(super) struct RunState {
    pub tool_calls: usize,
    pub decisions: Vec<GuardrailDecision>,
}

/// One agent's finished work.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub agent: &'static str,
    pub content: String,
    pub confidence: f64,
}

/// What a run concluded, before it is written to the task.
pub(super) struct Conclusion {
    pub answers: Vec<Answer>,
    pub review_reasons: Vec<String>,
    pub plan: Option<Vec<PlanStep>>,
    pub negotiation: Option<NegotiationSummary>,
    pub decisions: Vec<GuardrailDecision>,
    pub agents_failed: u32,
    pub rounds: u32,
    pub winner: Option<String>,
    pub tokens: u64,
}

impl Conclusion {
    /// A run stopped at its input for review: nothing planned, nothing run.
    pub fn input_review(review_reasons: Vec<String>, decisions: Vec<GuardrailDecision>) -> Self {
        Self {
            answers: vec![],
            review_reasons,
            plan: None,
            negotiation: None,
            decisions,
            agents_failed: 0,
            rounds: 0,
            winner: None,
            tokens: 0,
        }
    }

    /// The winner's answer, which the run's record and `task_completed` summarize.
    pub fn summary(&self) -> &str {
        self.winner
            .as_deref()
            .and_then(|w| self.answers.iter().find(|a| a.agent == w))
            .map_or("", |a| a.content.as_str())
    }
}

impl<B: AgentBackend> TaskExecutor for Orchestrator<B> {
    async fn execute(
        &self,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<TaskResult, ExecutionError> {
        match self.run(task, context).await {
            Ok(result) => Ok(result),
            Err(RunError::Denied(reason)) => Err(ExecutionError::Permanent(reason)),
            Err(RunError::Retry(reason)) => Err(ExecutionError::Transient(reason)),
            Err(RunError::Store(e)) => Err(ExecutionError::Transient(format!("run store: {e}"))),
        }
    }

    async fn record_failure(&self, task: &Task, reason: &str) {
        let run_id = run_id_for(task.task_id);
        let recorded = async {
            let mut rec = Recorder::load(&self.store, task.task_id, run_id.clone()).await?;
            // The run may already have recorded its own failure (a guardrail denial).
            if rec.ended_failed() {
                return Ok(());
            }
            rec.append_only();
            rec.emit(&TaskFailed { reason }).await?;
            rec.flush().await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not record task_failed");
        }
    }
}
