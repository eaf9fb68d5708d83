//! minicrm: a multi-tenant CRM whose rules live in PostgreSQL; this crate is
//! its thin HTTP face.
//!
//! - [`http`]: router, middleware, extractors, problems, OpenAPI, resources
//! - [`db`]: the connection pool and the one-statement request path,
//!   migrations, the local development cluster, the seed
//! - [`auth`]: tokens, password hashing, attempt limits
//! - [`ops`]: configuration and metrics
//! - [`state`]: the application state that ties them together
//! - [`workers`]: background tasks of the server (maintenance)

pub mod auth;
pub mod db;
pub mod http;
pub mod ops;
pub mod state;
pub mod webhooks;
pub mod workers;

pub use http::app;
