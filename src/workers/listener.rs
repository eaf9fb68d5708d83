//! The listener: one dedicated PostgreSQL connection per server instance
//! (not from the request pool) that `LISTEN`s to `minicrm_events` and
//! `minicrm_deliveries` and hands every notification to the tasks that
//! subscribed to its channel ([`Listener::subscribe`]).
//!
//! `LISTEN` needs a session of its own: behind a transaction-mode pooler
//! (PgBouncer) the server connection changes between statements and the
//! notifications go to whichever client holds it. The listener therefore
//! connects to `LISTEN_DATABASE_URL` (default `DATABASE_URL`), which can name
//! the database directly while the pool goes through the pooler.
//!
//! Notifications sent while the listener is disconnected are lost. When
//! PostgreSQL restarts (or the connection fails, or a ping goes unanswered),
//! the listener connects again with backoff, and after each successful
//! `LISTEN` (the first one too: nothing was heard before it) it sends every
//! subscriber [`Notice::Reset`], "anything may have changed". A subscriber
//! that falls more than [`CAPACITY`] notices behind gets `Lagged` from its
//! receiver, which means the same.
//!
//! The listener's session is also a candidate for announcing the feed's
//! notifications to every instance ([`super::announcer`]): writers do not
//! notify, one listener of the database does it for them.

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_postgres::AsyncMessage;

use super::announcer::Announcer;

/// The change feed: `<organization_id>:<resource_type>` for every
/// distinct pair committed transactions wrote events for, sent by the
/// announcer (sql/functions/61_feed.sql); `*` (a new announcer: anything may
/// have changed) reaches subscribers as [`Notice::Reset`].
pub const EVENTS: &str = "minicrm_events";
/// The webhook deliveries: a delivery became due (sql/functions/62_webhooks.sql).
pub const DELIVERIES: &str = "minicrm_deliveries";

/// Every channel the listener listens to.
const LISTEN: &str = "LISTEN minicrm_events; LISTEN minicrm_deliveries";

/// Notices a subscriber may fall behind by before it gets `Lagged`.
pub const CAPACITY: usize = 1024;
/// The connection is checked this often (a lost network can leave a socket
/// that neither errors nor delivers); an answer must come within [`PING_TIMEOUT`].
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The listener's `application_name` (tests find its backend by it).
pub const APPLICATION_NAME: &str = "minicrm-listener";

/// What a subscriber hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A notification on the channel, with its payload.
    Notified(Arc<str>),
    /// The listener (re)connected: notifications may have been missed, so
    /// anything may have changed.
    Reset,
}

/// The handle the server keeps; dropping it stops the listener task.
pub struct Listener {
    events: broadcast::Sender<Notice>,
    deliveries: broadcast::Sender<Notice>,
    /// How many times the listener has started listening.
    listening: watch::Receiver<u64>,
    _stop: oneshot::Sender<()>,
}

impl Listener {
    /// Starts the listener task on `database_url` (the configured
    /// `LISTEN_DATABASE_URL`). Must be called inside a tokio runtime.
    /// `announce_every`: how often it announces while it holds the
    /// announcer lock (`EVENTS_ANNOUNCE_INTERVAL_MS`).
    pub fn spawn(database_url: &str, announce_every: Duration) -> anyhow::Result<Self> {
        let connect = crate::db::tls::parse(database_url)
            .map_err(|e| anyhow::anyhow!("LISTEN_DATABASE_URL: {e}"))?;
        let (events, _) = broadcast::channel(CAPACITY);
        let (deliveries, _) = broadcast::channel(CAPACITY);
        let (listening_tx, listening) = watch::channel(0);
        let (stop, stopped) = oneshot::channel();
        let task = Task {
            connect,
            events: events.clone(),
            deliveries: deliveries.clone(),
            listening: listening_tx,
            announce_every,
        };
        tokio::spawn(task.run(stopped));
        Ok(Self {
            events,
            deliveries,
            listening,
            _stop: stop,
        })
    }

    /// The notices of `channel` ([`EVENTS`] or [`DELIVERIES`]) from now on.
    pub fn subscribe(&self, channel: &str) -> broadcast::Receiver<Notice> {
        match channel {
            DELIVERIES => self.deliveries.subscribe(),
            _ => self.events.subscribe(),
        }
    }

    /// How many times the listener has started listening (0: not yet).
    pub fn connections(&self) -> u64 {
        *self.listening.borrow()
    }

