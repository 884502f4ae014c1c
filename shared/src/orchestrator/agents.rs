//! The agents: a catalogue with capabilities, tools and fallbacks, the routing
//! step that picks agents for a task (recording why each was chosen or not),
//! and the backend seam that produces an agent's reply.

use super::text;
use super::tools;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::future::Future;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSpec {
    pub id: &'static str,
    pub capability: &'static str,
    /// Words in a prompt that call for this agent.
    pub keywords: &'static [&'static str],
    /// The tools its policy allows.
    pub tools: &'static [&'static str],
    /// Who takes over when it fails.
    pub fallback: Option<&'static str>,
}

pub const GENERAL: &str = "general_agent";

pub const CATALOGUE: &[AgentSpec] = &[
    AgentSpec {
        id: GENERAL,
        capability: "general",
        keywords: &[],
        tools: &[tools::TEXT_STATS],
        fallback: None,
    },
    AgentSpec {
        id: "research_agent",
        capability: "research",
        keywords: &[
            "research",
            "analyze",
            "analyse",
            "compare",
            "source",
            "sources",
            "study",
            "investigate",
            "summarize",
            "summarise",
            "http",
            "https",
        ],
        tools: &[tools::TEXT_STATS, tools::JSON_QUERY, tools::FETCH],
        fallback: Some(GENERAL),
    },
    AgentSpec {
        id: "finance_agent",
        capability: "finance",
        keywords: &[
            "revenue", "cost", "costs", "profit", "budget", "price", "invoice", "percent",
            "forecast", "margin", "quarter", "sales",
        ],
        tools: &[tools::CALCULATOR, tools::JSON_QUERY],
        fallback: Some("research_agent"),
    },
    AgentSpec {
        id: "creative_agent",
        capability: "creative",
        keywords: &[
            "write", "story", "poem", "slogan", "draft", "creative", "tagline", "headline", "name",
        ],
        tools: &[tools::TEXT_STATS],
        fallback: Some(GENERAL),
    },
    AgentSpec {
        id: "enterprise_agent",
        capability: "enterprise",
        keywords: &[
            "policy",
            "compliance",
            "contract",
            "customer",
            "enterprise",
            "legal",
            "vendor",
            "approval",
            "audit",
        ],
        tools: &[tools::JSON_QUERY, tools::TEXT_STATS],
        fallback: Some(GENERAL),
    },
];

pub fn spec(id: &str) -> Option<&'static AgentSpec> {
    CATALOGUE.iter().find(|a| a.id == id)
}

/// Why an agent was or was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingDecision {
    pub agent: String,
    pub selected: bool,
    pub score: u32,
    pub reason: String,
}

/// Picks agents: those the task names in `metadata.agents`, else the
/// specialists whose keywords the prompt contains (best `max_agents`), else
/// the general agent. Every catalogue agent gets a recorded decision.
pub fn route(
    prompt: &str,
    requested: Option<&[String]>,
    max_agents: usize,
) -> Vec<RoutingDecision> {
    let words = text::words(prompt);
    let mut scored: Vec<(&AgentSpec, Vec<&str>)> = CATALOGUE
        .iter()
        .map(|a| {
            (
                a,
                a.keywords
                    .iter()
                    .copied()
                    .filter(|k| words.iter().any(|w| w == k))
                    .collect(),
            )
        })
        .collect();
    if let Some(requested) = requested {
        return scored
            .iter()
            .map(|(a, hits)| {
                let selected = requested.iter().any(|r| r == a.id);
                RoutingDecision {
                    agent: a.id.into(),
                    selected,
                    score: hits.len() as u32,
                    reason: if selected {
                        "requested in metadata.agents".into()
                    } else {
                        "not requested in metadata.agents".into()
                    },
                }
            })
            .collect();
    }
    // Most keyword hits first; catalogue order breaks ties.
    scored.sort_by_key(|(_, hits)| std::cmp::Reverse(hits.len()));
    let specialists = scored
        .iter()
        .filter(|(a, hits)| a.id != GENERAL && !hits.is_empty())
        .count();
    let mut decisions: Vec<RoutingDecision> = Vec::new();
    let mut chosen = 0;
    for (a, hits) in &scored {
        let (selected, reason) = if a.id == GENERAL {
            if specialists == 0 {
                (
                    true,
                    "no specialist matched the prompt; general agent answers".to_string(),
                )
            } else {
                (false, "specialists matched the prompt".to_string())
            }
        } else if hits.is_empty() {
            (
                false,
                "no keyword of its capability in the prompt".to_string(),
            )
        } else if chosen >= max_agents {
            (
                false,
                format!(
                    "matched {} but ranked below the top {max_agents}",
                    hits.join(", ")
                ),
            )
        } else {
            (true, format!("matched keywords: {}", hits.join(", ")))
        };
        chosen += usize::from(selected && a.id != GENERAL);
        decisions.push(RoutingDecision {
            agent: a.id.into(),
            selected,
            score: hits.len() as u32,
            reason,
        });
    }
    // Report in catalogue order, so the record is stable.
    decisions.sort_by_key(|d| CATALOGUE.iter().position(|a| a.id == d.agent));
    decisions
}

