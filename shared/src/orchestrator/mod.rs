//! The orchestrator: runs a task as a team of agents with tools, guardrails
//! and negotiation, and records every step as a task event.

pub mod agents;
pub mod engine;
pub mod events;
pub mod guardrails;
pub mod negotiation;
pub mod openai;
pub mod runs_api;
pub mod settings;
pub mod store;
pub mod stream;
pub mod text;
pub mod tools;
