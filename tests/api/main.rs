//! HTTP API tests: one binary (fast linking), each test in a database of its
//! own cloned from the migrated template, driving the router in-process.

mod analytics;
mod auth;
mod helpers;
mod organizations;
mod service;
