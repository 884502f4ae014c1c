//! Negotiation: agents' outputs become proposals that every agent critiques
//! and scores, over bounded rounds, until a quorum supports one (consensus),
//! or the rounds run out (deadlock), or the winner is too weak to stand
//! (escalation to review). Each round is kept as a snapshot.
//!
//! Scoring is deterministic: a proposal's merit is how much of the prompt's key
//! terms it covers and how confident its author was. Each agent favours its own
//! proposal by a bias that shrinks every round and is gone in the last one, so
//! the last round is a vote on merit alone. Agents that disagree at first
//! converge on the strongest proposal; only a tie at the top (each agent then
//! keeps its own) ends in deadlock, which a person settles.

use super::text;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub agent: String,
    pub content: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critique {
    pub critic: String,
    pub target: String,
    pub score: f64,
    pub comment: String,
}

pub use crate::tasks::RoundDecision;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSnapshot {
    pub round: u32,
    pub proposals: Vec<Proposal>,
    pub critiques: Vec<Critique>,
    /// Each proposal's mean score from the other agents (its merit).
    pub scores: BTreeMap<String, f64>,
    pub leader: String,
    pub consensus: bool,
    pub supporters: Vec<String>,
    pub dissenters: Vec<String>,
    pub decision: RoundDecision,
}

impl RoundSnapshot {
    /// How far the agents agree, in [0, 1]: the leader's supporters among all who voted
    /// (v1's consensus score).
    pub fn consensus_score(&self) -> f64 {
        let voters = self.supporters.len() + self.dissenters.len();
        if voters == 0 {
            return 0.0;
        }
        round3(self.supporters.len() as f64 / voters as f64)
    }
}

/// v1's meta-agent view of a negotiation: a dispute when the agents disagreed in the first
/// round, its severity by how it ended (`high` deadlock, `medium` a consensus too weak to
/// accept, `low` settled by consensus); `None` when they agreed at once.
pub fn dispute_severity(snapshots: &[RoundSnapshot]) -> Option<&'static str> {
    let (first, last) = (snapshots.first()?, snapshots.last()?);
    (!first.dissenters.is_empty()).then_some(match last.decision {
        RoundDecision::Deadlock => "high",
        RoundDecision::Escalate => "medium",
        RoundDecision::Consensus | RoundDecision::Continue => "low",
    })
}

/// Whether the negotiation handed the decision to a person (v1's meta-agent override).
pub fn handed_to_person(snapshots: &[RoundSnapshot]) -> bool {
    snapshots.last().is_some_and(|s| {
        matches!(
            s.decision,
            RoundDecision::Deadlock | RoundDecision::Escalate
        )
    })
}

