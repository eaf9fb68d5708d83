//! The webhook delivery worker (SPEC §13; README "Webhooks"). Deliveries
//! are rows of `crm.webhook_deliveries`, written in the same transaction as
//! their event; this task sends them. Every server runs one, and they share
//! the work through the database:
//!
//! - **Claim**: `private.webhook_deliveries_claim` takes due deliveries with
//!   `FOR UPDATE SKIP LOCKED` and a lease (the claim moves `next_attempt_at`
//!   to the end of the lease), at most `WEBHOOK_CONCURRENCY` in flight here
//!   and `WEBHOOK_CONCURRENCY_PER_ENDPOINT` per endpoint across all servers,
//!   so a hanging receiver holds only its own slots. A server killed
//!   mid-attempt leaves claims that come due again when their lease ends.
//! - **Wake-up**: `wake` is notified on `NOTIFY minicrm_deliveries` (sent by
//!   the announcer once the events that made deliveries have committed,
//!   src/workers/announcer.rs; heard by the instance's listener, [`listen`]), and the
//!   worker also polls every `WEBHOOK_POLL_INTERVAL_MS` (retries come due
//!   without a notification, and a notification can be missed while the
//!   listening connection is down).
//! - **Attempt**: a POST of the event JSON with the Standard Webhooks
//!   headers, through a client that follows no redirect, uses no proxy,
//!   times out after `WEBHOOK_TIMEOUT_MS` and (unless private networks are
//!   allowed) resolves names through the SSRF guard and refuses forbidden
//!   IP literals and plain http.
//! - **Settle**: `private.webhook_delivery_settle` records the attempt and
//!   decides (delivered, retry after the SQL backoff, failed, 410 disables
//!   the endpoint). If the database is down, settling is retried for a
//!   while; if it never succeeds the lease runs out and the delivery is
//!   attempted again (at least once).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{broadcast, Notify, Semaphore},
    task::JoinHandle,
};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    db::{tls, Db},
    webhooks::{sign, ssrf, Webhooks},
    workers::{
        listener::{self, Listener},
        Shutdown,
    },
};

/// How long a claim lasts beyond the attempt's timeout before the delivery
/// comes due again for any server.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How long a failed settlement is retried (the database restarting).
const SETTLE_PATIENCE: Duration = Duration::from_secs(60);
/// The longest pause between two claims while the database is unreachable.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// A claimed delivery.
struct Claim {
    organization_id: Uuid,
    delivery_id: Uuid,
    claim_id: Uuid,
    webhook_id: Uuid,
    url: String,
    secret_sealed: Vec<u8>,
    event_id: Uuid,
    body: String,
}

/// What an attempt came to: the HTTP status if an answer came, and what
/// went wrong (never a secret: the URL is left out of client errors).
struct Outcome {
    status: Option<i32>,
    error: Option<String>,
}

/// The HTTP client of deliveries.
pub fn client(hooks: &Webhooks) -> reqwest::Client {
    let settings = &hooks.settings;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("minicrm-webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private_networks {
        builder = builder
            .https_only(true)
            .dns_resolver(Arc::new(ssrf::GuardedResolver(hooks.resolver.clone())));
    }
    builder.build().expect("building the webhook HTTP client")
}

