//! HTTP API tests: one binary (fast linking), each test in a database of its
//! own cloned from the migrated template, driving the router in-process.

mod activities;
mod analytics;
mod auth;
mod batches;
mod cli;
mod concurrency;
mod connections;
mod contacts;
mod conventions;
mod csv;
mod cursors;
mod deals;
mod etags;
mod external_ids;
mod helpers;
mod history;
mod idempotency;
mod instances;
mod invitations;
mod limits;
mod migration_v12;
mod migrations;
mod observability;
mod organizations;
mod pipelines;
mod pooler;
mod scenario;
mod security;
mod service;
mod tasks;
mod tenancy_probes;
mod tls;
mod trash;
mod velocity;
