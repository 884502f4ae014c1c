//! The NeuraForge shared crate: everything the Lambda functions have in common.
//!
//! Folders name the domain (`tasks`), modules name the cross-cutting parts
//! (`auth`, `http`, `telemetry`, `config`, `queue`, `aws`). Functions stay thin:
//! their `main.rs` builds clients once and hands a handler from here to the runtime.
pub mod access;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod config;
pub mod dynamo;
pub mod health;
pub mod http;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod orchestrator;
pub mod queue;
pub mod queue_health;
pub mod ratelimit;
pub mod redact;
pub mod reviews;
pub mod routes;
pub mod runtime;
pub mod scopes;
pub mod tasks;
pub mod telemetry;
pub mod time;

pub use lambda_http;
pub use lambda_runtime;
