//! The one application state, shared behind an `Arc`.

use std::sync::Arc;

use crate::{config::Config, credentials::Tokens, db::Db};

pub struct App {
    pub config: Config,
    pub db: Db,
    pub tokens: Tokens,
    /// Verified against when an email is unknown, so login takes as long.
    pub dummy_hash: &'static str,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(config: Config, database_url: &str, jwt_secret: &str) -> anyhow::Result<AppState> {
        let db = Db::connect(&config, database_url)?;
        let tokens = Tokens::new(
            jwt_secret,
            config.access_token_ttl,
            config.refresh_token_ttl,
        );
        Ok(Arc::new(App {
            db,
            tokens,
            dummy_hash: Box::leak(crate::credentials::dummy_hash().into_boxed_str()),
            config,
        }))
    }
}
