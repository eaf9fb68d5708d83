//! Background tasks of the server, beside the request path. Each is a tokio
//! task that the server starts with its state and a shutdown signal, and that
//! outlives database outages: a failed round is logged and tried again later.

pub mod announcer;
pub mod listener;
pub mod maintenance;
pub mod webhooks;

/// Tells the workers to stop; each finishes the round it is in first.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;
