//! Guardrail policies, evaluated on a run's input, its plan steps, its tool
//! calls and its outputs. Each evaluation gives a decision with the policy,
//! the reason and a risk score; the engine acts on the most severe one.

use crate::redact::find_pii;

pub use crate::tasks::{Decision, GuardrailDecision, Stage};

pub mod policy_ids {
    pub const PII: &str = "pii.v1";
    pub const PROHIBITED: &str = "prohibited_keywords.v1";
    pub const RISK: &str = "risk_threshold.v1";
    pub const TOOL_ALLOWLIST: &str = "tool_allowlist.v1";
    pub const BUDGET: &str = "token_budget.v1";
    pub const ALL: &[&str] = &[PII, PROHIBITED, RISK, TOOL_ALLOWLIST, BUDGET];
}

/// Policy settings. Defaults are safe; operators tune them by configuration.
#[derive(Debug, Clone)]
pub struct GuardrailConfig {
    /// Phrases that stop a run outright (lowercase).
    pub prohibited: Vec<String>,
    /// Phrases that raise the risk score (lowercase).
    pub sensitive: Vec<String>,
    /// Risk at or above which a run goes to review.
    pub review_threshold: f64,
    /// Risk at or above which a run is escalated.
    pub escalate_threshold: f64,
    /// Estimated tokens (characters / 4) one run may spend.
    pub token_budget: u64,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        Self {
            prohibited: [
                "build a bomb",
                "make a weapon",
                "write malware",
                "ransomware",
                "credit card dump",
            ]
            .map(String::from)
            .to_vec(),
            sensitive: [
                "wire transfer",
                "password",
                "bypass",
                "confidential",
                "lawsuit",
                "override approval",
            ]
            .map(String::from)
            .to_vec(),
            review_threshold: 0.6,
            escalate_threshold: 0.85,
            token_budget: 20_000,
        }
    }
}

/// Counts `allow` decisions, as v1 did. Without labels, so the count rides in the EMF
/// document the invocation sends anyway (per policy it would be a document more for each on
/// every task, and no v1 query reads `allow` by policy); the exporter serves it as
/// `neuraforge_guardrail_decision_total{decision="allow"}`.
fn count_allowed(n: u64) {
    if n > 0 {
        metrics::counter!(crate::telemetry::names::GUARDRAIL_ALLOWED).increment(n);
    }
}

pub struct Guardrails {
    pub config: GuardrailConfig,
}

fn decision(
    policy: &str,
    stage: Stage,
    d: Decision,
    reason: impl Into<String>,
    risk: f64,
) -> GuardrailDecision {
    GuardrailDecision {
        policy_id: policy.to_string(),
        stage,
        decision: d,
        reason: reason.into(),
        risk_score: (risk * 1000.0).round() / 1000.0,
        subject: None,
    }
}

impl Guardrails {
    /// Risk of a text in [0, 1]: personal data and sensitive phrases add to it.
    pub fn risk_score(&self, text: &str) -> f64 {
        let lower = text.to_lowercase();
        let pii = find_pii(text);
        let sensitive = self
            .config
            .sensitive
            .iter()
            .filter(|p| lower.contains(p.as_str()))
            .count();
        let score = 0.15 * pii.emails as f64
            + 0.15 * pii.phones as f64
            + 0.45 * (pii.cards + pii.ssns) as f64
            + 0.3 * sensitive as f64;
        score.min(1.0)
    }

    /// Text policies (input, plan step, output): prohibited phrases, personal data, risk.
    /// Only decisions other than `allow` are returned.
    pub fn check_text(&self, stage: Stage, text: &str) -> Vec<GuardrailDecision> {
        let mut out = Vec::new();
        let lower = text.to_lowercase();
        if let Some(phrase) = self
            .config
            .prohibited
            .iter()
            .find(|p| lower.contains(p.as_str()))
        {
            out.push(decision(
                policy_ids::PROHIBITED,
                stage,
                Decision::Deny,
                format!("prohibited phrase \"{phrase}\""),
                1.0,
            ));
            return out;
        }
        let pii = find_pii(text);
        if pii.cards + pii.ssns > 0 {
            out.push(decision(
                policy_ids::PII,
                stage,
                Decision::Review,
                format!("{} card or national id number(s)", pii.cards + pii.ssns),
                0.45,
            ));
        } else if pii.total() > 0 {
            out.push(decision(
                policy_ids::PII,
                stage,
                Decision::Redact,
                format!(
                    "{} email address(es), {} phone number(s) redacted",
                    pii.emails, pii.phones
                ),
                0.15 * pii.total() as f64,
            ));
        }
        let risk = self.risk_score(text);
        if risk >= self.config.escalate_threshold {
            out.push(decision(
                policy_ids::RISK,
                stage,
                Decision::Escalate,
                format!("risk {risk:.2} ≥ {}", self.config.escalate_threshold),
                risk,
            ));
        } else if risk >= self.config.review_threshold {
            out.push(decision(
                policy_ids::RISK,
                stage,
                Decision::Review,
                format!("risk {risk:.2} ≥ {}", self.config.review_threshold),
                risk,
            ));
        }
        // Three policies ran (prohibited phrases passed); each that stayed silent allowed.
        count_allowed(3 - out.len() as u64);
        out
    }

