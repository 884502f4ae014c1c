//! The orchestrator: runs a task as a team of agents with tools, guardrails
//! and negotiation, and records every step as a task event.

pub mod agents;
pub mod engine;
pub mod events;
pub mod guardrails;
pub mod negotiation;
pub mod openai;
mod recorder;
pub mod settings;
mod steps;
pub mod text;
pub mod tools;
mod turns;
