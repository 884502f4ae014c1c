//! The EMF → Prometheus exporter: reads CloudWatch Embedded Metric Format
//! documents from standard input, a followed log file or Firehose HTTP
//! endpoint deliveries, and serves them as Prometheus metrics on `/metrics`.

pub mod config;
pub mod firehose;
pub mod registry;
pub mod server;
pub mod sources;
