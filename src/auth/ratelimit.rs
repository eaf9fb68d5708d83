//! Login and registration attempt limits, per client address and per email,
//! counted in the database (`api.auth_attempt`, sql/functions/12_auth_attempts.sql)
//! so that every server instance shares them.

use serde::Deserialize;

/// Where an attempt stands in its window, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets (at least 1).
    pub reset: u64,
}

/// What `api.auth_attempt` answers: the tighter quota, and whether the
/// attempt may go on.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Attempt {
    pub allowed: bool,
    #[serde(flatten)]
    pub quota: Quota,
}
