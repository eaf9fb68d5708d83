//! Configuration, read from the environment in one place.

use std::{env, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Context};

use crate::db::PoolSettings;

#[derive(Clone, Debug)]
pub struct Config {
    /// `None`: start (or reuse) the local cluster under `data_dir`.
    pub database_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub listen_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub local_pg_port: u16,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub pool: PoolSettings,
    pub request_timeout: Duration,
    /// The whole request head must arrive within this (also the idle
    /// keep-alive timeout); see `http::serve`.
    pub http_header_read_timeout: Duration,
    /// Concurrent connections served; more are closed at once.
    pub http_max_connections: usize,
    pub cache_ttl: Duration,
    /// How long a list cursor stays valid (`CURSOR_MAX_AGE_SECS`, default 24 h).
    pub cursor_max_age: Duration,
    pub log_format: LogFormat,
    /// Login and registration attempts per email, and per client address, per minute.
    pub auth_attempts_per_email: u32,
    pub auth_attempts_per_address: u32,
    /// How long an invitation can be accepted (`INVITATION_TTL_SECS`, 1 s to
    /// about 68 years: the database takes it as an integer).
    pub invitation_ttl: Duration,
    /// How long the answer stored under an `Idempotency-Key` is replayed
    /// (`IDEMPOTENCY_TTL_SECS`, default 24 h, 1 s to about 68 years: the
    /// database takes it as an integer). Expired keys are absent; the
    /// maintenance worker deletes them.
    pub idempotency_ttl: Duration,
    /// How often the maintenance worker runs (`MAINTENANCE_INTERVAL_SECS`,
    /// default 300; each pause is jittered by up to a fifth of it).
    pub maintenance_interval: Duration,
    /// Origins a browser may call the API from (`CORS_ALLOWED_ORIGINS`);
    /// `None`: no CORS headers at all (the default).
    pub cors_allowed_origins: Option<CorsOrigins>,
    /// How long a deleted contact, deal or task stays in the trash before it
    /// is erased for good (`TRASH_RETENTION_DAYS`, 1 to 36,500, default 30):
    /// the `p_retention` of `app.purge_expired_trash`, which the periodic
    /// maintenance calls.
    pub trash_retention_days: u32,
    /// How long the change feed keeps events (`EVENT_RETENTION_DAYS`, 1 to
    /// 36,500, default 30): older events are deleted by the maintenance, and
    /// a feed cursor older than this is answered 410 `cursor_expired`.
    pub event_retention_days: u32,
    /// Where the listener connects (`LISTEN_DATABASE_URL`; `None`: the
    /// database URL): a session of its own, never through a
    /// transaction-mode pooler (src/workers/listener.rs).
    pub listen_database_url: Option<String>,
    /// How often the announcer (the listener holding the database's announcer
    /// lock) looks for newly committed events to notify about
    /// (`EVENTS_ANNOUNCE_INTERVAL_MS`, default 50): what a notification may
    /// wait after its commit, at most.
    pub events_announce_interval: Duration,
    /// Live streams an organization may have open on one instance
    /// (`STREAMS_PER_ORG`, default 20); more are answered 429.
    pub streams_per_org: u32,
    /// A live stream sends a comment line after this long without an event
    /// (`STREAM_HEARTBEAT_MS`, default 15,000).
    pub stream_heartbeat: Duration,
    /// A live stream reads the feed at least this often, in case a
    /// notification was lost (`STREAM_POLL_INTERVAL_MS`, default 5,000).
    pub stream_poll_interval: Duration,
    pub webhooks: WebhookSettings,
}

