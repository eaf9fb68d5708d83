//! The one application state, shared behind an `Arc`.

use std::{net::IpAddr, sync::Arc, time::Duration};

use crate::{
    auth::credentials::Tokens,
    auth::ratelimit::{Quota, RateLimiter},
    db::Db,
    http::cache::AnalyticsCache,
    ops::config::Config,
    ops::metrics::Metrics,
};

pub struct App {
    pub config: Config,
    pub db: Db,
    pub tokens: Tokens,
    pub analytics: AnalyticsCache,
    /// Served by `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Verified against when an email is unknown, so login takes as long.
    pub dummy_hash: &'static str,
    auth_by_email: RateLimiter,
    auth_by_address: RateLimiter,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(config: Config, database_url: &str, jwt_secret: &str) -> anyhow::Result<AppState> {
        let db = Db::connect(&config.pool, database_url)?;
        let tokens = Tokens::new(
            jwt_secret,
            config.access_token_ttl,
            config.refresh_token_ttl,
        );
        let minute = Duration::from_secs(60);
        Ok(Arc::new(App {
            db,
            tokens,
            analytics: AnalyticsCache::new(config.cache_ttl),
            metrics: Arc::default(),
            auth_by_email: RateLimiter::new(config.auth_attempts_per_email, minute),
            auth_by_address: RateLimiter::new(config.auth_attempts_per_address, minute),
            dummy_hash: Box::leak(crate::auth::credentials::dummy_hash().into_boxed_str()),
            config,
        }))
    }
}

impl App {
    /// Counts a login or registration attempt against the per-address limit.
    /// Checked first, before anything else is done for the attempt.
    pub fn limit_auth_address(&self, address: Option<IpAddr>) -> Result<Quota, Quota> {
        let address = address.map(|a| a.to_string()).unwrap_or_default();
        self.auth_by_address.check(&address)
    }

    /// Counts a login or registration attempt against the per-email limit.
    /// `email_key` is the database's folding of the address
    /// (`app.email_key`, the key of the unique index `users_email_taken`),
    /// so every spelling that reaches one account shares one budget; it is
    /// counted before a password is hashed or verified.
    pub fn limit_auth_email(&self, email_key: &str) -> Result<Quota, Quota> {
        self.auth_by_email.check(email_key)
    }
}

impl App {
    /// A write through the API changed the deals of the context's organization:
    /// the next analytics read must see it.
    pub fn deals_changed(&self, ctx: crate::db::Ctx) {
        if let Some(org) = ctx.org_id {
            self.analytics.invalidate_reports(org);
        }
    }
}
