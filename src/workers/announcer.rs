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
//! which notifies for the events committed since the previous round and
//! writes their webhook deliveries; the others try again every
//! [`TAKE_OVER_EVERY`]. A notification or a delivery therefore comes at most
//! one interval (plus the time to look) after its commit, and only once its
//! events are readable in the feed. The position between rounds is kept in
//! the database (`private.events_announcer`), with the deliveries, so a new
//! announcer goes on where the last one's last committed round ended.

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
    /// Whether this session has made a round. Its first round announces
    /// "anything may have changed": what listeners missed while the
    /// previous announcer went away is unknown.
    announced: bool,
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
                    .prepare("SELECT delivered FROM private.events_announce(p_first => $1)")
                    .await?;
                self.round.insert(round).clone()
            }
        };
        client.query_one(&round, &[&!self.announced]).await?;
        self.announced = true;
        Ok(())
    }

    /// Whether this session holds the announcer lock.
    pub fn leading(&self) -> bool {
        self.leading
    }
}
