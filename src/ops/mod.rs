//! Running the service: configuration and metrics.

pub mod config;
pub mod metrics;
