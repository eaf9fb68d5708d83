//! The one application state, shared behind an `Arc`.

use std::sync::Arc;

use crate::{
    auth::credentials::Tokens, db::Db, http::cache::AnalyticsCache, http::cursor::Cursors,
    http::routes::events::StreamSlots, ops::config::Config, ops::metrics::Metrics,
    workers::listener::Listener,
};

pub struct App {
    pub config: Config,
    pub db: Db,
    pub tokens: Tokens,
    /// Signs and checks list cursors (a key derived from the JWT secret).
    pub cursors: Cursors,
    pub analytics: Arc<AnalyticsCache>,
    /// The instance's LISTEN connection (src/workers/listener.rs): wakes the
    /// live streams and the cache invalidation; others may subscribe.
    pub listener: Listener,
    /// The live streams open on this instance, per organization.
    pub streams: Arc<StreamSlots>,
    /// Served by `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Verified against when an email is unknown, so login takes as long.
    pub dummy_hash: &'static str,
    /// Webhook secrets and SSRF checks; None without `WEBHOOK_SECRETS_KEY`.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

pub type AppState = Arc<App>;

impl App {
    /// Starts the instance's listener, so it must be called inside a tokio
    /// runtime; dropping the last reference to the state stops it.
    pub fn new(config: Config, database_url: &str, jwt_secret: &str) -> anyhow::Result<AppState> {
        let db = Db::connect(&config.pool, database_url)?
            .with_idempotency_ttl(config.idempotency_ttl_secs());
        let tokens = Tokens::new(
            jwt_secret,
            config.access_token_ttl,
            config.refresh_token_ttl,
        );
        let cursors = Cursors::new(jwt_secret, config.cursor_max_age);
        let listener = Listener::spawn(
            config
                .listen_database_url
                .as_deref()
                .unwrap_or(database_url),
            config.events_announce_interval,
        )?;
        let analytics = Arc::new(AnalyticsCache::new(config.cache_ttl));
        crate::http::cache::follow(analytics.clone(), &listener);
        Ok(Arc::new(App {
            db,
            tokens,
            cursors,
            analytics,
            listener,
            streams: Arc::default(),
            metrics: Arc::default(),
            dummy_hash: Box::leak(crate::auth::credentials::dummy_hash().into_boxed_str()),
            webhooks: crate::webhooks::Webhooks::new(&config.webhooks).map(Arc::new),
            config,
        }))
    }
}

impl App {
    /// A write through the API changed the deals of the context's organization
    /// (or its pipelines, whose stages the funnel lists): the next analytics
    /// read must see it.
    pub fn deals_changed(&self, ctx: crate::db::Ctx) {
        if let Some(org) = ctx.org_id {
            self.analytics.invalidate_reports(org);
        }
    }
}
