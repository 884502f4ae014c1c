//! Orchestrator settings, and the checks a submission's metadata must pass.

use super::agents::{self, AnyBackend, BuiltinBackend};
use super::engine::{Orchestrator, RunLimits};
use super::guardrails::{GuardrailConfig, Guardrails, policy_ids};
use super::negotiation::NegotiationConfig;
use super::openai::{OpenAiBackend, OpenAiConfig};
use super::tools::{self, ToolConfig, ToolRegistry};
use crate::config::{ConfigError, Settings};
use crate::tasks::MetadataChoices;
use crate::tasks::{RunStore, RunTables};
use std::time::Duration;

fn list(settings: &Settings, name: &str) -> Vec<String> {
    settings
        .optional(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `AGENTS__BACKEND` picks the OpenAI-compatible backend (else the built-in one).
fn uses_openai(settings: &Settings) -> Result<bool, ConfigError> {
    match settings
        .optional("AGENTS__BACKEND")
        .as_deref()
        .unwrap_or("builtin")
    {
        "builtin" => Ok(false),
        "openai" => Ok(true),
        other => Err(ConfigError {
            setting: "AGENTS__BACKEND".into(),
            problem: format!("must be builtin or openai, got {other:?}"),
        }),
    }
}

impl Orchestrator<AnyBackend> {
    /// The worker's orchestrator at cold start: [`Self::from_settings`], with the model
    /// provider's key read from SSM when `AGENTS__OPENAI_API_KEY_PARAMETER` names it.
    pub async fn load(
        sdk: &aws_config::SdkConfig,
        settings: &Settings<'_>,
    ) -> Result<Self, ConfigError> {
        let backend = match uses_openai(settings)? {
            true => {
                AnyBackend::OpenAi(OpenAiBackend::new(OpenAiConfig::load(sdk, settings).await?))
            }
            false => AnyBackend::Builtin(BuiltinBackend),
        };
        Self::with_backend(sdk, settings, backend)
    }

    /// The orchestrator with the backend `AGENTS__BACKEND` names: `builtin` (offline,
    /// deterministic, the default) or `openai` (any chat-completions server, its key
    /// from `AGENTS__OPENAI_API_KEY`).
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        let backend = match uses_openai(settings)? {
            true => AnyBackend::OpenAi(OpenAiBackend::new(OpenAiConfig::from_settings(settings)?)),
            false => AnyBackend::Builtin(BuiltinBackend),
        };
        Self::with_backend(sdk, settings, backend)
    }

    fn with_backend(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
        backend: AnyBackend,
    ) -> Result<Self, ConfigError> {
        let d = RunLimits::default();
        let limits = RunLimits {
            max_agents: settings.bounded_or("ORCHESTRATOR__MAX_AGENTS", d.max_agents, 1..=5)?,
            max_tool_calls: settings.bounded_or(
                "ORCHESTRATOR__MAX_TOOL_CALLS",
                d.max_tool_calls,
                0..=50,
            )?,
            max_agent_turns: settings.bounded_or(
                "ORCHESTRATOR__MAX_AGENT_TURNS",
                d.max_agent_turns,
                1..=10,
            )?,
            wall_time: Duration::from_secs(settings.bounded_or(
                "ORCHESTRATOR__WALL_TIME_SECONDS",
                d.wall_time.as_secs(),
                1..=900,
            )?),
            max_output_bytes: d.max_output_bytes,
        };
        let g = GuardrailConfig::default();
        let mut prohibited = g.prohibited.clone();
        prohibited.extend(list(settings, "GUARDRAILS__PROHIBITED_PHRASES"));
        let guardrails = GuardrailConfig {
            prohibited,
            sensitive: g.sensitive.clone(),
            review_threshold: settings.bounded_or(
                "GUARDRAILS__REVIEW_THRESHOLD",
                g.review_threshold,
                0.0..=1.0,
            )?,
            escalate_threshold: settings.bounded_or(
                "GUARDRAILS__ESCALATE_THRESHOLD",
                g.escalate_threshold,
                0.0..=1.0,
            )?,
            token_budget: settings.bounded_or(
                "GUARDRAILS__TOKEN_BUDGET",
                g.token_budget,
                100..=10_000_000,
            )?,
        };
        let n = NegotiationConfig::default();
        Ok(Self {
            store: RunStore::new(sdk, RunTables::from_settings(settings)?),
            backend,
            tools: ToolRegistry::new(ToolConfig {
                fetch_allowed_hosts: list(settings, "TOOLS__FETCH_ALLOWED_HOSTS"),
            }),
            guardrails: Guardrails { config: guardrails },
            negotiation: NegotiationConfig {
                max_rounds: settings.bounded_or("NEGOTIATION__MAX_ROUNDS", n.max_rounds, 1..=10)?,
                ..n
            },
            limits,
        })
    }
}

/// The names a task's metadata may choose from: the agents, tools and policies
/// the orchestrator knows (the submit routes refuse any other).
pub fn metadata_choices() -> MetadataChoices {
    MetadataChoices {
        agents: agents::CATALOGUE.iter().map(|a| a.id).collect(),
        tools: tools::ALL.to_vec(),
        policies: policy_ids::ALL.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(metadata: serde_json::Value) -> Vec<String> {
        metadata_choices()
            .validate(metadata.as_object().unwrap())
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn known_agents_tools_and_policies_pass() {
        let metadata = serde_json::json!({
            "agents": ["finance_agent"], "tools": ["calculator"], "policies": ["pii.v1"], "other": 1,
        });
        assert!(check(metadata).is_empty());
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones_listed() {
        let errors = check(
            serde_json::json!({"agents": ["wizard_agent"], "tools": ["shell"], "policies": ["anything"]}),
        );
        assert_eq!(errors.len(), 3);
        assert!(
            errors[0].starts_with(
                "metadata.agents: unknown agent \"wizard_agent\"; known: general_agent"
            ),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("unknown tool \"shell\""));
        assert!(errors[2].starts_with("metadata.policies: unknown policy \"anything\""));
    }

    #[test]
    fn the_lists_must_be_non_empty_lists_of_strings() {
        assert_eq!(
            check(serde_json::json!({"agents": "finance_agent"})),
            vec!["metadata.agents: must be a non-empty list"]
        );
        assert_eq!(
            check(serde_json::json!({"tools": []})),
            vec!["metadata.tools: must be a non-empty list"]
        );
        assert_eq!(
            check(serde_json::json!({"agents": [1]})),
            vec!["metadata.agents: must list names as strings"]
        );
    }
}
