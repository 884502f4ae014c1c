//! The steps of a run, in order: input guardrails, plan, the agents' work,
//! negotiation, budget; then how it ended, recorded and written to the run.

use super::agents::{self, AgentBackend, RoutingDecision};
use super::engine::{Answer, Conclusion, Orchestrator, RunError, RunState};
use super::events::{ReviewRequested, RoutingDecided, TaskCompleted, TaskFailed, TaskStarted};
use super::guardrails::strongest;
use super::negotiation::{
    Proposal, RoundDecision, RoundSnapshot, dispute_severity, handed_to_person, negotiate,
};
use super::recorder::Recorder;
use super::turns::{Work, allowed_tools};
use crate::redact::{redact_pii, redact_pii_json};
use crate::tasks::{
    AgentOutput, Decision, ExecutionContext, NEGOTIATION_REASON, NegotiationSummary, PlanStep,
    ReviewRequest, Stage, Task, TaskResult, run_id_for,
};
use crate::telemetry::names as metric;
use serde_json::{Map, Value, json};

/// How the negotiation among the agents' answers ended.
struct Negotiated {
    summary: NegotiationSummary,
    winner: Option<String>,
}

/// The negotiation's metrics: ours, and v1's meta-agent series (disputes and overrides, see
/// [`dispute_severity`]). What shares the `strategy` label goes in one EMF document.
fn count_negotiation(snapshots: &[RoundSnapshot], took: std::time::Duration) {
    const STRATEGY: &str = "critique_vote";
    metrics::histogram!(metric::NEGOTIATION_ROUNDS, "strategy" => STRATEGY)
        .record(snapshots.len() as f64);
    metrics::histogram!(metric::NEGOTIATION_DURATION, "strategy" => STRATEGY)
        .record(took.as_secs_f64());
    let Some(last) = snapshots.last() else {
        return;
    };
    let reached = if last.consensus { 1.0 } else { 0.0 };
    metrics::histogram!(metric::NEGOTIATION_CONSENSUS_REACHED, "strategy" => STRATEGY)
        .record(reached);
    metrics::histogram!(metric::NEGOTIATION_CONSENSUS, "strategy" => STRATEGY)
        .record(last.consensus_score());
    if let Some(severity) = dispute_severity(snapshots) {
        metrics::counter!(metric::META_AGENT_DISPUTES, "severity" => severity).increment(1);
    }
    if handed_to_person(snapshots) {
        metrics::counter!(metric::META_AGENT_OVERRIDES, "action" => "review").increment(1);
    }
}

/// How a run's input passed its guardrails.
enum InputCheck {
    Passed,
    /// A policy wants a person to look before anything runs.
    Review(Vec<String>),
}

impl<B: AgentBackend> Orchestrator<B> {
    /// Input guardrails: a denial ends the run; a review stops it before planning.
    async fn check_input(
        &self,
        rec: &mut Recorder<'_>,
        prompt: &str,
        state: &mut RunState,
    ) -> Result<InputCheck, RunError> {
        for d in self.guardrails.check_text(Stage::Input, prompt) {
            rec.decision(&d).await?;
            state.decisions.push(d);
        }
        match strongest(&state.decisions) {
            Decision::Deny => Err(RunError::Denied(format!(
                "input denied by guardrail: {}",
                state
                    .decisions
                    .last()
                    .map(|d| d.reason.as_str())
                    .unwrap_or("")
            ))),
            Decision::Review | Decision::Escalate => Ok(InputCheck::Review(
                state
                    .decisions
                    .iter()
                    .filter(|d| d.decision >= Decision::Review)
                    .map(|d| format!("{}: {}", d.policy_id, d.reason))
                    .collect(),
            )),
            Decision::Redact | Decision::Allow => Ok(InputCheck::Passed),
        }
    }

