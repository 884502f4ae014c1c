//! The seam where a task's work runs. The orchestrator (agents, tools,
//! guardrails, negotiation) will implement [`TaskExecutor`]; until then the
//! built-in executor does deterministic text analysis of the prompt, real work
//! whose output tests can check.

use super::model::{Task, TaskResult};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;

/// Why a run did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// Retrying cannot help (bad input, a failed predecessor): the task fails now.
    #[error("{0}")]
    Permanent(String),
    /// Might succeed later (a dependency is busy or not ready): the message is retried.
    #[error("{0}")]
    Transient(String),
}

/// What the executor knows besides the task itself.
#[derive(Debug, Clone, Default)]
pub struct ExecutionContext {
    /// The completed task this one continues, if any.
    pub continuation: Option<Task>,
    /// Which delivery this is (1 for the first).
    pub attempt: u32,
}

pub trait TaskExecutor: Send + Sync {
    fn execute(
        &self,
        task: &Task,
        context: &ExecutionContext,
    ) -> impl Future<Output = Result<TaskResult, ExecutionError>> + Send;
}

/// Deterministic, offline analysis of the prompt: counts, key terms, numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinExecutor;

pub const BUILTIN_AGENT: &str = "builtin_analyzer";

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "in",
    "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will",
    "with", "what", "which", "who", "how", "can", "you", "your", "we", "our", "i", "me", "my",
];

/// The numbers in a text, as written (`-3`, `4.5`, `1,000` is two numbers).
fn numbers(text: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, found: &mut Vec<f64>| {
        let trimmed = current.trim_end_matches('.');
        if let Ok(v) = trimmed.parse::<f64>() {
            found.push(v);
        }
        current.clear();
    };
    let chars: Vec<char> = text.chars().collect();
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
            flush(&mut current, &mut found);
        }
    }
    if !current.is_empty() {
        flush(&mut current, &mut found);
    }
    found
}

/// Sentences end at `.`, `!` or `?` followed by white space or the end (so `12.5` is not a boundary).
fn sentence_count(text: &str) -> usize {
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

/// The analysis itself, separate from the async seam so it is easy to test.
pub fn analyze(task: &Task, context: &ExecutionContext) -> TaskResult {
    let prompt = &task.prompt;
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let sentences = sentence_count(prompt);
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for w in &words {
        if w.chars().count() > 2
            && !STOPWORDS.contains(&w.as_str())
            && !w.chars().all(|c| c.is_ascii_digit())
        {
            *counts.entry(w.as_str()).or_default() += 1;
        }
    }
    let mut terms: Vec<(&str, u32)> = counts.into_iter().collect();
    // Most frequent first; ties alphabetically, so the output is deterministic.
    terms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    terms.truncate(5);
    let nums = numbers(prompt);
    let sum: f64 = nums.iter().sum();
    let digest = hex::encode(Sha256::digest(prompt.as_bytes()));

    let term_text = if terms.is_empty() {
        "none".to_string()
    } else {
        terms
            .iter()
            .map(|(t, c)| format!("{t} ({c})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut summary = format!(
        "Analyzed {} words in {} sentence{}. Key terms: {}.",
        words.len(),
        sentences,
        if sentences == 1 { "" } else { "s" },
        term_text
    );
    if !nums.is_empty() {
        summary.push_str(&format!(" Numbers: {} (sum {}).", nums.len(), sum));
    }
    let continued = context.continuation.as_ref().map(|parent| {
        summary.push_str(&format!(" Continues task {}.", parent.task_id));
        json!({
            "task_id": parent.task_id,
            "summary": parent.result.as_ref().and_then(|r| r.outputs.first()).and_then(|o| o.get("content")).cloned(),
        })
    });

    let data = json!({
        "characters": prompt.chars().count(),
        "words": words.len(),
        "sentences": sentences,
        "top_terms": terms.iter().map(|(t, c)| json!({"term": t, "count": c})).collect::<Vec<Value>>(),
        "numbers": nums,
        "numbers_sum": sum,
        "metadata_keys": task.metadata.keys().collect::<Vec<_>>(),
        "prompt_sha256": digest,
        "continues": continued,
    });
    let report = format!(
        "# Task {}\n\n{}\n\n| measure | value |\n|---|---|\n| words | {} |\n| sentences | {} |\n| characters | {} |\n",
        task.task_id,
        summary,
        words.len(),
        sentences,
        prompt.chars().count()
    );
    TaskResult {
        executor: "builtin".into(),
        outputs: vec![json!({
            "agent": BUILTIN_AGENT,
            "status": "completed",
            "content": summary,
            "data": data,
        })],
        report,
        agents_completed: 1,
        agents_failed: 0,
    }
}

impl TaskExecutor for BuiltinExecutor {
    async fn execute(
        &self,
        task: &Task,
        context: &ExecutionContext,
    ) -> Result<TaskResult, ExecutionError> {
        Ok(analyze(task, context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::{TaskId, TaskStatus};

    fn task(prompt: &str) -> Task {
        Task {
            task_id: TaskId::parse("6f1c2a3e-1111-4222-8333-444455556666").unwrap(),
            status: TaskStatus::InProgress,
            prompt: prompt.into(),
            metadata: json!({"team": "ops"}).as_object().unwrap().clone(),
            continuation_task_id: None,
            submitted_by: "a".into(),
            request_id: "r".into(),
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
            attempts: 1,
            result: None,
            last_error: None,
            outbox_since: None,
        }
    }

    #[test]
    fn the_analysis_counts_words_sentences_terms_and_numbers() {
        let result = analyze(
            &task("Revenue grew 12.5 percent. Revenue costs fell by -3! Why did revenue grow?"),
            &ExecutionContext::default(),
        );
        let data = &result.outputs[0]["data"];
        assert_eq!(data["words"], 14);
        assert_eq!(data["sentences"], 3);
        assert_eq!(data["top_terms"][0], json!({"term": "revenue", "count": 3}));
        assert_eq!(data["numbers"], json!([12.5, -3.0]));
        assert_eq!(data["numbers_sum"], 9.5);
        assert_eq!(data["metadata_keys"], json!(["team"]));
        assert_eq!(result.agents_completed, 1);
        assert!(
            result.outputs[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("Analyzed 14 words in 3 sentences.")
        );
    }

    #[test]
    fn the_analysis_is_deterministic() {
        let t = task("b a c b a");
        assert_eq!(
            analyze(&t, &ExecutionContext::default()),
            analyze(&t, &ExecutionContext::default())
        );
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
        assert_eq!(numbers("no digits"), Vec::<f64>::new());
    }
}
