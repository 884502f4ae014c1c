//! Personal data in text: finding it (the PII guardrail counts it) and redacting it
//! (every read surface that shows a prompt to someone other than its submitter).

use regex::Regex;
use std::sync::LazyLock;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