/// A tool call an agent asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub tool: String,
    pub input: Value,
}

/// The result of a tool call, as the agent sees it next turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub tool: String,
    pub outcome: ToolOutcome,
    pub output: Value,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    Ok,
    /// Not run: a guardrail, the run's call limit, or the tool itself refused it.
    Refused,
    Error,
}

impl ToolOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Refused => "refused",
            ToolOutcome::Error => "error",
        }
    }
}

/// What an agent is asked.
#[derive(Debug, Clone)]
pub struct AgentRequest<'a> {
    pub agent: &'static AgentSpec,
    pub prompt: &'a str,
    pub metadata: &'a serde_json::Map<String, Value>,
    pub tools: Vec<&'static str>,
    /// Results of the tool calls it asked for on the previous turn.
    pub tool_results: Vec<ToolResult>,
}

/// An agent's reply: tool calls to make, or its final answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReply {
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub content: String,
    pub confidence: f64,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum AgentError {
    #[error("agent backend timed out")]
    Timeout,
    #[error("agent backend unavailable: {0}")]
    Unavailable(String),
    #[error("agent backend returned an unusable reply: {0}")]
    BadReply(String),
}

pub trait AgentBackend: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the same request always gets the same reply: a replay can then ask
    /// again instead of reading a memo, and no memo is written.
    fn deterministic(&self) -> bool {
        false
    }

    fn complete(
        &self,
        request: &AgentRequest<'_>,
    ) -> impl Future<Output = Result<AgentReply, AgentError>> + Send;
}

/// The offline backend: deterministic, checkable work on the prompt and the
/// metadata, so that runs are reproducible. It asks for tools on its first turn
/// (including `fetch` for any URL, whether or not its policy allows it) and
/// answers on the second.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinBackend;

fn urls(prompt: &str) -> Vec<String> {
    prompt
        .split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', ')', ';']).to_string())
        .take(3)
        .collect()
}

/// Arithmetic written in the prompt, like `1200 * 0.15` or `(40 + 2) / 7`.
fn expressions(prompt: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current = String::new();
    // A trailing newline ends the last candidate (spaces are part of expressions).
    for c in prompt.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_digit() || "+-*/%().".contains(c) || (c == ' ' && !current.is_empty()) {
            current.push(c);
        } else {
            let candidate = current.trim().trim_end_matches('.').to_string();
            if candidate.chars().any(|c| "+-*/%".contains(c))
                && tools::calculate(&candidate).is_ok()
            {
                found.push(candidate);
            }
            current.clear();
        }
    }
    found.truncate(3);
    found
}

fn first_turn(agent: &AgentSpec, request: &AgentRequest<'_>) -> Vec<ToolCall> {
    let mut calls: Vec<ToolCall> = urls(request.prompt)
        .into_iter()
        .map(|url| ToolCall {
            tool: tools::FETCH.into(),
            input: json!({"url": url}),
        })
        .collect();
    match agent.capability {
        "finance" => calls.extend(
            expressions(request.prompt)
                .into_iter()
                .map(|e| ToolCall { tool: tools::CALCULATOR.into(), input: json!({"expression": e}) }),
        ),
        "enterprise" => calls.extend(
            request.metadata.keys().filter(|k| !k.is_empty()).take(3).map(|k| ToolCall {
                tool: tools::JSON_QUERY.into(),
                input: json!({"pointer": format!("/{}", k.replace('~', "~0").replace('/', "~1"))}),
            }),
        ),
        _ => calls.push(ToolCall { tool: tools::TEXT_STATS.into(), input: json!({}) }),
    }
    calls
}

