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

use super::agents::{
    self, AgentBackend, AgentError, AgentReply, AgentRequest, RoutingDecision, ToolCall, ToolResult,
};
use super::events::{TaskEvent, names};
use super::guardrails::{
    Decision, GuardrailDecision, Guardrails, Stage, redact_pii, redact_pii_json, strongest,
};
use super::negotiation::{NegotiationConfig, Proposal, RoundDecision, negotiate};
use super::store::RunStore;
use super::tools::{ToolContext, ToolRegistry};
use crate::dynamo::StoreError;
use crate::tasks::executor::{ExecutionContext, ExecutionError, TaskExecutor};
use crate::tasks::model::{Task, TaskId, TaskResult};
use crate::telemetry::names as metric;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
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

/// The run id of a task: stable, so every delivery of the task records into the same run.
pub fn run_id_for(task_id: TaskId) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6e657572_6166_6f72_6765_72756e730001);
    uuid::Uuid::new_v5(&NAMESPACE, task_id.to_string().as_bytes()).to_string()
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
enum RunError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Stop for good: a guardrail denied the run, or a limit was passed.
    #[error("{0}")]
    Denied(String),
    /// Worth another delivery: the backend failed and no fallback was left.
    #[error("{0}")]
    Retry(String),
}

/// Writes events in order, skipping those a previous delivery already wrote.
struct Recorder<'a> {
    store: &'a RunStore,
    task_id: TaskId,
    run_id: String,
    existing: Vec<TaskEvent>,
    cursor: usize,
    next_sequence: u64,
    /// Memoized agent replies and tool results, by key.
    memos: HashMap<String, Value>,
    decisions: u32,
}

impl<'a> Recorder<'a> {
    async fn load(
        store: &'a RunStore,
        task_id: TaskId,
        run_id: String,
    ) -> Result<Self, StoreError> {
        let existing = store.events_after(task_id, 0, 10_000).await?;
        let memos = store
            .items(&run_id, "memo#", None, 100)
            .await?
            .items
            .into_iter()
            .filter_map(|m| Some((m.get("key")?.as_str()?.to_string(), m.get("value")?.clone())))
            .collect();
        let next_sequence = existing.last().map_or(1, |e| e.sequence + 1);
        Ok(Self {
            store,
            task_id,
            run_id,
            existing,
            cursor: 0,
            next_sequence,
            memos,
            decisions: 0,
        })
    }

    /// Records an event (or finds it already recorded) and returns its sequence number.
    async fn emit(&mut self, event: &str, payload: Value) -> Result<u64, StoreError> {
        if let Some(old) = self.existing.get(self.cursor) {
            if old.event == event && old.payload == payload {
                self.cursor += 1;
                return Ok(old.sequence);
            }
            // The previous delivery ended on a retryable failure: keep it as history and go on after it.
            let rest = &self.existing[self.cursor..];
            let ended_on_retry =
                rest.len() == 1 && rest[0].payload.get("retryable") == Some(&Value::Bool(true));
            if !ended_on_retry {
                tracing::error!(task_id = %self.task_id, expected = %old.event, got = event, "replay diverged from the recorded events");
            }
            self.cursor = self.existing.len();
        }
        let record = TaskEvent::new(
            self.task_id,
            Some(self.run_id.clone()),
            self.next_sequence,
            event,
            payload,
            crate::time::now_millis(),
        );
        self.store.append_event(&record).await?;
        self.next_sequence += 1;
        Ok(record.sequence)
    }