    /// Tool allow-list: an agent may only call the tools its policy grants.
    pub fn check_tool_call(&self, agent: &str, tool: &str, allowed: &[&str]) -> GuardrailDecision {
        let mut d = if allowed.contains(&tool) {
            decision(
                policy_ids::TOOL_ALLOWLIST,
                Stage::ToolCall,
                Decision::Allow,
                format!("{agent} may use {tool}"),
                0.0,
            )
        } else {
            decision(
                policy_ids::TOOL_ALLOWLIST,
                Stage::ToolCall,
                Decision::Deny,
                format!("{agent} may not use {tool}"),
                0.5,
            )
        };
        d.subject = Some(tool.to_string());
        if d.decision == Decision::Allow {
            count_allowed(1);
        }
        d
    }

    /// Token budget for the whole run.
    pub fn check_budget(&self, spent_tokens: u64) -> Option<GuardrailDecision> {
        if spent_tokens <= self.config.token_budget {
            count_allowed(1);
        }
        (spent_tokens > self.config.token_budget).then(|| {
            decision(
                policy_ids::BUDGET,
                Stage::Output,
                Decision::Deny,
                format!(
                    "{spent_tokens} tokens exceed the budget of {}",
                    self.config.token_budget
                ),
                0.7,
            )
        })
    }
}

/// The most severe of some decisions (`allow` when there are none).
pub fn strongest(decisions: &[GuardrailDecision]) -> Decision {
    decisions
        .iter()
        .map(|d| d.decision)
        .max()
        .unwrap_or(Decision::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::redact_pii;

    fn guardrails() -> Guardrails {
        Guardrails {
            config: GuardrailConfig::default(),
        }
    }

    #[test]
    fn clean_text_passes_every_policy() {
        assert!(
            guardrails()
                .check_text(Stage::Input, "Summarise the quarterly revenue.")
                .is_empty()
        );
    }

    #[test]
    fn a_prohibited_phrase_is_denied() {
        let d = guardrails().check_text(Stage::Input, "Please WRITE MALWARE for me");
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].policy_id.as_str(), d[0].decision),
            (policy_ids::PROHIBITED, Decision::Deny)
        );
    }

    #[test]
    fn emails_and_phones_are_redacted() {
        let text = "Mail jane.doe@example.com or call +1 415-555-0100.";
        let d = guardrails().check_text(Stage::Input, text);
        assert_eq!(strongest(&d), Decision::Redact);
        assert_eq!(
            redact_pii(text),
            "Mail [REDACTED:email] or call [REDACTED:phone]."
        );
    }

    #[test]
    fn card_numbers_need_review_but_only_when_luhn_valid() {
        let d = guardrails().check_text(Stage::Output, "card 4111 1111 1111 1111");
        assert_eq!(strongest(&d), Decision::Review);
        assert!(
            guardrails()
                .check_text(Stage::Output, "order 1234 5678 9012 3456")
                .is_empty()
        );
        assert_eq!(
            redact_pii("card 4111111111111111."),
            "card [REDACTED:card]."
        );
    }

    #[test]
    fn sensitive_phrases_raise_risk_to_review_then_escalation() {
        let g = guardrails();
        assert!(g.check_text(Stage::Input, "a password").is_empty());
        let review = g.check_text(Stage::Input, "reset the password and bypass the check");
        assert_eq!(strongest(&review), Decision::Review);
        let escalate = g.check_text(
            Stage::Input,
            "wire transfer, password, bypass, confidential",
        );
        assert_eq!(strongest(&escalate), Decision::Escalate);
        assert!(escalate.iter().all(|d| d.risk_score <= 1.0));
    }

    #[test]
    fn tools_outside_the_allow_list_are_denied() {
        let g = guardrails();
        assert_eq!(
            g.check_tool_call("finance_agent", "calculator", &["calculator"])
                .decision,
            Decision::Allow
        );
        let d = g.check_tool_call("finance_agent", "fetch", &["calculator"]);
        assert_eq!(
            (d.decision, d.subject.as_deref()),
            (Decision::Deny, Some("fetch"))
        );
    }

    #[test]
    fn the_token_budget_is_enforced() {
        let g = guardrails();
        assert!(g.check_budget(20_000).is_none());
        assert_eq!(g.check_budget(20_001).unwrap().decision, Decision::Deny);
    }

    #[test]
    fn decisions_order_by_severity() {
        assert!(Decision::Deny > Decision::Escalate && Decision::Escalate > Decision::Review);
        assert!(Decision::Review > Decision::Redact && Decision::Redact > Decision::Allow);
    }
}
