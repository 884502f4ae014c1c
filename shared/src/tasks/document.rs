//! The blocks of the task document that v1 shaped as objects: `plan`, `guardrails`,
//! `report` and `dossier`. Built when read from the task's result; this service's own
//! content stays inside them (each plan step keeps `step`, `objective`, `tools`; the report
//! keeps its Markdown).

use super::model::{TaskId, TaskStatus};
use super::result::{AgentOutput, Decision, GuardrailDecision, PlanStep, TaskResult};
use serde::Serialize;

/// How long a headline (the report's, a recent task's summary) may be, in characters.
const HEADLINE_CHARS: usize = 200;

/// v1's `plan`: the steps, and how the guardrails left the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanView {
    /// `ready`, `requires_review` (a policy or the negotiation asked for a person) or
    /// `blocked` (a policy denied).
    pub status: &'static str,
    pub steps: Vec<PlanStepView>,
}

/// One plan step: this service's fields, and v1's names for them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanStepView {
    #[serde(flatten)]
    pub step: PlanStep,
    /// v1's `step_id`: `step-<n>`.
    pub step_id: String,
    /// v1's `description`: the step's objective.
    pub description: String,
}

/// v1's `guardrails` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuardrailsView {
    /// Every decision other than `allow`, in the order they were made.
    pub decisions: Vec<GuardrailDecision>,
}

/// v1's `report`: a headline, each agent's view and the plan as suggested actions; plus
/// this service's Markdown report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportView {
    /// The winning answer's first line (at most 200 characters).
    pub headline: Option<String>,
    pub agent_perspectives: Vec<Perspective>,
    pub suggested_actions: Vec<SuggestedAction>,
    pub plan_status: Option<&'static str>,
    /// The whole report in Markdown.
    pub markdown: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Perspective {
    pub agent: String,
    pub summary: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuggestedAction {
    pub step_id: String,
    pub description: String,
    pub agent: String,
}

/// v1's `dossier`: the review dossier's summary, and where the whole one is (it is read
/// from the run's snapshots, decisions and ticket, which a status read does not load).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DossierRef {
    pub json: DossierSummary,
    /// `GET` these for the whole dossier (reviewers and admins).
    pub json_url: String,
    pub markdown_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DossierSummary {
    pub agent_perspectives: Vec<Perspective>,
    /// How the negotiation settled the answers (v1's meta-agent resolution).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub meta_resolution: Option<serde_json::Value>,
}

fn step_id(step: &PlanStep) -> String {
    format!("step-{}", step.step)
}

/// The plan's status from what the guardrails and the run decided.
fn plan_status(result: &TaskResult, status: TaskStatus) -> &'static str {
    if result
        .guardrails
        .iter()
        .any(|d| d.decision == Decision::Deny)
    {
        "blocked"
    } else if result.review.is_some() || status == TaskStatus::AwaitingReview {
        "requires_review"
    } else {
        "ready"
    }
}

pub fn plan(result: &TaskResult, status: TaskStatus) -> Option<PlanView> {
    let steps = result.plan.as_ref()?;
    Some(PlanView {
        status: plan_status(result, status),
        steps: steps
            .iter()
            .map(|s| PlanStepView {
                step_id: step_id(s),
                description: s.objective.clone(),
                step: s.clone(),
            })
            .collect(),
    })
}

pub fn guardrails(result: Option<&TaskResult>) -> GuardrailsView {
    GuardrailsView {
        decisions: result.map(|r| r.guardrails.clone()).unwrap_or_default(),
    }
}

fn perspectives(outputs: &[AgentOutput]) -> Vec<Perspective> {
    outputs
        .iter()
        .map(|o| Perspective {
            agent: o.agent.clone(),
            summary: o.content.clone(),
            confidence: o.confidence,
        })
        .collect()
}

/// The answer a run stands by: the negotiation's winner, else the latest output.
pub fn winning_output(result: &TaskResult) -> Option<&AgentOutput> {
    let winner = result
        .negotiation
        .as_ref()
        .and_then(|n| n.winner.as_deref());
    result
        .outputs
        .iter()
        .find(|o| Some(o.agent.as_str()) == winner)
        .or(result.outputs.last())
}

/// A text's first non-blank line, at most [`HEADLINE_CHARS`] characters; `None` if all blank.
pub fn headline(text: &str) -> Option<String> {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|line| line.trim().chars().take(HEADLINE_CHARS).collect())
}

pub fn report(result: &TaskResult, task_id: TaskId, status: TaskStatus) -> ReportView {
    let headline = winning_output(result).and_then(|o| headline(&o.content));
    ReportView {
        headline,
        agent_perspectives: perspectives(&result.outputs),
        suggested_actions: result
            .plan
            .iter()
            .flatten()
            .map(|s| SuggestedAction {
                step_id: step_id(s),
                description: s.objective.clone(),
                agent: s.agent.clone(),
            })
            .collect(),
        plan_status: result.plan.as_ref().map(|_| plan_status(result, status)),
        markdown: result.markdown(task_id),
    }
}

pub fn dossier(result: &TaskResult, task_id: TaskId) -> DossierRef {
    let url = |route: &crate::routes::Route| route.path.replace("{task_id}", &task_id.to_string());
    DossierRef {
        json: DossierSummary {
            agent_perspectives: perspectives(&result.outputs),
            meta_resolution: result
                .negotiation
                .as_ref()
                .and_then(|n| serde_json::to_value(n).ok()),
        },
        json_url: url(&crate::routes::DOSSIER_JSON),
        markdown_url: url(&crate::routes::DOSSIER_MARKDOWN),
    }
}
