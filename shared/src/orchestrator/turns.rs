//! Agents at work: each planned agent takes turns (a reply, the tool calls it
//! asks for, their results back to it) and hands over to its fallback when its
//! backend fails. Replies and tool results are memoized, so a replay takes the
//! same path.

use super::agents::{
    self, AgentBackend, AgentError, AgentReply, AgentRequest, AgentSpec, ToolCall, ToolOutcome,
    ToolResult,
};
use super::engine::{Answer, Orchestrator, RunError, RunState};
use super::events::{AgentCompleted, AgentFailed, AgentStarted, ToolInvoked};
use super::recorder::Recorder;
use super::tools::{ToolContext, ToolError};
use crate::redact::redact_pii;
use crate::tasks::{Decision, PlanStep, Stage, Task};
use crate::telemetry::names as metric;
use serde_json::{Map, Value, json};

/// What the planned agents produced.
pub(super) struct Work {
    pub answers: Vec<Answer>,
    pub agents_failed: u32,
    pub tokens: u64,
    /// Output guardrails that want a person to look.
    pub review_reasons: Vec<String>,
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…`.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The tools `agent` may call: its catalogue entry, narrowed by `metadata.tools`.
pub(super) fn allowed_tools(agent: &AgentSpec, metadata: &Map<String, Value>) -> Vec<&'static str> {
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

/// How one agent's turns ended.
enum AgentRun {
    Answered {
        reply: AgentReply,
        turns: u32,
    },
    /// Its backend failed for good: the next step is its fallback, or a retry.
    Failed(AgentError),
}

/// Where a call sits in the run: part of its memo key, so a replay finds it.
#[derive(Clone, Copy)]
struct CallSite {
    step: usize,
    agent: &'static AgentSpec,
    index: usize,
}

impl<B: AgentBackend> Orchestrator<B> {
    /// Runs every planned agent, each with its fallbacks, checking each output.
    pub(super) async fn run_plan(
        &self,
        rec: &mut Recorder<'_>,
        plan: &[PlanStep],
        prompt: &str,
        task: &Task,
        state: &mut RunState,
    ) -> Result<Work, RunError> {
        let mut work = Work {
            answers: Vec::new(),
            agents_failed: 0,
            tokens: 0,
            review_reasons: Vec::new(),
        };
        for (index, step) in plan.iter().enumerate() {
            let step_no = index + 1;
            let mut agent = agents::spec(&step.agent).expect("planned agents exist");
            let mut fallback_for: Option<&str> = None;
            loop {
                rec.emit(&AgentStarted {
                    agent: agent.id,
                    step: step_no,
                    objective: &step.objective,
                    fallback_for,
                })
                .await?;
                match self
                    .run_agent(rec, step_no, agent, prompt, task, state)
                    .await?
                {
                    AgentRun::Answered { reply, turns } => {
                        work.tokens += reply.tokens;
                        let answer = self
                            .checked_output(rec, agent, &reply, state, &mut work.review_reasons)
                            .await?;
                        rec.emit(&AgentCompleted {
                            agent: agent.id,
                            step: step_no,
                            content: &answer.content,
                            confidence: reply.confidence,
                            tokens: reply.tokens,
                            turns,
                        })
                        .await?;
                        work.answers.push(answer);
                        break;
                    }
                    AgentRun::Failed(error) => {
                        work.agents_failed += 1;
                        let next = agent
                            .fallback
                            .and_then(agents::spec)
                            .filter(|f| !plan.iter().any(|s| s.agent == f.id));
                        rec.emit(&AgentFailed {
                            agent: agent.id,
                            step: step_no,
                            reason: error.to_string(),
                            fallback: next.map(|f| f.id),
                            retryable: next.is_none(),
                        })
                        .await?;
                        let Some(next) = next else {
                            return Err(RunError::Retry(format!(
                                "{} failed with no fallback left: {error}",
                                agent.id
                            )));
                        };
                        fallback_for = Some(agent.id);
                        agent = next;
                    }
                }
            }
        }
        Ok(work)
    }

    /// An agent's reply, cut to size and passed through the output guardrails:
    /// denied (the run fails), redacted, or noted for review.
    async fn checked_output(
        &self,
        rec: &mut Recorder<'_>,
        agent: &'static AgentSpec,
        reply: &AgentReply,
        state: &mut RunState,
        review_reasons: &mut Vec<String>,
    ) -> Result<Answer, RunError> {
        let mut content = truncate(&reply.content, self.limits.max_output_bytes);
        for mut d in self.guardrails.check_text(Stage::Output, &content) {
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
                Decision::Review | Decision::Escalate => {
                    review_reasons.push(format!("{}: {} ({})", d.policy_id, d.reason, agent.id))
                }
                Decision::Allow => {}
            }
            state.decisions.push(d);
        }
        Ok(Answer {
            agent: agent.id,
            content,
            confidence: reply.confidence,
        })
    }

    /// Runs one agent through its turns.
    async fn run_agent(
        &self,
        rec: &mut Recorder<'_>,
        step: usize,
        agent: &'static AgentSpec,
        prompt: &str,
        task: &Task,
        state: &mut RunState,
    ) -> Result<AgentRun, RunError> {
        let tools = allowed_tools(agent, &task.metadata);
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
            // Readers see the step so far before an agent's turn that takes time (a model
            // over the network); the built-in backend answers at once, so its run's events
            // are written in as few pages as they fit.
            if !self.backend.deterministic() {
                rec.flush().await?;
            }
            let reply: Result<AgentReply, AgentError> = match rec.cached(&key) {
                Some(memo) => memo,
                // A deterministic backend answers a replay alike: nothing to remember.
                None if self.backend.deterministic() => self.backend.complete(&request).await,
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
                Err(e) => return Ok(AgentRun::Failed(e)),
            };
            // Past the turn limit the agent must answer with what it has.
            if reply.tool_calls.is_empty() || turn >= self.limits.max_agent_turns {
                return Ok(AgentRun::Answered { reply, turns: turn });
            }
            tool_results.clear();
            for (index, call) in reply.tool_calls.iter().enumerate() {
                let site = CallSite { step, agent, index };
                tool_results.push(self.tool_call(rec, site, call, &tools, task, state).await?);
            }
        }
    }

    /// One tool call: refused by the allow-list guardrail or the run's call limit,
    /// else run (or its memo reused) and recorded.
    async fn tool_call(
        &self,
        rec: &mut Recorder<'_>,
        site: CallSite,
        call: &ToolCall,
        allowed: &[&'static str],
        task: &Task,
        state: &mut RunState,
    ) -> Result<ToolResult, RunError> {
        let agent = site.agent;
        let policy = self
            .guardrails
            .check_tool_call(agent.id, &call.tool, allowed);
        // The failure's kind, as v1's tool-failure counter labels it (`failure_type`,
        // and whether the tool itself reported it: `canonical`).
        let mut latency_seconds = 0.0;
        let (outcome, output, failure) = if policy.decision == Decision::Deny {
            rec.decision(&policy).await?;
            state.decisions.push(policy.clone());
            let output = json!({"reason": policy.reason});
            (
                ToolOutcome::Refused,
                output,
                Some(("guardrail_denied", false)),
            )
        } else if state.tool_calls >= self.limits.max_tool_calls {
            let reason = format!(
                "the run's limit of {} tool calls is reached",
                self.limits.max_tool_calls
            );
            let output = json!({ "reason": reason });
            (ToolOutcome::Refused, output, Some(("call_limit", false)))
        } else {
            state.tool_calls += 1;
            let context = ToolContext {
                prompt: &task.prompt,
                metadata: &task.metadata,
            };
            let key = format!("tool#{}#{}#{}", site.step, agent.id, site.index);
            // The latency is part of the event, so a replay must record the same one: it is
            // remembered with the result; in-process tools report 0 (v1 did for cached calls).
            let (result, latency) = match rec.cached::<ToolMemo>(&key) {
                Some(memo) => memo.parts(),
                None if super::tools::deterministic(&call.tool) => (
                    self.tools.invoke(&call.tool, &call.input, &context).await,
                    0.0,
                ),
                None => {
                    rec.flush().await?;
                    let started = std::time::Instant::now();
                    let result = self.tools.invoke(&call.tool, &call.input, &context).await;
                    let latency = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
                    let memo = ToolMemo::Timed { result, latency };
                    rec.remember(key, memo).await?.parts()
                }
            };
            latency_seconds = latency;
            match result {
                Ok(v) => (ToolOutcome::Ok, v, None),
                Err(e) => {
                    let outcome = match e {
                        ToolError::Refused(_) => ToolOutcome::Refused,
                        _ => ToolOutcome::Error,
                    };
                    let failure = Some((e.kind(), true));
                    (outcome, json!({"reason": e.to_string()}), failure)
                }
            }
        };
        let tool = super::tools::metric_label(&call.tool);
        metrics::counter!(
            metric::TOOL_USAGE,
            "agent" => agent.id,
            "tool" => tool,
            "outcome" => outcome.as_str()
        )
        .increment(1);
        if let Some((failure_type, canonical)) = failure {
            metrics::counter!(
                metric::TOOL_FAILURES,
                "agent" => agent.id,
                "tool" => tool,
                "failure_type" => failure_type,
                "canonical" => if canonical { "true" } else { "false" }
            )
            .increment(1);
        }
        rec.emit(&ToolInvoked {
            agent: agent.id,
            step: site.step,
            tool: &call.tool,
            input: &call.input,
            outcome,
            output: &output,
            latency: latency_seconds,
        })
        .await?;
        Ok(ToolResult {
            tool: call.tool.clone(),
            outcome,
            output,
        })
    }
}

/// A tool call's remembered result and how long it took (memos written before the latency
/// was kept have the result alone).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum ToolMemo {
    Timed {
        result: Result<Value, ToolError>,
        latency: f64,
    },
    Untimed(Result<Value, ToolError>),
}

impl ToolMemo {
    fn parts(self) -> (Result<Value, ToolError>, f64) {
        match self {
            ToolMemo::Timed { result, latency } => (result, latency),
            ToolMemo::Untimed(result) => (result, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("short", 10), "short");
    }
}