#[derive(Debug, Clone)]
pub struct NegotiationConfig {
    pub max_rounds: u32,
    /// Share of agents that must support the leader.
    pub quorum: f64,
    /// A consensus on a proposal scoring below this is escalated to review.
    pub min_score: f64,
    /// How much each agent favours its own proposal in round 1.
    pub self_bias: f64,
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        Self {
            max_rounds: 3,
            quorum: 2.0 / 3.0,
            min_score: 0.3,
            self_bias: 0.2,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A proposal's merit: 60% coverage of the prompt's key terms, 40% its author's confidence.
pub fn merit(prompt_terms: &[String], proposal: &Proposal) -> f64 {
    let words = text::words(&proposal.content);
    let covered = prompt_terms.iter().filter(|t| words.contains(t)).count();
    let coverage = if prompt_terms.is_empty() {
        1.0
    } else {
        covered as f64 / prompt_terms.len() as f64
    };
    round3(0.6 * coverage + 0.4 * proposal.confidence.clamp(0.0, 1.0))
}

/// Runs the rounds. Always returns at least one snapshot; the last one's decision is the outcome.
pub fn negotiate(
    prompt: &str,
    proposals: &[Proposal],
    config: &NegotiationConfig,
) -> Vec<RoundSnapshot> {
    let terms: Vec<String> = text::key_terms(prompt, 5)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let merits: BTreeMap<&str, f64> = proposals
        .iter()
        .map(|p| (p.agent.as_str(), merit(&terms, p)))
        .collect();
    let mut snapshots = Vec::new();
    for round in 1..=config.max_rounds.max(1) {
        let last = config.max_rounds.max(1);
        let bias = if last == 1 {
            0.0
        } else {
            config.self_bias * f64::from(last - round) / f64::from(last - 1)
        };
        let mut critiques = Vec::new();
        let mut votes: BTreeMap<&str, &str> = BTreeMap::new();
        for critic in proposals {
            let mut best: Option<(&str, f64)> = None;
            for target in proposals {
                let own = critic.agent == target.agent;
                let score =
                    round3((merits[target.agent.as_str()] + if own { bias } else { 0.0 }).min(1.0));
                if !own {
                    critiques.push(Critique {
                        critic: critic.agent.clone(),
                        target: target.agent.clone(),
                        score,
                        comment: format!(
                            "covers the prompt's terms at merit {:.2}",
                            merits[target.agent.as_str()]
                        ),
                    });
                }
                // Higher wins; on a tie an agent keeps its own proposal.
                if best.is_none_or(|(_, s)| score > s + 1e-9 || (own && (score - s).abs() <= 1e-9))
                {
                    best = Some((target.agent.as_str(), score));
                }
            }
            votes.insert(critic.agent.as_str(), best.map(|(a, _)| a).unwrap_or(""));
        }
        let scores: BTreeMap<String, f64> = proposals
            .iter()
            .map(|p| {
                let received: Vec<f64> = critiques
                    .iter()
                    .filter(|c| c.target == p.agent)
                    .map(|c| c.score)
                    .collect();
                let mean = if received.is_empty() {
                    merits[p.agent.as_str()]
                } else {
                    received.iter().sum::<f64>() / received.len() as f64
                };
                (p.agent.clone(), round3(mean))
            })
            .collect();
        // The leader is the proposal with the most votes; merit, then name, break ties.
        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for v in votes.values() {
            *tally.entry(v).or_default() += 1;
        }
        let leader = proposals
            .iter()
            .map(|p| p.agent.as_str())
            .max_by(|a, b| {
                tally
                    .get(a)
                    .cmp(&tally.get(b))
                    .then(merits[a].total_cmp(&merits[b]))
                    .then(b.cmp(a))
            })
            .unwrap_or_default()
            .to_string();
        let supporters: Vec<String> = votes
            .iter()
            .filter(|(_, v)| **v == leader)
            .map(|(k, _)| k.to_string())
            .collect();
        let dissenters: Vec<String> = votes
            .iter()
            .filter(|(_, v)| **v != leader)
            .map(|(k, _)| k.to_string())
            .collect();
        let consensus = !proposals.is_empty()
            && supporters.len() as f64 / proposals.len() as f64 >= config.quorum - 1e-9;
        let decision = match (consensus, round == config.max_rounds.max(1)) {
            (true, _) if merits.get(leader.as_str()).copied().unwrap_or(0.0) < config.min_score => {
                RoundDecision::Escalate
            }
            (true, _) => RoundDecision::Consensus,
            (false, true) => RoundDecision::Deadlock,
            (false, false) => RoundDecision::Continue,
        };
        snapshots.push(RoundSnapshot {
            round,
            proposals: proposals.to_vec(),
            critiques,
            scores,
            leader,
            consensus,
            supporters,
            dissenters,
            decision,
        });
        if decision != RoundDecision::Continue {
            break;
        }
    }
    snapshots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(agent: &str, content: &str, confidence: f64) -> Proposal {
        Proposal {
            agent: agent.into(),
            content: content.into(),
            confidence,
        }
    }

    const PROMPT: &str = "Forecast revenue margin and costs for the quarter";

    #[test]
    fn a_single_agent_reaches_consensus_in_one_round() {
        let s = negotiate(
            PROMPT,
            &[p("a", "revenue margin costs quarter forecast", 0.8)],
            &NegotiationConfig::default(),
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].decision, s[0].leader.as_str()),
            (RoundDecision::Consensus, "a")
        );
    }