/// The webhooks' settings (README, "Webhooks").
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// `WEBHOOK_SECRETS_KEY`: the AES-256-GCM key that seals the signing
    /// secrets. Without it the webhook routes answer 503
    /// `webhooks_not_configured` and no delivery worker runs.
    pub secrets_key: Option<[u8; 32]>,
    /// `WEBHOOK_SECRETS_PREVIOUS_KEY`: a key being rotated out, still tried
    /// when a secret does not open with the current one.
    pub previous_secrets_key: Option<[u8; 32]>,
    /// `WEBHOOK_ALLOW_PRIVATE_NETWORKS`: http and any address (local testing).
    pub allow_private_networks: bool,
    /// `WEBHOOK_TIMEOUT_MS`: a whole attempt, connect to last byte.
    pub timeout: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS`.
    pub max_attempts: i32,
    /// `WEBHOOK_BACKOFF_SCALE`: multiplies the retry schedule (tests).
    pub backoff_scale: f64,
    /// `WEBHOOK_CONCURRENCY`: attempts in flight per server.
    pub concurrency: usize,
    /// `WEBHOOK_CONCURRENCY_PER_ENDPOINT`: attempts in flight per endpoint,
    /// across every server.
    pub concurrency_per_endpoint: i32,
    /// `WEBHOOK_POLL_INTERVAL_MS`: how often the worker looks for due
    /// deliveries without a notification (retries come due silently).
    pub poll_interval: Duration,
}

impl WebhookSettings {
    /// The defaults, with a key (tests; production reads the environment).
    pub fn for_tests() -> Self {
        Self {
            secrets_key: Some([7; 32]),
            previous_secrets_key: None,
            allow_private_networks: false,
            timeout: Duration::from_millis(10_000),
            max_attempts: 12,
            backoff_scale: 1.0,
            concurrency: 16,
            concurrency_per_endpoint: 4,
            poll_interval: Duration::from_millis(1000),
        }
    }

    fn from_env() -> anyhow::Result<Self> {
        let key = |name: &str| -> anyhow::Result<Option<[u8; 32]>> {
            use base64::Engine as _;
            let Some(text) = var(name) else {
                return Ok(None);
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| anyhow::anyhow!("{name} is not base64"))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!("{name} must be the base64 of 32 bytes (openssl rand -base64 32)")
            })?;
            Ok(Some(key))
        };
        let timeout: u64 = parsed("WEBHOOK_TIMEOUT_MS", 10_000)?;
        if !(100..=300_000).contains(&timeout) {
            bail!("WEBHOOK_TIMEOUT_MS must be between 100 and 300000");
        }
        let max_attempts = parsed("WEBHOOK_MAX_ATTEMPTS", 12)?;
        if !(1..=100).contains(&max_attempts) {
            bail!("WEBHOOK_MAX_ATTEMPTS must be between 1 and 100");
        }
        let backoff_scale: f64 = parsed("WEBHOOK_BACKOFF_SCALE", 1.0)?;
        if !(backoff_scale > 0.0 && backoff_scale <= 100.0) {
            bail!("WEBHOOK_BACKOFF_SCALE must be above 0 and at most 100");
        }
        let concurrency = parsed("WEBHOOK_CONCURRENCY", 16)?;
        if !(1..=1000).contains(&concurrency) {
            bail!("WEBHOOK_CONCURRENCY must be between 1 and 1000");
        }
        let concurrency_per_endpoint = parsed("WEBHOOK_CONCURRENCY_PER_ENDPOINT", 4)?;
        if !(1..=100).contains(&concurrency_per_endpoint) {
            bail!("WEBHOOK_CONCURRENCY_PER_ENDPOINT must be between 1 and 100");
        }
        let poll: u64 = parsed("WEBHOOK_POLL_INTERVAL_MS", 1000)?;
        if !(10..=600_000).contains(&poll) {
            bail!("WEBHOOK_POLL_INTERVAL_MS must be between 10 and 600000");
        }
        Ok(Self {
            secrets_key: key("WEBHOOK_SECRETS_KEY")?,
            previous_secrets_key: key("WEBHOOK_SECRETS_PREVIOUS_KEY")?,
            allow_private_networks: match var("WEBHOOK_ALLOW_PRIVATE_NETWORKS").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => bail!(
                    "WEBHOOK_ALLOW_PRIVATE_NETWORKS={other:?} is not valid: use true or false"
                ),
            },
            timeout: Duration::from_millis(timeout),
            max_attempts,
            backoff_scale,
            concurrency,
            concurrency_per_endpoint,
            poll_interval: Duration::from_millis(poll),
        })
    }
}

/// `CORS_ALLOWED_ORIGINS`: `*`, or a comma-separated list of origins
/// (`scheme://host[:port]`, http or https, nothing after the authority).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