    /// Routing and plan: which agents work on the task, and each one's objective.
    async fn plan(
        &self,
        rec: &mut Recorder<'_>,
        prompt: &str,
        task: &Task,
        state: &mut RunState,
    ) -> Result<Vec<PlanStep>, RunError> {
        let requested: Option<Vec<String>> = task
            .metadata
            .get("agents")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            });
        let routing: Vec<RoutingDecision> =
            agents::route(prompt, requested.as_deref(), self.limits.max_agents);
        let plan: Vec<PlanStep> = routing
            .iter()
            .filter(|d| d.selected)
            .enumerate()
            .filter_map(|(i, d)| {
                let spec = agents::spec(&d.agent)?;
                Some(PlanStep {
                    step: i as u32 + 1,
                    agent: spec.id.to_string(),
                    objective: format!("{} view of the task", spec.capability),
                    tools: allowed_tools(spec, &task.metadata)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                })
            })
            .collect();
        rec.emit(&RoutingDecided {
            selected: routing
                .iter()
                .filter(|d| d.selected)
                .map(|d| d.agent.as_str())
                .collect(),
            decisions: &routing,
            plan: &plan,
        })
        .await?;
        for step in &plan {
            for d in self.guardrails.check_text(Stage::PlanStep, &step.objective) {
                rec.decision(&d).await?;
                state.decisions.push(d);
            }
        }
        Ok(plan)
    }

    /// Negotiation rounds among the answers; a deadlock or a weak consensus goes to review.
    async fn negotiate(
        &self,
        rec: &mut Recorder<'_>,
        prompt: &str,
        answers: &[Answer],
        review_reasons: &mut Vec<String>,
    ) -> Result<Negotiated, RunError> {
        let proposals: Vec<Proposal> = answers
            .iter()
            .map(|a| Proposal {
                agent: a.agent.into(),
                content: a.content.clone(),
                confidence: a.confidence,
            })
            .collect();
        let started = std::time::Instant::now();
        let snapshots = negotiate(prompt, &proposals, &self.negotiation);
        let took = started.elapsed();
        // Each snapshot is kept once: as its `negotiation_round` event.
        for s in &snapshots {
            rec.emit(s).await?;
        }
        let last = snapshots.last();
        let rounds = snapshots.len() as u32;
        count_negotiation(&snapshots, took);
        match last.map(|s| s.decision) {
            Some(RoundDecision::Deadlock) => review_reasons.push(format!(
                "{NEGOTIATION_REASON} deadlocked after {rounds} rounds"
            )),
            Some(RoundDecision::Escalate) => review_reasons.push(format!(
                "{NEGOTIATION_REASON} reached a consensus too weak to accept"
            )),
            _ => {}
        }
        let winner = last.map(|s| s.leader.clone());
        Ok(Negotiated {
            summary: NegotiationSummary {
                rounds,
                outcome: last.map(|s| s.decision),
                winner: winner.clone(),
                scores: last.map(|s| s.scores.clone()),
                supporters: last.map(|s| s.supporters.clone()),
                dissenters: last.map(|s| s.dissenters.clone()),
            },
            winner,
        })
    }

    /// The whole run short of writing its result: every step recorded as it happens.
    async fn conclude(
        &self,
        rec: &mut Recorder<'_>,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<Conclusion, RunError> {
        let mut state = RunState::default();
        if let InputCheck::Review(reasons) = self.check_input(rec, &task.prompt, &mut state).await?
        {
            return Ok(Conclusion::input_review(reasons, state.decisions));
        }
        let (task, prompt) = redacted_for_agents(task, context);
        let plan = self.plan(rec, &prompt, &task, &mut state).await?;
        let Work {
            answers,
            agents_failed,
            tokens,
            mut review_reasons,
        } = self
            .run_plan(rec, &plan, &prompt, &task, &mut state)
            .await?;
        let negotiated = self
            .negotiate(rec, &prompt, &answers, &mut review_reasons)
            .await?;
        if let Some(d) = self.guardrails.check_budget(tokens) {
            rec.decision(&d).await?;
            return Err(RunError::Denied(format!(
                "run denied by guardrail: {}",
                d.reason
            )));
        }
        Ok(Conclusion {
            answers,
            review_reasons,
            plan: Some(plan),
            rounds: negotiated.summary.rounds,
            negotiation: Some(negotiated.summary),
            decisions: state.decisions,
            agents_failed,
            winner: negotiated.winner,
            tokens,
        })
    }

    pub(super) async fn run(
        &self,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<TaskResult, RunError> {
        let run_id = run_id_for(task.task_id);
        let mut rec = Recorder::load(&self.store, task.task_id, run_id.clone()).await?;
        let outcome = self.run_recorded(&mut rec, task, context).await;
        // However the run ended, its events are written before the delivery does.
        rec.flush().await?;
        outcome
    }

    async fn run_recorded(
        &self,
        rec: &mut Recorder<'_>,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<TaskResult, RunError> {
        // The run item: which task the run id names, when the run first started, and on
        // which backend (written once; how the run ended is the task's and its events').
        let run_id = rec.run_id.clone();
        rec.store
            .put_item_once(
                &run_id,
                "run",
                &json!({
                    "run_id": run_id, "task_id": task.task_id, "status": "running",
                    "started_at": crate::time::now_millis(), "backend": self.backend.name(),
                }),
            )
            .await?;
        rec.emit(&TaskStarted {
            entry_point: task.entry_point,
            backend: self.backend.name(),
            prompt_chars: task.prompt.chars().count(),
            continues: task.continuation_task_id,
        })
        .await?;

        let deadline = self.limits.wall_time;
        let concluded =
            match tokio::time::timeout(deadline, self.conclude(rec, task, context)).await {
                Ok(result) => result,
                // A slow backend is not the task's fault: the next delivery replays what was
                // recorded and carries on; the queue's receive limit bounds the retries.
                Err(_) => Err(RunError::Retry(format!(
                    "run exceeded its wall time of {} s",
                    deadline.as_secs()
                ))),
            };
        let conclusion = match concluded {
            Ok(c) => c,
            Err(RunError::Denied(reason)) => {
                rec.emit(&TaskFailed { reason: &reason }).await?;
                return Err(RunError::Denied(reason));
            }
            Err(other) => return Err(other),
        };
        self.record_conclusion(rec, &conclusion).await
    }

    /// Records how the run ended (`review_requested` or `task_completed`) and builds its result.
    async fn record_conclusion(
        &self,
        rec: &mut Recorder<'_>,
        conclusion: &Conclusion,
    ) -> Result<TaskResult, RunError> {
        let review = if conclusion.review_reasons.is_empty() {
            rec.emit(&TaskCompleted {
                winner: conclusion.winner.as_deref(),
                summary: conclusion.summary(),
                agents: conclusion.answers.len(),
                tokens: conclusion.tokens,
            })
            .await?;
            None
        } else {
            let event_sequence = rec
                .emit(&ReviewRequested {
                    reasons: &conclusion.review_reasons,
                    winner: conclusion.winner.as_deref(),
                })
                .await?;
            Some(ReviewRequest {
                reasons: conclusion.review_reasons.clone(),
                decisions: conclusion.decisions.clone(),
                negotiation: conclusion.negotiation.clone(),
                event_sequence,
                ticket_id: None,
            })
        };
        Ok(TaskResult {
            executor: format!("orchestrator/{}", self.backend.name()),
            outputs: conclusion
                .answers
                .iter()
                .map(|a| AgentOutput {
                    agent: a.agent.to_string(),
                    status: "completed".into(),
                    content: a.content.clone(),
                    confidence: a.confidence,
                })
                .collect(),
            // Built when read (`TaskResult::markdown`), not stored beside what it repeats.
            report: String::new(),
            agents_completed: conclusion.answers.len() as u32,
            agents_failed: conclusion.agents_failed,
            run_id: Some(rec.run_id.clone()),
            plan: conclusion.plan.clone(),
            negotiation: conclusion.negotiation.clone(),
            guardrails: conclusion.decisions.clone(),
            guardrail_events: conclusion.decisions.len() as u32,
            negotiation_rounds: conclusion.rounds,
            review,
        })
    }
}

/// What agents and tools work on: the prompt and metadata with personal data
/// redacted (nothing personal reaches a tool result, an output, the event log or
/// an external model), and the prompt followed by the continued task's answer.
fn redacted_for_agents(task: &Task, context: &ExecutionContext) -> (Task, String) {
    let mut prompt = redact_pii(&task.prompt);
    let task = Task {
        prompt: prompt.clone(),
        metadata: match redact_pii_json(&Value::Object(task.metadata.clone())) {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        ..task.clone()
    };
    if let Some(parent) = &context.continuation {
        let summary = parent
            .result
            .as_ref()
            .and_then(|r| r.outputs.first())
            .map_or("", |o| o.content.as_str());
        prompt.push_str(&format!(
            "\n\nContext from task {}: {}",
            parent.task_id,
            redact_pii(summary)
        ));
    }
    (task, prompt)
}
