//! Deterministic text measures shared by the built-in agents and the `text_stats` tool.

use serde_json::{Value, json};
use std::collections::BTreeMap;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "in",
    "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will",
    "with", "what", "which", "who", "how", "can", "you", "your", "we", "our", "i", "me", "my",
    "please", "about", "into", "than", "then", "them", "they", "their", "there", "these", "those",
];

/// Lowercased words (letters, digits and apostrophes).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Sentences end at `.`, `!` or `?` followed by white space or the end (so `12.5` is not a boundary).
pub fn sentence_count(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let mut count = 0;
    let mut has_words = false;
    for (i, &c) in chars.iter().enumerate() {
        has_words |= c.is_alphanumeric();
        let at_boundary = matches!(c, '.' | '!' | '?')
            && chars.get(i + 1).is_none_or(|next| next.is_whitespace());
        if at_boundary && has_words {
            count += 1;
            has_words = false;
        }
    }
    count + usize::from(has_words)
}

/// The numbers in a text, as written (`-3`, `4.5`; `1,000` is two numbers).
pub fn numbers(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        if let Ok(v) = current.trim_end_matches('.').parse::<f64>() {
            found.push(v);
        }
        current.clear();
    };
    for (i, &c) in chars.iter().enumerate() {
        let starts_negative = c == '-'
            && current.is_empty()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        if c.is_ascii_digit()
            || starts_negative
            || (c == '.' && !current.is_empty() && !current.contains('.'))
        {
            current.push(c);
        } else if !current.is_empty() {
            flush(&mut current);
        }
    }
    if !current.is_empty() {
        flush(&mut current);
    }
    found
}

/// The text without `[REDACTED:kind]` markers, which are not the author's words.
fn without_redactions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[REDACTED:") {
        out.push_str(&rest[..start]);
        match rest[start..].find(']') {
            Some(end) => rest = &rest[start + end + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// The most frequent content words, most frequent first, ties alphabetically.
pub fn key_terms(text: &str, limit: usize) -> Vec<(String, u32)> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for w in words(&without_redactions(text)) {
        if w.chars().count() > 2
            && !STOPWORDS.contains(&w.as_str())
            && !w.chars().all(|c| c.is_ascii_digit())
        {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut terms: Vec<(String, u32)> = counts.into_iter().collect();
    terms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    terms.truncate(limit);
    terms
}

/// The `text_stats` measures of a text.
pub fn stats(text: &str) -> Value {
    let nums = numbers(text);
    json!({
        "characters": text.chars().count(),
        "words": words(text).len(),
        "sentences": sentence_count(text),
        "top_terms": key_terms(text, 5).into_iter().map(|(t, c)| json!({"term": t, "count": c})).collect::<Vec<_>>(),
        "numbers": nums,
        "numbers_sum": nums.iter().sum::<f64>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_words_sentences_terms_and_numbers() {
        let s = stats("Revenue grew 12.5 percent. Revenue costs fell by -3! Why did revenue grow?");
        assert_eq!(s["words"], 14);
        assert_eq!(s["sentences"], 3);
        assert_eq!(s["top_terms"][0], json!({"term": "revenue", "count": 3}));
        assert_eq!(s["numbers"], json!([12.5, -3.0]));
        assert_eq!(s["numbers_sum"], 9.5);
    }

    #[test]
    fn sentences_end_at_terminators_followed_by_space() {
        assert_eq!(sentence_count("Pi is 3.14. Really? Yes"), 3);
        assert_eq!(sentence_count("...  "), 0);
        assert_eq!(sentence_count("one"), 1);
    }

    #[test]
    fn number_extraction_handles_edges() {
        assert_eq!(
            numbers("v2 costs 10. Then 3.25 and x-5"),
            vec![2.0, 10.0, 3.25, 5.0]
        );
        assert!(numbers("no digits").is_empty());
    }

    #[test]
    fn redaction_markers_are_not_key_terms() {
        assert_eq!(
            key_terms("Mail [REDACTED:email] about margin", 5),
            vec![("mail".into(), 1), ("margin".into(), 1)]
        );
    }

    #[test]
    fn key_terms_are_deterministic() {
        assert_eq!(
            key_terms("beta alpha beta alpha gamma", 2),
            vec![("alpha".into(), 2), ("beta".into(), 2)]
        );
    }
}