impl std::str::FromStr for CorsOrigins {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "*" {
            return Ok(CorsOrigins::Any);
        }
        let origins: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|origin| {
                let uri: axum::http::Uri = origin
                    .parse()
                    .map_err(|_| format!("{origin:?} is not an origin"))?;
                let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                    return Err(format!(
                        "{origin:?} is not an origin (scheme://host[:port])"
                    ));
                };
                if !matches!(scheme, "http" | "https") {
                    return Err(format!("{origin:?}: the scheme must be http or https"));
                }
                let canonical = format!("{scheme}://{authority}");
                if origin != canonical || authority.as_str().contains('@') {
                    return Err(format!(
                        "{origin:?} is not an origin: no path, query, user or trailing slash \
                         (did you mean {canonical:?}?)"
                    ));
                }
                Ok(canonical)
            })
            .collect::<Result<_, _>>()?;
        if origins.is_empty() {
            return Err("no origin given (use * or a comma-separated list)".into());
        }
        Ok(CorsOrigins::List(origins))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
    }
}

fn seconds(name: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(parsed(name, default)?))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let database_url = var("DATABASE_URL");
        let jwt_secret = var("JWT_SECRET");
        if database_url.is_some() && jwt_secret.is_none() {
            bail!("JWT_SECRET is required when DATABASE_URL is set");
        }
        if let Some(url) = &database_url {
            // sslmode and sslrootcert (the CA file is read now): refused here,
            // before anything connects.
            crate::db::tls::parse(url).context("DATABASE_URL")?;
        }
        if let Some(secret) = &jwt_secret {
            if secret.len() < 32 {
                bail!("JWT_SECRET must be at least 32 characters");
            }
        }
        let invitation_ttl = seconds("INVITATION_TTL_SECS", 7 * 24 * 3600)?;
        if invitation_ttl.is_zero() || invitation_ttl.as_secs() > i32::MAX as u64 {
            bail!("INVITATION_TTL_SECS must be between 1 and {}", i32::MAX);
        }
        let idempotency_ttl = seconds("IDEMPOTENCY_TTL_SECS", 24 * 3600)?;
        if idempotency_ttl.is_zero() || idempotency_ttl.as_secs() > i32::MAX as u64 {
            bail!("IDEMPOTENCY_TTL_SECS must be between 1 and {}", i32::MAX);
        }
        let maintenance_interval = seconds("MAINTENANCE_INTERVAL_SECS", 300)?;
        if maintenance_interval.is_zero() {
            bail!("MAINTENANCE_INTERVAL_SECS must be at least 1");
        }
        let trash_retention_days = parsed("TRASH_RETENTION_DAYS", 30)?;
        if !(1..=36_500).contains(&trash_retention_days) {
            bail!("TRASH_RETENTION_DAYS must be between 1 and 36500");
        }
        let event_retention_days = parsed("EVENT_RETENTION_DAYS", 30)?;
        if !(1..=36_500).contains(&event_retention_days) {
            bail!("EVENT_RETENTION_DAYS must be between 1 and 36500");
        }
        let listen_database_url = var("LISTEN_DATABASE_URL");
        if let Some(url) = &listen_database_url {
            crate::db::tls::parse(url).context("LISTEN_DATABASE_URL")?;
        }
        let events_announce_interval =
            Duration::from_millis(parsed("EVENTS_ANNOUNCE_INTERVAL_MS", 50)?);
        if !(Duration::from_millis(5)..=Duration::from_secs(10)).contains(&events_announce_interval)
        {
            bail!("EVENTS_ANNOUNCE_INTERVAL_MS must be between 5 and 10000");
        }
        let streams_per_org = parsed("STREAMS_PER_ORG", 20)?;
        if streams_per_org == 0 {
            bail!("STREAMS_PER_ORG must be at least 1");
        }
        let stream_heartbeat = Duration::from_millis(parsed("STREAM_HEARTBEAT_MS", 15_000)?);
        let stream_poll_interval = Duration::from_millis(parsed("STREAM_POLL_INTERVAL_MS", 5_000)?);
        if stream_heartbeat < Duration::from_millis(10)
            || stream_poll_interval < Duration::from_millis(10)
        {
            bail!("STREAM_HEARTBEAT_MS and STREAM_POLL_INTERVAL_MS must be at least 10");
        }
        let log_format = match var("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT={other:?} is not valid: use text or json"),
        };
        Ok::<_, anyhow::Error>(Self {
            database_url,
            jwt_secret,
            listen_addr: parsed("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            data_dir: var("MINICRM_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".data")),
            local_pg_port: parsed("MINICRM_LOCAL_PG_PORT", 54320)?,
            access_token_ttl: seconds("ACCESS_TOKEN_TTL_SECS", 15 * 60)?,
            refresh_token_ttl: seconds("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            pool: PoolSettings {
                size: parsed("DB_POOL_SIZE", 16)?,
                wait_timeout: Duration::from_millis(parsed("DB_POOL_TIMEOUT_MS", 2000)?),
                statement_timeout: Duration::from_millis(parsed("DB_STATEMENT_TIMEOUT_MS", 5000)?),
                transaction_pooler: match var("DB_POOLER").as_deref() {
                    None | Some("none") => false,
                    Some("transaction") => true,
                    Some(other) => {
                        bail!("DB_POOLER={other:?} is not valid: use none or transaction")
                    }
                },
            },
            request_timeout: Duration::from_millis(parsed("REQUEST_TIMEOUT_MS", 10000)?),
            http_header_read_timeout: Duration::from_millis(parsed(
                "HTTP_HEADER_READ_TIMEOUT_MS",
                10_000,
            )?),
            http_max_connections: match parsed("HTTP_MAX_CONNECTIONS", 1024)? {
                0 => bail!("HTTP_MAX_CONNECTIONS must be at least 1"),
                n => n,
            },
            cache_ttl: seconds("ANALYTICS_CACHE_TTL_SECS", 30)?,
            cursor_max_age: seconds("CURSOR_MAX_AGE_SECS", 24 * 3600)?,
            log_format,
            auth_attempts_per_email: parsed("AUTH_ATTEMPTS_PER_EMAIL_PER_MINUTE", 10)?,
            auth_attempts_per_address: parsed("AUTH_ATTEMPTS_PER_ADDRESS_PER_MINUTE", 60)?,
            invitation_ttl,
            idempotency_ttl,
            maintenance_interval,
            cors_allowed_origins: var("CORS_ALLOWED_ORIGINS")
                .map(|v| {
                    v.parse()
                        .map_err(|e| anyhow::anyhow!("CORS_ALLOWED_ORIGINS is not valid: {e}"))
                })
                .transpose()?,
            trash_retention_days,
            event_retention_days,
            listen_database_url,
            events_announce_interval,
            streams_per_org,
            stream_heartbeat,
            stream_poll_interval,
            webhooks: WebhookSettings::from_env()?,
        })
        .context("reading configuration")
    }

    /// `invitation_ttl` in whole seconds, as `api.invitations_create` takes it.
    pub fn invitation_ttl_secs(&self) -> i32 {
        i32::try_from(self.invitation_ttl.as_secs()).unwrap_or(i32::MAX)
    }

    /// `idempotency_ttl` in whole seconds, as `app.idempotency_finish` takes it.
    pub fn idempotency_ttl_secs(&self) -> i32 {
        i32::try_from(self.idempotency_ttl.as_secs()).unwrap_or(i32::MAX)
    }

    /// A configuration for tests: an existing database, small pool, fixed secret.
    pub fn for_database(database_url: String) -> Self {
        Self {
            database_url: Some(database_url),
            jwt_secret: Some("test-secret-test-secret-test-secret!".into()),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from(".data"),
            local_pg_port: 54320,
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            pool: PoolSettings {
                size: 4,
                wait_timeout: Duration::from_millis(2000),
                statement_timeout: Duration::from_millis(5000),
                transaction_pooler: false,
            },
            request_timeout: Duration::from_millis(10000),
            http_header_read_timeout: Duration::from_millis(10_000),
            http_max_connections: 1024,
            cache_ttl: Duration::from_secs(30),
            cursor_max_age: Duration::from_secs(24 * 3600),
            log_format: LogFormat::Text,
            auth_attempts_per_email: 10,
            auth_attempts_per_address: 60,
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            maintenance_interval: Duration::from_secs(300),
            cors_allowed_origins: None,
            trash_retention_days: 30,
            event_retention_days: 30,
            listen_database_url: None,
            events_announce_interval: Duration::from_millis(50),
            streams_per_org: 20,
            stream_heartbeat: Duration::from_secs(15),
            stream_poll_interval: Duration::from_secs(5),
            webhooks: WebhookSettings::for_tests(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CorsOrigins;

    #[test]
    fn cors_origins_are_origins_and_nothing_more() {
        assert_eq!("*".parse(), Ok(CorsOrigins::Any));
        assert_eq!(
            "https://app.example.com, http://localhost:3000".parse(),
            Ok(CorsOrigins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ]))
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://example.com",
            "https://user@example.com",
            "https://example.com?x=1",
            ",",
            "https://exa mple.com",
        ] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad} accepted");
        }
    }
}
