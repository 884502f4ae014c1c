//! The integration and end-to-end tests: one binary, one moto server for the whole
//! run (every test provisions its own fresh tables and queues under a unique name, so
//! tests stay isolated), one module per capability.

mod agent_backend;
mod alerting;
mod architecture;
mod audit;
mod console_deploy;
mod cost;
mod dashboards;
mod differences;
mod e2e;
mod emf;
mod exporter;
mod hardening;
mod health;
mod history;
mod iam;
mod jwt;
mod ops;
mod orchestrator;
mod queue_health;
mod rate_limit;
mod review_events;
mod review_metrics;
mod reviews;
mod reviews_api;
mod roles;
mod routes;
mod runbooks;
mod runs;
mod sample_events;
mod status;
mod stream;
mod submit;
mod v1_compat;
mod worker;
mod workflows;
