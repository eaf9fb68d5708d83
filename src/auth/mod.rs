//! Authentication: access and refresh tokens, password hashing, attempt limits.

pub mod credentials;
pub mod ratelimit;