    #[test]
    fn self_bias_splits_round_one_and_the_stronger_proposal_wins_later() {
        // finance covers 4 of 5 key terms (merit 0.80), creative 3 of 5 but more confident (0.72):
        // with a self-bias of 0.2, then 0.1, creative keeps its own; in the last round (no bias) it concedes.
        let proposals = [
            p("finance", "revenue margin costs quarter", 0.8),
            p("creative", "revenue margin quarter headline", 0.9),
        ];
        let s = negotiate(PROMPT, &proposals, &NegotiationConfig::default());
        assert_eq!(s.len(), 3, "{s:#?}");
        assert_eq!(s[0].decision, RoundDecision::Continue);
        assert_eq!(s[0].dissenters.len(), 1);
        let last = s.last().unwrap();
        assert_eq!(
            (last.decision, last.leader.as_str()),
            (RoundDecision::Consensus, "finance")
        );
        assert_eq!(last.supporters, vec!["creative", "finance"]);
        assert!(last.scores["finance"] > last.scores["creative"]);
    }

    #[test]
    fn equally_strong_rivals_deadlock_after_the_last_round() {
        let proposals = [p("a", "revenue margin", 0.7), p("b", "costs quarter", 0.7)];
        let config = NegotiationConfig {
            self_bias: 0.5,
            max_rounds: 2,
            ..Default::default()
        };
        let s = negotiate(PROMPT, &proposals, &config);
        assert_eq!(s.len(), 2);
        let last = s.last().unwrap();
        assert_eq!(last.decision, RoundDecision::Deadlock);
        assert_eq!((last.supporters.len(), last.dissenters.len()), (1, 1));
    }

    #[test]
    fn disputes_are_first_round_disagreements_rated_by_how_they_ended() {
        let settled = negotiate(
            PROMPT,
            &[
                p("finance", "revenue margin costs quarter", 0.8),
                p("creative", "revenue margin quarter headline", 0.9),
            ],
            &NegotiationConfig::default(),
        );
        assert_eq!(dispute_severity(&settled), Some("low"));
        assert!(!handed_to_person(&settled));
        let config = NegotiationConfig {
            self_bias: 0.5,
            max_rounds: 2,
            ..Default::default()
        };
        let rivals = [p("a", "revenue margin", 0.7), p("b", "costs quarter", 0.7)];
        let deadlocked = negotiate(PROMPT, &rivals, &config);
        assert_eq!(dispute_severity(&deadlocked), Some("high"));
        assert!(handed_to_person(&deadlocked));
        let alone = negotiate(PROMPT, &[p("a", "revenue margin", 0.9)], &config);
        assert_eq!(dispute_severity(&alone), None, "no one to disagree with");
        let weak = negotiate(PROMPT, &[p("a", "nothing relevant", 0.1)], &config);
        assert_eq!(
            (dispute_severity(&weak), handed_to_person(&weak)),
            (None, true)
        );
        assert_eq!(
            (dispute_severity(&[]), handed_to_person(&[])),
            (None, false)
        );
    }

    #[test]
    fn a_close_but_clear_winner_takes_the_last_round() {
        let proposals = [
            p("finance", "revenue forecast quarter", 0.8),
            p("creative", "revenue forecast quarter", 0.7),
        ];
        let s = negotiate(PROMPT, &proposals, &NegotiationConfig::default());
        let last = s.last().unwrap();
        assert_eq!(
            (last.decision, last.leader.as_str()),
            (RoundDecision::Consensus, "finance")
        );
    }

    #[test]
    fn a_weak_consensus_is_escalated() {
        let s = negotiate(
            PROMPT,
            &[p("a", "nothing relevant", 0.1)],
            &NegotiationConfig::default(),
        );
        assert_eq!(s[0].decision, RoundDecision::Escalate);
    }

    #[test]
    fn rounds_never_exceed_the_limit_and_agents_never_critique_themselves() {
        let proposals = [p("a", "x", 0.5), p("b", "y", 0.5), p("c", "z", 0.5)];
        let s = negotiate(
            PROMPT,
            &proposals,
            &NegotiationConfig {
                max_rounds: 3,
                self_bias: 0.9,
                ..Default::default()
            },
        );
        assert!(s.len() <= 3);
        assert!(
            s.iter()
                .flat_map(|r| &r.critiques)
                .all(|c| c.critic != c.target)
        );
        assert_eq!(s[0].critiques.len(), 6);
    }
}
