//! The announcer: the one session of a database's servers that sends the
//! change feed's notifications (`private.events_announce`,
//! sql/functions/61_feed.sql).
//!
//! Writing transactions do not `NOTIFY`: PostgreSQL serializes the commits
//! of every transaction that has notified, which cost W3 and W4 about half
//! their throughput (docs/benchmarks.md, "The cost of the event triggers").
//! Instead every listener session ([`super::listener`]) tries to take the
//! database's announcer lock (a session advisory lock, so it goes with the
//! session: a dead or disconnected announcer frees it). The one holding it
//! calls `private.events_announce` every `EVENTS_ANNOUNCE_INTERVAL_MS`,
//! which notifies for the events committed since its previous call; the
//! others try again every [`TAKE_OVER_EVERY`]. A notification therefore
//! comes at most one interval (plus the time to look) after its commit, and
//! only once its events are readable in the feed.

use std::time::Duration;

/// The advisory lock of the announcer (per database). "mcannoun".
pub const LOCK: i64 = 0x6d63_616e_6e6f_756e;
/// How often a listener that is not the announcer tries to become it.
pub const TAKE_OVER_EVERY: Duration = Duration::from_secs(1);

/// One listener session's part in the announcing.
#[derive(Default)]
pub struct Announcer {
    /// Whether this session holds the lock.
    leading: bool,
    /// The horizon the last call returned (xid8 as text); `None` until the
    /// first call of this session, which announces "anything may have
    /// changed" (what happened since the previous announcer's last call is
    /// unknown).
    after: Option<String>,
    /// When this session last tried to take the lock.
    tried: Option<tokio::time::Instant>,
    /// The round's statement, prepared once per session (the announcer
    /// lives as long as its listener session).
    round: Option<tokio_postgres::Statement>,
}

impl Announcer {
    /// Called every interval: announces if this session holds the lock,
    /// else tries to take it now and then.
    pub async fn tick(
        &mut self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        if !self.leading {
            if self.tried.is_some_and(|t| t.elapsed() < TAKE_OVER_EVERY) {
                return Ok(());
            }
            self.tried = Some(tokio::time::Instant::now());
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
                .await?;
            self.leading = row.get(0);
            if !self.leading {
                return Ok(());
            }
            tracing::debug!("this instance announces the change feed");
        }
        let round = match &self.round {
            Some(round) => round.clone(),
            None => {
                let round = client
                    .prepare(
                        "SELECT horizon::text FROM private.events_announce(p_after => $1::text::xid8)",
                    )
                    .await?;
                self.round.insert(round).clone()
            }
        };
        let row = client.query_one(&round, &[&self.after]).await?;
        self.after = row.get(0);
        Ok(())
    }

    /// Whether this session holds the announcer lock.
    pub fn leading(&self) -> bool {
        self.leading
    }
}