fn final_turn(agent: &AgentSpec, request: &AgentRequest<'_>) -> (String, f64) {
    let terms: Vec<String> = text::key_terms(request.prompt, 3)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let terms = if terms.is_empty() {
        "none".to_string()
    } else {
        terms.join(", ")
    };
    let ok = |tool: &'static str| {
        request
            .tool_results
            .iter()
            .filter(move |r| r.tool == tool && r.outcome == ToolOutcome::Ok)
    };
    let content = match agent.capability {
        "finance" => {
            let computed: Vec<String> = ok(tools::CALCULATOR)
                .map(|r| {
                    format!(
                        "{} = {}",
                        r.output["expression"].as_str().unwrap_or("?"),
                        r.output["value"]
                    )
                })
                .collect();
            let nums: Vec<String> = text::numbers(request.prompt)
                .iter()
                .take(8)
                .map(f64::to_string)
                .collect();
            format!(
                "Finance view on {terms}: {} figure(s) in the prompt ({}).{}",
                nums.len(),
                if nums.is_empty() {
                    "none".to_string()
                } else {
                    nums.join(", ")
                },
                if computed.is_empty() {
                    String::new()
                } else {
                    format!(" Computed {}.", computed.join("; "))
                }
            )
        }
        "research" => {
            let fetched = ok(tools::FETCH).count();
            let refused = request
                .tool_results
                .iter()
                .filter(|r| r.tool == tools::FETCH && r.outcome != ToolOutcome::Ok)
                .count();
            format!(
                "Research notes on {terms}: {fetched} source(s) read, {refused} refused or failed."
            )
        }
        "creative" => format!(
            "Creative angle: \"{}\" — a headline built on {terms}.",
            capitalise(&terms)
        ),
        "enterprise" => {
            let fields: Vec<String> = ok(tools::JSON_QUERY)
                .map(|r| {
                    format!(
                        "{}={}",
                        r.output["pointer"]
                            .as_str()
                            .unwrap_or("?")
                            .trim_start_matches('/'),
                        r.output["value"]
                    )
                })
                .collect();
            format!(
                "Enterprise review of {terms}: metadata {}.",
                if fields.is_empty() {
                    "empty".to_string()
                } else {
                    fields.join(", ")
                }
            )
        }
        _ => {
            let first = request
                .prompt
                .split_inclusive(['.', '!', '?'])
                .next()
                .unwrap_or("")
                .trim();
            format!("Summary: {first} Key terms: {terms}.")
        }
    };
    let hits = agent
        .keywords
        .iter()
        .filter(|k| text::words(request.prompt).iter().any(|w| w == *k))
        .count();
    let confidence = if agent.id == GENERAL {
        0.6
    } else {
        (0.5 + 0.1 * hits as f64).min(0.95)
    };
    (content, (confidence * 100.0).round() / 100.0)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

impl AgentBackend for BuiltinBackend {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn deterministic(&self) -> bool {
        true
    }

