//! What a finished run leaves for people: its Markdown report. (The dossier is built
//! when it is downloaded, from the task, its run and its events: `reviews::dossier`.)

use super::engine::Conclusion;
use crate::tasks::Task;

/// The run's report in Markdown: agents, negotiation, guardrails, and why it went to review.
pub(super) fn markdown(task: &Task, run_id: &str, c: &Conclusion) -> String {
    let mut md = format!(
        "# Task {}\n\nRun `{run_id}`: **{}**.\n\n## Agents\n\n",
        task.task_id,
        c.status().as_str()
    );
    for a in &c.answers {
        md.push_str(&format!(
            "- **{}** (confidence {:.2}): {}\n",
            a.agent, a.confidence, a.content
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
        let reasons: Vec<String> = c.review_reasons.iter().map(|r| format!("- {r}")).collect();
        md.push_str(&format!("\n## Sent to review\n\n{}\n", reasons.join("\n")));
    }
    md
}