    /// A value an earlier delivery memoized under `key`.
    fn cached<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.memos
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Memoizes `value` under `key`; if another delivery got there first, its value wins.
    async fn remember<T: Serialize + DeserializeOwned>(
        &mut self,
        key: String,
        value: T,
    ) -> Result<T, StoreError> {
        let value = serde_json::to_value(value).map_err(|e| StoreError::Internal(e.to_string()))?;
        let stored = self
            .store
            .put_item_once(
                &self.run_id,
                &format!("memo#{key}"),
                &json!({"key": key, "value": value}),
            )
            .await?;
        let value = stored.get("value").cloned().unwrap_or(value);
        self.memos.insert(key, value.clone());
        serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))
    }

    async fn decision(&mut self, d: &GuardrailDecision) -> Result<(), StoreError> {
        self.decisions += 1;
        let payload = serde_json::to_value(d).unwrap_or_default();
        self.store
            .put_item_once(
                &self.run_id,
                &format!("decision#{:04}", self.decisions),
                &payload,
            )
            .await?;
        metrics::counter!(metric::GUARDRAIL_DECISIONS, "decision" => d.decision.as_str(), "policy_id" => d.policy_id.clone()).increment(1);
        self.emit(names::GUARDRAIL_TRIGGERED, payload)
            .await
            .map(|_| ())
    }
}

/// What a run accumulates as it goes.
#[derive(Default)]
struct RunState {
    tool_calls: usize,
    decisions: Vec<GuardrailDecision>,
}

/// One agent's finished work.
#[derive(Debug, Clone)]
struct AgentOutput {
    agent: &'static str,
    content: String,
    confidence: f64,
}

/// What a run concluded, before it is written to the task.
struct Conclusion {
    outputs: Vec<AgentOutput>,
    review_reasons: Vec<String>,
    plan: Value,
    negotiation: Value,
    decisions: Vec<GuardrailDecision>,
    agents_failed: u32,
    rounds: u32,
    winner: Option<String>,
    tokens: u64,
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl<B: AgentBackend> Orchestrator<B> {
    fn allowed_tools(
        agent: &'static agents::AgentSpec,
        metadata: &Map<String, Value>,
    ) -> Vec<&'static str> {
        match metadata.get("tools").and_then(Value::as_array) {
            Some(only) => agent
                .tools
                .iter()
                .copied()
                .filter(|t| only.iter().any(|o| o == t))
                .collect(),
            None => agent.tools.to_vec(),
        }
    }

