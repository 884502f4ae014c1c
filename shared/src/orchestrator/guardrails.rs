//! Guardrail policies, evaluated on a run's input, its plan steps, its tool
//! calls and its outputs. Each evaluation gives a decision with the policy,
//! the reason and a risk score; the engine acts on the most severe one.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// What a policy decided, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Input,
    PlanStep,
    ToolCall,
    Output,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

pub mod policy_ids {
    pub const PII: &str = "pii.v1";
    pub const PROHIBITED: &str = "prohibited_keywords.v1";
    pub const RISK: &str = "risk_threshold.v1";
    pub const TOOL_ALLOWLIST: &str = "tool_allowlist.v1";
    pub const BUDGET: &str = "token_budget.v1";
    pub const ALL: &[&str] = &[PII, PROHIBITED, RISK, TOOL_ALLOWLIST, BUDGET];
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b").unwrap());
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\b\d{1,3}[ .-]?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b").unwrap());
// Digits with single spaces or dashes between them, never after the last one (the text that
// follows a card number keeps its space).
static CARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").unwrap());
static SSN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").unwrap());

/// Luhn check, so that any long digit run is not taken for a card number.
fn luhn_valid(digits: &str) -> bool {
    let digits: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Personal data found in a text, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PiiFindings {
    pub emails: usize,
    pub phones: usize,
    pub cards: usize,
    pub ssns: usize,
}

impl PiiFindings {
    pub fn total(&self) -> usize {
        self.emails + self.phones + self.cards + self.ssns
    }
}

pub fn find_pii(text: &str) -> PiiFindings {
    PiiFindings {
        emails: EMAIL.find_iter(text).count(),
        phones: PHONE.find_iter(text).count(),
        cards: CARD
            .find_iter(text)
            .filter(|m| luhn_valid(m.as_str()))
            .count(),
        ssns: SSN.find_iter(text).count(),
    }
}

/// Replaces personal data with `[REDACTED:kind]`.
pub fn redact_pii(text: &str) -> String {
    let text = SSN.replace_all(text, "[REDACTED:ssn]");
    let text = CARD.replace_all(&text, |c: &regex::Captures| {
        if luhn_valid(&c[0]) {
            "[REDACTED:card]".to_string()
        } else {
            c[0].to_string()
        }
    });
    let text = EMAIL.replace_all(&text, "[REDACTED:email]");
    PHONE.replace_all(&text, "[REDACTED:phone]").into_owned()
}

/// [`redact_pii`] applied to every string inside a JSON value (object keys stay).
pub fn redact_pii_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(redact_pii(text)),
        Value::Array(items) => Value::Array(items.iter().map(redact_pii_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_pii_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
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
        d
    }

    /// Token budget for the whole run.
    pub fn check_budget(&self, spent_tokens: u64) -> Option<GuardrailDecision> {
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
    fn a_redacted_card_number_keeps_the_space_after_it() {
        assert_eq!(
            redact_pii("Refund card 4111 1111 1111 1111 by wire"),
            "Refund card [REDACTED:card] by wire"
        );
        assert_eq!(
            redact_pii("card 4111-1111-1111-1111, then"),
            "card [REDACTED:card], then"
        );
    }

    #[test]
    fn every_string_in_a_json_value_is_redacted() {
        let value = serde_json::json!({"contact": ["jane@example.com", 7], "note": {"phone": "+1 415-555-0100"}});
        assert_eq!(
            redact_pii_json(&value),
            serde_json::json!({"contact": ["[REDACTED:email]", 7], "note": {"phone": "[REDACTED:phone]"}})
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