    /// Waits until the listener has started listening more than `after`
    /// times (`ready(0)`: it listens now).
    pub async fn ready(&self, after: u64) {
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|n| *n > after).await;
    }
}

struct Task {
    connect: crate::db::tls::DbConnect,
    events: broadcast::Sender<Notice>,
    deliveries: broadcast::Sender<Notice>,
    listening: watch::Sender<u64>,
    announce_every: Duration,
}

/// Why one connection's session ended.
enum Ended {
    Stopped,
    Lost(String),
}

impl Task {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let (ended, listened) = self.session(&mut stop).await;
            match ended {
                Ended::Stopped => break,
                Ended::Lost(why) => {
                    // A session that got as far as LISTEN starts the backoff again.
                    if listened {
                        backoff = BACKOFF_MIN;
                    }
                    tracing::warn!(error = %why, retry_in = ?backoff, "listener disconnected");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = &mut stop => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::debug!("listener stopped");
    }

    /// One connection: connect, LISTEN, tell everyone to reset, then pass
    /// notifications on until the connection fails or the listener stops.
    /// Returns why it ended and whether it got as far as listening.
    async fn session(&self, stop: &mut oneshot::Receiver<()>) -> (Ended, bool) {
        let mut config = self.connect.config.clone();
        config
            .application_name(APPLICATION_NAME)
            .connect_timeout(Duration::from_secs(3));
        let connecting = config.connect(self.connect.tls.clone());
        let (client, mut connection) = tokio::select! {
            c = connecting => match c {
                Ok(c) => c,
                Err(e) => return (Ended::Lost(format!("connecting: {e}")), false),
            },
            _ = &mut *stop => return (Ended::Stopped, false),
        };
        // The connection is driven by a task of its own, which forwards the
        // notifications; the client's statements (LISTEN, pings) need it too.
        let (forward, mut notifications) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ =
                            forward.send((n.channel().to_owned(), Arc::<str>::from(n.payload())));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "listener connection failed");
                        return;
                    }
                }
            }
        });
        let ended = self.listen(&client, &mut notifications, stop).await;
        driver.abort();
        ended
    }

    async fn listen(
        &self,
        client: &tokio_postgres::Client,
        notifications: &mut mpsc::UnboundedReceiver<(String, Arc<str>)>,
        stop: &mut oneshot::Receiver<()>,
    ) -> (Ended, bool) {
        let listen = client.batch_execute(LISTEN);
        match tokio::time::timeout(PING_TIMEOUT, listen).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (Ended::Lost(format!("LISTEN: {e}")), false),
            Err(_) => return (Ended::Lost("LISTEN timed out".into()), false),
        }
        self.listening.send_modify(|n| *n += 1);
        tracing::debug!("listening to {EVENTS} and {DELIVERIES}");
        let _ = self.events.send(Notice::Reset);
        let _ = self.deliveries.send(Notice::Reset);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut announcer = Announcer::default();
        let mut announce = tokio::time::interval(self.announce_every);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A failing round (the function is missing until the database is
        // migrated) is logged once, not every interval.
        let mut failing = false;
        loop {
            tokio::select! {
                n = notifications.recv() => match n {
                    Some((channel, payload)) => {
                        // No subscriber is not an error.
                        let _ = if channel == DELIVERIES {
                            self.deliveries.send(Notice::Notified(payload))
                        } else if &*payload == "*" {
                            self.events.send(Notice::Reset)
                        } else {
                            self.events.send(Notice::Notified(payload))
                        };
                    }
                    None => return (Ended::Lost("the connection closed".into()), true),
                },
                _ = announce.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, announcer.tick(client)).await {
                        Ok(Ok(())) => failing = false,
                        Ok(Err(e)) if e.is_closed() => {
                            return (Ended::Lost(format!("announcing: {e}")), true)
                        }
                        Ok(Err(e)) => {
                            if !failing {
                                tracing::warn!(error = %e, leading = announcer.leading(), "announcing the change feed failed");
                            }
                            failing = true;
                        }
                        Err(_) => return (Ended::Lost("announcing timed out".into()), true),
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, client.simple_query("")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return (Ended::Lost(format!("ping: {e}")), true),
                        Err(_) => return (Ended::Lost("ping timed out".into()), true),
                    }
                }
                _ = &mut *stop => return (Ended::Stopped, true),
            }
        }
    }
}