    /// Runs one agent through its turns. `Err(AgentError)` if its backend failed for good.
    async fn run_agent(
        &self,
        rec: &mut Recorder<'_>,
        step: usize,
        agent: &'static agents::AgentSpec,
        prompt: &str,
        task: &Task,
        state: &mut RunState,
    ) -> Result<Result<(AgentReply, u32), AgentError>, RunError> {
        let tools = Self::allowed_tools(agent, &task.metadata);
        let mut tool_results: Vec<ToolResult> = Vec::new();
        let mut turn = 0;
        loop {
            turn += 1;
            let request = AgentRequest {
                agent,
                prompt,
                metadata: &task.metadata,
                tools: tools.clone(),
                tool_results: tool_results.clone(),
            };
            let key = format!("agent#{step}#{}#{turn}", agent.id);
            let reply: Result<AgentReply, AgentError> = match rec.cached(&key) {
                Some(memo) => memo,
                None => match self.backend.complete(&request).await {
                    Ok(reply) => Ok(rec.remember(key, reply).await?),
                    // A failure the run routes around (a fallback) is memoized so replays take
                    // the same path; one that ends the delivery is not, so the retry asks again.
                    Err(e) if agent.fallback.is_some() => {
                        rec.remember(key, Err::<AgentReply, _>(e)).await?
                    }
                    Err(e) => Err(e),
                },
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            // Past the turn limit the agent must answer with what it has.
            if reply.tool_calls.is_empty() || turn >= self.limits.max_agent_turns {
                return Ok(Ok((reply, turn)));
            }
            tool_results.clear();
            for (i, call) in reply.tool_calls.iter().enumerate() {
                let result = self
                    .tool_call(rec, step, agent, i, call, &tools, task, state)
                    .await?;
                tool_results.push(result);
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the call's position (step, agent, index) is part of its memo key
    async fn tool_call(
        &self,
        rec: &mut Recorder<'_>,
        step: usize,
        agent: &'static agents::AgentSpec,
        index: usize,
        call: &ToolCall,
        allowed: &[&'static str],
        task: &Task,
        state: &mut RunState,
    ) -> Result<ToolResult, RunError> {
        let policy = self
            .guardrails
            .check_tool_call(agent.id, &call.tool, allowed);
        let (outcome, output) = if policy.decision == Decision::Deny {
            rec.decision(&policy).await?;
            state.decisions.push(policy.clone());
            ("refused".to_string(), json!({"reason": policy.reason}))
        } else if state.tool_calls >= self.limits.max_tool_calls {
            (
                "refused".to_string(),
                json!({"reason": format!("the run's limit of {} tool calls is reached", self.limits.max_tool_calls)}),
            )
        } else {
            state.tool_calls += 1;
            let context = ToolContext {
                prompt: &task.prompt,
                metadata: &task.metadata,
            };
            let key = format!("tool#{step}#{}#{index}", agent.id);
            let result: Result<Value, String> = match rec.cached(&key) {
                Some(memo) => memo,
                None => {
                    let fresh = self
                        .tools
                        .invoke(&call.tool, &call.input, &context)
                        .await
                        .map_err(|e| e.to_string());
                    rec.remember(key, fresh).await?
                }
            };
            match result {
                Ok(v) => ("ok".to_string(), v),
                Err(e) if e.starts_with("refused") => ("refused".to_string(), json!({"reason": e})),
                Err(e) => ("error".to_string(), json!({"reason": e})),
            }
        };
        metrics::counter!(metric::TOOL_USAGE, "agent" => agent.id, "tool" => super::tools::metric_label(&call.tool), "outcome" => outcome.clone()).increment(1);
        rec.emit(
            names::TOOL_INVOKED,
            json!({"agent": agent.id, "step": step, "tool": call.tool, "input": call.input, "outcome": outcome, "output": output}),
        )
        .await?;
        Ok(ToolResult {
            tool: call.tool.clone(),
            outcome,
            output,
        })
    }

    async fn conclude(
        &self,
        rec: &mut Recorder<'_>,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<Conclusion, RunError> {
        let mut state = RunState::default();
        let mut review_reasons = Vec::new();

        // Input.
        let mut prompt = task.prompt.clone();
        for d in self.guardrails.check_text(Stage::Input, &prompt) {
            rec.decision(&d).await?;
            state.decisions.push(d);
        }
        match strongest(&state.decisions) {
            Decision::Deny => {
                return Err(RunError::Denied(format!(
                    "input denied by guardrail: {}",
                    state
                        .decisions
                        .last()
                        .map(|d| d.reason.as_str())
                        .unwrap_or("")
                )));
            }
            Decision::Review | Decision::Escalate => {
                review_reasons.extend(
                    state
                        .decisions
                        .iter()
                        .filter(|d| d.decision >= Decision::Review)
                        .map(|d| format!("{}: {}", d.policy_id, d.reason)),
                );
                return Ok(Conclusion {
                    outputs: vec![],
                    review_reasons,
                    plan: Value::Null,
                    negotiation: Value::Null,
                    decisions: state.decisions,
                    agents_failed: 0,
                    rounds: 0,
                    winner: None,
                    tokens: 0,
                });
            }
            Decision::Redact | Decision::Allow => {}
        }
        // Agents and tools work on the redacted prompt and metadata only: nothing personal
        // reaches a tool result, an output, the event log or an external model.
        prompt = redact_pii(&prompt);
        let task = &Task {
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
                .and_then(|o| o["content"].as_str())
                .unwrap_or("");
            prompt.push_str(&format!(
                "\n\nContext from task {}: {}",
                parent.task_id,
                redact_pii(summary)
            ));
        }

        // Routing and plan.
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
            agents::route(&prompt, requested.as_deref(), self.limits.max_agents);
        let plan: Vec<Value> = routing
            .iter()
            .filter(|d| d.selected)
            .enumerate()
            .filter_map(|(i, d)| {
                let spec = agents::spec(&d.agent)?;
                Some(json!({"step": i + 1, "agent": spec.id, "objective": format!("{} view of the task", spec.capability), "tools": Self::allowed_tools(spec, &task.metadata)}))
            })
            .collect();
        rec.emit(
            names::ROUTING_DECIDED,
            json!({
                "selected": routing.iter().filter(|d| d.selected).map(|d| &d.agent).collect::<Vec<_>>(),
                "decisions": routing,
                "plan": plan,
            }),
        )
        .await?;
        for step in &plan {
            for d in self
                .guardrails
                .check_text(Stage::PlanStep, step["objective"].as_str().unwrap_or(""))
            {
                rec.decision(&d).await?;
                state.decisions.push(d);
            }
        }

        // Agents, with fallbacks.
        let mut outputs: Vec<AgentOutput> = Vec::new();
        let mut agents_failed = 0;
        let mut tokens = 0;
        for (index, step) in plan.iter().enumerate() {
            let step_no = index + 1;
            let mut agent =
                agents::spec(step["agent"].as_str().unwrap_or("")).expect("planned agents exist");
            let mut fallback_for: Option<&str> = None;
            loop {
                rec.emit(names::AGENT_STARTED, json!({"agent": agent.id, "step": step_no, "objective": step["objective"], "fallback_for": fallback_for})).await?;
                match self
                    .run_agent(rec, step_no, agent, &prompt, task, &mut state)
                    .await?
                {
                    Ok((reply, turns)) => {
                        tokens += reply.tokens;
                        let mut content = truncate(&reply.content, self.limits.max_output_bytes);
                        let checks = self.guardrails.check_text(Stage::Output, &content);
                        for mut d in checks {
                            d.subject = Some(agent.id.to_string());
                            rec.decision(&d).await?;
                            match d.decision {
                                Decision::Deny => {
                                    return Err(RunError::Denied(format!(
                                        "output of {} denied by guardrail: {}",
                                        agent.id, d.reason
                                    )));
                                }
                                Decision::Redact => content = redact_pii(&content),
                                Decision::Review | Decision::Escalate => review_reasons
                                    .push(format!("{}: {} ({})", d.policy_id, d.reason, agent.id)),
                                Decision::Allow => {}
                            }
                            state.decisions.push(d);
                        }
                        rec.emit(
                            names::AGENT_COMPLETED,
                            json!({"agent": agent.id, "step": step_no, "content": content, "confidence": reply.confidence, "tokens": reply.tokens, "turns": turns}),
                        )
                        .await?;
                        outputs.push(AgentOutput {
                            agent: agent.id,
                            content,
                            confidence: reply.confidence,
                        });
                        break;
                    }
                    Err(error) => {
                        agents_failed += 1;
                        let next = agent
                            .fallback
                            .and_then(agents::spec)
                            .filter(|f| !plan.iter().any(|s| s["agent"] == f.id));
                        rec.emit(
                            names::AGENT_FAILED,
                            json!({"agent": agent.id, "step": step_no, "reason": error.to_string(), "fallback": next.map(|f| f.id), "retryable": next.is_none()}),
                        )
                        .await?;
                        match next {
                            Some(f) => {
                                fallback_for = Some(agent.id);
                                agent = f;
                            }
                            None => {
                                return Err(RunError::Retry(format!(
                                    "{} failed with no fallback left: {error}",
                                    agent.id
                                )));
                            }
                        }
                    }
                }
            }
        }

        // Negotiation.
        let proposals: Vec<Proposal> = outputs
            .iter()
            .map(|o| Proposal {
                agent: o.agent.into(),
                content: o.content.clone(),
                confidence: o.confidence,
            })
            .collect();
        let snapshots = negotiate(&prompt, &proposals, &self.negotiation);
        for s in &snapshots {
            let snapshot = serde_json::to_value(s).unwrap_or_default();
            rec.store
                .put_item_once(&rec.run_id, &format!("snapshot#{:04}", s.round), &snapshot)
                .await?;
            rec.emit(names::NEGOTIATION_ROUND, snapshot).await?;
        }
        let last = snapshots.last();
        let rounds = snapshots.len() as u32;
        metrics::histogram!(metric::NEGOTIATION_ROUNDS, "strategy" => "critique_vote")
            .record(f64::from(rounds));
        let winner = last.map(|s| s.leader.clone());
        match last.map(|s| s.decision) {
            Some(RoundDecision::Deadlock) => {
                review_reasons.push(format!("negotiation deadlocked after {rounds} rounds"))
            }
            Some(RoundDecision::Escalate) => {
                review_reasons.push("negotiation reached a consensus too weak to accept".into())
            }
            _ => {}
        }
        metrics::histogram!(metric::NEGOTIATION_CONSENSUS, "strategy" => "critique_vote").record(
            if last.is_some_and(|s| s.consensus) {
                1.0
            } else {
                0.0
            },
        );

        if let Some(d) = self.guardrails.check_budget(tokens) {
            rec.decision(&d).await?;
            return Err(RunError::Denied(format!(
                "run denied by guardrail: {}",
                d.reason
            )));
        }
        Ok(Conclusion {
            outputs,
            review_reasons,
            plan: Value::Array(plan),
            // A summary: the snapshots themselves are run items (`snapshot#…`), which keeps
            // the task's result far below DynamoDB's item limit however long the answers.
            negotiation: json!({
                "rounds": rounds,
                "outcome": last.map(|s| s.decision),
                "winner": winner,
                "scores": last.map(|s| &s.scores),
                "supporters": last.map(|s| &s.supporters),
                "dissenters": last.map(|s| &s.dissenters),
            }),
            decisions: state.decisions,
            agents_failed,
            rounds,
            winner,
            tokens,
        })
    }

    async fn run(&self, task: &Task, context: &ExecutionContext) -> Result<TaskResult, RunError> {
        let run_id = run_id_for(task.task_id);
        let mut rec = Recorder::load(&self.store, task.task_id, run_id.clone()).await?;
        let first = rec
            .store
            .put_item_once(&run_id, "run", &json!({"run_id": run_id, "task_id": task.task_id, "status": "running", "started_at": crate::time::now_millis(), "backend": self.backend.name()}))
            .await?;
        let started_at = first["started_at"]
            .as_i64()
            .unwrap_or_else(crate::time::now_millis);
        rec.emit(
            names::TASK_STARTED,
            json!({"entry_point": task.entry_point, "backend": self.backend.name(), "prompt_chars": task.prompt.chars().count(), "continues": task.continuation_task_id}),
        )
        .await?;

        let deadline = self.limits.wall_time;
        let concluded =
            match tokio::time::timeout(deadline, self.conclude(&mut rec, task, context)).await {
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
                rec.emit(names::TASK_FAILED, json!({"reason": reason}))
                    .await?;
                self.write_run(&rec, task, started_at, "failed", json!({"reason": reason}))
                    .await?;
                return Err(RunError::Denied(reason));
            }
            Err(other) => return Err(other),
        };

        let outputs: Vec<Value> = conclusion
            .outputs
            .iter()
            .map(|o| json!({"agent": o.agent, "status": "completed", "content": o.content, "confidence": o.confidence}))
            .collect();
        let summary = conclusion
            .winner
            .as_ref()
            .and_then(|w| conclusion.outputs.iter().find(|o| o.agent == w))
            .map(|o| o.content.clone())
            .unwrap_or_default();
        let review = (!conclusion.review_reasons.is_empty()).then(|| {
            json!({"reasons": conclusion.review_reasons, "decisions": conclusion.decisions, "negotiation": conclusion.negotiation})
        });
        let status = if review.is_some() {
            "awaiting_review"
        } else {
            "completed"
        };
        let mut review = review;
        match &mut review {
            Some(r) => {
                let sequence = rec
                    .emit(
                        names::REVIEW_REQUESTED,
                        json!({"reasons": r["reasons"], "winner": conclusion.winner}),
                    )
                    .await?;
                // Names this review request: the same request replayed opens the same ticket.
                r["event_sequence"] = json!(sequence);
            }
            None => {
                rec.emit(names::TASK_COMPLETED, json!({"winner": conclusion.winner, "summary": summary, "agents": outputs.len(), "tokens": conclusion.tokens})).await?;
            }
        }
        let report = render_report(task, &run_id, &conclusion, status);
        let result = TaskResult {
            executor: format!("orchestrator/{}", self.backend.name()),
            outputs,
            report,
            agents_completed: conclusion.outputs.len() as u32,
            agents_failed: conclusion.agents_failed,
            run_id: Some(run_id.clone()),
            plan: conclusion.plan.clone(),
            negotiation: conclusion.negotiation.clone(),
            guardrails: serde_json::to_value(&conclusion.decisions).unwrap_or_default(),
            guardrail_events: conclusion.decisions.len() as u32,
            negotiation_rounds: conclusion.rounds,
            review,
        };
        self.write_run(
            &rec,
            task,
            started_at,
            status,
            json!({"winner": conclusion.winner, "summary": summary}),
        )
        .await?;
        self.store
            .put_item(&run_id, "dossier", &dossier(task, &result))
            .await?;
        Ok(result)
    }

    async fn write_run(
        &self,
        rec: &Recorder<'_>,
        task: &Task,
        started_at: i64,
        status: &str,
        outcome: Value,
    ) -> Result<(), StoreError> {
        metrics::counter!(metric::ORCHESTRATOR_RUNS, "entry_point" => task.entry_point.clone(), "status" => status.to_string()).increment(1);
        self.store
            .put_item(
                &rec.run_id,
                "run",
                &json!({
                    "run_id": rec.run_id, "task_id": task.task_id, "status": status, "backend": self.backend.name(),
                    "started_at": started_at, "finished_at": crate::time::now_millis(), "outcome": outcome,
                }),
            )
            .await
    }
}

fn render_report(task: &Task, run_id: &str, c: &Conclusion, status: &str) -> String {
    let mut md = format!(
        "# Task {}\n\nRun `{run_id}`: **{status}**.\n\n## Agents\n\n",
        task.task_id
    );
    for o in &c.outputs {
        md.push_str(&format!(
            "- **{}** (confidence {:.2}): {}\n",
            o.agent, o.confidence, o.content
        ));
    }
    md.push_str(&format!(
        "\n## Negotiation\n\n{} round(s); winner: {}.\n",
        c.rounds,
        c.winner.as_deref().unwrap_or("none")
    ));
    if !c.decisions.is_empty() {
        md.push_str("\n## Guardrails\n\n");
        for d in &c.decisions {
            md.push_str(&format!(
                "- `{}` {} at {:?}: {}\n",
                d.policy_id,
                d.decision.as_str(),
                d.stage,
                d.reason
            ));
        }
    }
    if !c.review_reasons.is_empty() {
        md.push_str(&format!(
            "\n## Sent to review\n\n{}\n",
            c.review_reasons
                .iter()
                .map(|r| format!("- {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    md
}

/// The dossier of a finished run, in JSON with its Markdown rendering.
fn dossier(task: &Task, result: &TaskResult) -> Value {
    json!({
        "task_id": task.task_id,
        "run_id": result.run_id,
        "prompt": redact_pii(&task.prompt),
        "plan": result.plan,
        "outputs": result.outputs,
        "negotiation": result.negotiation,
        "guardrails": result.guardrails,
        "review": result.review,
        "markdown": result.report,
    })
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
            if rec
                .existing
                .last()
                .is_some_and(|e| e.event == names::TASK_FAILED)
            {
                return Ok(());
            }
            rec.cursor = rec.existing.len();
            rec.emit(names::TASK_FAILED, json!({"reason": reason}))
                .await
                .map(|_| ())
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not record task_failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_per_task_and_distinct_across_tasks() {
        let a = TaskId::new();
        assert_eq!(run_id_for(a), run_id_for(a));
        assert_ne!(run_id_for(a), run_id_for(TaskId::new()));
        assert!(uuid::Uuid::parse_str(&run_id_for(a)).is_ok());
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("short", 10), "short");
    }
}
