//! HTTP API tests: one binary (fast linking), each test in a database of its
//! own cloned from the migrated template, driving the router in-process.

mod activities;
mod analytics;
mod auth;
mod contacts;
mod deals;
mod helpers;
mod organizations;
mod scenario;
mod service;
mod tasks;