/// Starts the worker; it stops claiming when `shutdown` turns true and
/// waits (up to the attempt timeout) for the attempts in flight.
pub fn spawn(
    db: Db,
    hooks: Arc<Webhooks>,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let settings = hooks.settings.clone();
        let http = client(&hooks);
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let freed = Arc::new(Notify::new());
        let lease_ms =
            i32::try_from((settings.timeout + LEASE_MARGIN).as_millis()).unwrap_or(i32::MAX);
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = slots.available_permits();
            let mut more = false;
            if free > 0 {
                match claim(&db, free, settings.concurrency_per_endpoint, lease_ms).await {
                    Ok(claims) => {
                        failures = 0;
                        more = claims.len() == free;
                        for c in claims {
                            let permit = slots.clone().try_acquire_owned().expect("a free slot");
                            let (db, hooks, http, freed) =
                                (db.clone(), hooks.clone(), http.clone(), freed.clone());
                            tokio::spawn(async move {
                                deliver(&db, &hooks, &http, c).await;
                                drop(permit);
                                freed.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        let pause =
                            Duration::from_millis(100 << failures.min(6)).min(MAX_ERROR_PAUSE);
                        tracing::warn!(error = %e, ?pause, "webhook claim failed; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = shutdown.wait_for(|stop| *stop) => break,
                        }
                        continue;
                    }
                }
            }
            if more && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = wake.notified() => {}
                () = freed.notified() => {}
                () = tokio::time::sleep(settings.poll_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        // Let the attempts in flight finish (each is bounded by the timeout);
        // one cut short is attempted again after its lease.
        let all = u32::try_from(settings.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            settings.timeout + Duration::from_secs(1),
            slots.acquire_many(all),
        )
        .await;
        tracing::debug!("webhook worker stopped");
    })
}

async fn claim(
    db: &Db,
    limit: usize,
    per_endpoint: i32,
    lease_ms: i32,
) -> anyhow::Result<Vec<Claim>> {
    let client = db
        .worker_client()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let rows = client
        .query_typed(
            "SELECT organization_id, delivery_id, claim_id, webhook_id, url, secret_sealed, event_id, body \
             FROM private.webhook_deliveries_claim(p_limit => $1, p_per_endpoint => $2, p_lease_ms => $3)",
            &[(&limit, Type::INT4), (&per_endpoint, Type::INT4), (&lease_ms, Type::INT4)],
        )
        .await
        .map_err(|e| anyhow::anyhow!(tls::error_chain(&e)))?;
    Ok(rows
        .iter()
        .map(|r| Claim {
            organization_id: r.get(0),
            delivery_id: r.get(1),
            claim_id: r.get(2),
            webhook_id: r.get(3),
            url: r.get(4),
            secret_sealed: r.get(5),
            event_id: r.get(6),
            body: r.get(7),
        })
        .collect())
}

async fn deliver(db: &Db, hooks: &Webhooks, http: &reqwest::Client, c: Claim) {
    let started = Instant::now();
    let outcome = attempt(hooks, http, &c).await;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let deadline = Instant::now() + SETTLE_PATIENCE;
    let mut pause = Duration::from_millis(100);
    loop {
        match settle(db, hooks, &c, &outcome, duration_ms).await {
            Ok(status) => {
                tracing::debug!(delivery = %c.delivery_id, status_code = ?outcome.status, ?status, "webhook attempt");
                return;
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(delivery = %c.delivery_id, error = %e, "settling a webhook attempt failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_ERROR_PAUSE);
            }
            Err(e) => {
                tracing::error!(delivery = %c.delivery_id, error = %e,
                    "giving up settling a webhook attempt: it is attempted again when its lease ends");
                return;
            }
        }
    }
}

async fn settle(
    db: &Db,
    hooks: &Webhooks,
    c: &Claim,
    o: &Outcome,
    duration_ms: i32,
) -> anyhow::Result<Option<String>> {
    let client = db
        .worker_client()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let row = client
        .query_typed(
            "SELECT private.webhook_delivery_settle(p_organization_id => $1, p_delivery_id => $2, \
             p_claim_id => $3, p_status_code => $4, p_error => $5, p_duration_ms => $6, \
             p_max_attempts => $7, p_backoff_scale => $8)",
            &[
                (&c.organization_id, Type::UUID),
                (&c.delivery_id, Type::UUID),
                (&c.claim_id, Type::UUID),
                (&o.status, Type::INT4),
                (&o.error, Type::TEXT),
                (&duration_ms, Type::INT4),
                (&hooks.settings.max_attempts, Type::INT4),
                (&hooks.settings.backoff_scale, Type::FLOAT8),
            ],
        )
        .await
        .map_err(|e| anyhow::anyhow!(tls::error_chain(&e)))?;
    Ok(row.first().and_then(|r| r.get(0)))
}

/// One attempt: the checks that need no network, then the POST.
async fn attempt(hooks: &Webhooks, http: &reqwest::Client, c: &Claim) -> Outcome {
    let failed = |error: String| Outcome {
        status: None,
        error: Some(error),
    };
    let Ok(url) = reqwest::Url::parse(&c.url) else {
        return failed("the url does not parse".into());
    };
    if !hooks.settings.allow_private_networks {
        if url.scheme() != "https" {
            return failed("webhook_url_forbidden: the url is not https".into());
        }
        if let Some(why) = ssrf::forbidden_literal(&url) {
            return failed(format!("webhook_url_forbidden: {why}"));
        }
    }
    let secret = match hooks
        .sealer
        .open(c.organization_id, c.webhook_id, &c.secret_sealed)
    {
        Ok(secret) => secret,
        Err(e) => return failed(e.to_string()),
    };
    let id = c.event_id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(&secret.0, &id, timestamp, &c.body);
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(c.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            let error = if status.is_success() {
                None
            } else if status.is_redirection() {
                Some(format!("HTTP {status}: redirects are not followed"))
            } else {
                Some(format!("HTTP {status}"))
            };
            // Read (a bounded part of) the answer so the connection can be reused.
            let mut response = response;
            let mut read = 0usize;
            while let Ok(Ok(Some(chunk))) =
                tokio::time::timeout(Duration::from_secs(1), response.chunk()).await
            {
                read += chunk.len();
                if read > 64 * 1024 {
                    break;
                }
            }
            Outcome {
                status: Some(i32::from(status.as_u16())),
                error,
            }
        }
        Err(e) => failed(describe(&e, hooks.settings.timeout)),
    }
}

/// A client error without the URL (it may carry credentials or tokens).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let kind = if e.is_connect() { "connect: " } else { "" };
    let mut text = String::from(kind);
    let mut source = std::error::Error::source(e);
    let mut parts = Vec::new();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    text.push_str(&parts.join(": "));
    text
}

/// Wakes the worker on every `minicrm_deliveries` notification the
/// instance's listener (src/workers/listener.rs) hears, and on its resets
/// (a reconnection: what was committed while nobody listened) and lags.
pub fn listen(listener: &Listener, wake: Arc<Notify>, mut shutdown: Shutdown) -> JoinHandle<()> {
    let mut notices = listener.subscribe(listener::DELIVERIES);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
    })
}