    async fn complete(&self, request: &AgentRequest<'_>) -> Result<AgentReply, AgentError> {
        let agent = request.agent;
        let tokens = (request.prompt.len() / 4) as u64 + 32;
        if request.tool_results.is_empty() {
            let calls = first_turn(agent, request);
            if !calls.is_empty() {
                return Ok(AgentReply {
                    tool_calls: calls,
                    content: String::new(),
                    confidence: 0.0,
                    tokens,
                });
            }
        }
        let (content, confidence) = final_turn(agent, request);
        Ok(AgentReply {
            tool_calls: Vec::new(),
            tokens: tokens + (content.len() / 4) as u64,
            content,
            confidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(decisions: &[RoutingDecision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.selected)
            .map(|d| d.agent.as_str())
            .collect()
    }

    #[test]
    fn routing_picks_specialists_by_keyword_and_says_why() {
        let d = route(
            "Forecast revenue and write a tagline for the quarter",
            None,
            3,
        );
        assert_eq!(selected(&d), vec!["finance_agent", "creative_agent"]);
        assert_eq!(d.len(), CATALOGUE.len(), "every agent gets a decision");
        let finance = d.iter().find(|x| x.agent == "finance_agent").unwrap();
        assert_eq!(
            finance.reason,
            "matched keywords: revenue, forecast, quarter"
        );
        let general = d.iter().find(|x| x.agent == GENERAL).unwrap();
        assert!(!general.selected && general.reason.contains("specialists matched"));
    }

    #[test]
    fn routing_falls_back_to_the_general_agent() {
        assert_eq!(selected(&route("Hello there", None, 3)), vec![GENERAL]);
    }

    #[test]
    fn routing_honours_the_limit_and_requests() {
        let d = route("revenue research draft policy", None, 2);
        assert_eq!(selected(&d).len(), 2);
        assert!(
            d.iter()
                .any(|x| !x.selected && x.reason.contains("ranked below the top 2"))
        );
        let requested = vec!["enterprise_agent".to_string()];
        assert_eq!(
            selected(&route("revenue", Some(&requested), 3)),
            vec!["enterprise_agent"]
        );
    }

    #[test]
    fn every_fallback_and_tool_exists() {
        for a in CATALOGUE {
            assert!(a.fallback.is_none_or(|f| spec(f).is_some()), "{}", a.id);
            assert!(a.tools.iter().all(|t| tools::ALL.contains(t)), "{}", a.id);
        }
    }

    #[test]
    fn expressions_are_found_in_prose() {
        assert_eq!(
            expressions("Take 1200 * 0.15 then (40 + 2) / 7."),
            vec!["1200 * 0.15", "(40 + 2) / 7"]
        );
        assert!(expressions("Revenue grew 12.5 percent").is_empty());
    }

    #[tokio::test]
    async fn the_builtin_finance_agent_calls_the_calculator_then_answers() {
        let metadata = serde_json::Map::new();
        let agent = spec("finance_agent").unwrap();
        let mut request = AgentRequest {
            agent,
            prompt: "Budget: 1200 * 0.15 for costs.",
            metadata: &metadata,
            tools: agent.tools.to_vec(),
            tool_results: vec![],
        };
        let first = BuiltinBackend.complete(&request).await.unwrap();
        assert_eq!(
            first.tool_calls,
            vec![ToolCall {
                tool: "calculator".into(),
                input: json!({"expression": "1200 * 0.15"})
            }]
        );
        request.tool_results = vec![ToolResult {
            tool: "calculator".into(),
            outcome: ToolOutcome::Ok,
            output: json!({"expression": "1200 * 0.15", "value": 180.0}),
        }];
        let second = BuiltinBackend.complete(&request).await.unwrap();
        assert!(second.tool_calls.is_empty());
        assert!(
            second.content.contains("Computed 1200 * 0.15 = 180.0"),
            "{}",
            second.content
        );
        assert!(second.confidence > 0.5);
    }
}

/// The backend chosen by configuration (`AGENTS__BACKEND`).
#[derive(Clone)]
pub enum AnyBackend {
    Builtin(BuiltinBackend),
    OpenAi(super::openai::OpenAiBackend),
}

impl AgentBackend for AnyBackend {
    fn name(&self) -> &'static str {
        match self {
            AnyBackend::Builtin(b) => b.name(),
            AnyBackend::OpenAi(b) => b.name(),
        }
    }

    fn deterministic(&self) -> bool {
        match self {
            AnyBackend::Builtin(b) => b.deterministic(),
            AnyBackend::OpenAi(b) => b.deterministic(),
        }
    }

    async fn complete(&self, request: &AgentRequest<'_>) -> Result<AgentReply, AgentError> {
        match self {
            AnyBackend::Builtin(b) => b.complete(request).await,
            AnyBackend::OpenAi(b) => b.complete(request).await,
        }
    }
}
