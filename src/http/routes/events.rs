//! /events: the change feed (SPEC §13), and /events/stream, the same events
//! live as Server-Sent Events. Both read `api.events_list`
//! (sql/functions/61_feed.sql); the stream is woken by the listener
//! (src/workers/listener.rs) and holds no pooled connection between reads.
//!
//! A feed cursor is a list cursor (src/http/cursor.rs) of the list `events`
//! whose key is the position `<tx>:<seq>` and whose time is the one
//! `api.events_list` gives the position (when it was issued, for a cursor at
//! the horizon; the time of the event it follows, inside the history). It is
//! bound to the organization but not to `types`: a follower, a stream or a
//! resumed stream may change its filter and keep its place. It lasts as long
//! as the events do: older than `EVENT_RETENTION_DAYS`, 410 `cursor_expired`.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        sse::{self, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{value::RawValue, Value};
use tokio::sync::{
    broadcast::{self, error::RecvError},
    watch,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    db::{param::Xid8, Ctx},
    http::cursor::{invalid, After, Fingerprint},
    http::extract::{ApiQuery, JsonText, OrgActor},
    http::problem::{AppResult, Problem},
    state::AppState,
    workers::listener::{Notice, EVENTS},
};

/// `limit`: 1 to 500 (default 100).
#[derive(Clone, Copy, Debug)]
pub struct Limit(pub i32);

impl Default for Limit {
    fn default() -> Self {
        Limit(100)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i32::deserialize(d)? {
            n @ 1..=500 => Ok(Limit(n)),
            _ => Err(serde::de::Error::custom("limit must be between 1 and 500")),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next_cursor` of a previous page (any `types`): the events after
    /// it. Without it: from the oldest event kept. Altered, another
    /// organization's: 400 `invalid_cursor`; older than the retention
    /// (`EVENT_RETENTION_DAYS`): 410 `cursor_expired`.
    #[param(max_length = 2048)]
    pub after: Option<String>,
    /// Comma-separated event types (`deal.updated`) and patterns
    /// (`deal.*`); default: every type. An unknown one: 400 `event_type_unknown`.
    #[param(example = "deal.*,task.created")]
    pub types: Option<String>,
    #[serde(default)]
    #[param(value_type = Option<i32>, minimum = 1, maximum = 500)]
    pub limit: Limit,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Where to resume, as `after` of `GET /events` (the `Last-Event-ID`
    /// header wins over it). Without either: events from now on.
    #[param(max_length = 2048)]
    pub after: Option<String>,
    /// As `types` of `GET /events`.
    #[param(example = "deal.*,task.created")]
    pub types: Option<String>,
}

/// An event of the change feed (SPEC §13), as `app.event_json` builds it
/// for the feed, the history, the live stream and webhook bodies.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    /// `<resource>.<change>`: `contact.created|updated|deleted|restored`, the
    /// same for `deal` and `task`, `activity.created`,
    /// `pipeline.created|updated|deleted`, `member.added|updated|removed`.
    #[serde(rename = "type")]
    #[schema(example = "deal.updated")]
    pub type_: String,
    /// The start of the transaction that made the change.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// The acting user; null for a change made with no user (the
    /// maintenance, a DBA without `app.act_as`).
    pub actor_id: Option<Uuid>,
    /// The record's id (a member's: its `user_id`).
    pub resource_id: Uuid,
    pub data: EventData,
}

/// What changed.
#[derive(Serialize, ToSchema)]
pub struct EventData {
    /// The record as the API shows it after the change (before it, for
    /// `*.deleted` and `member.removed`).
    #[schema(value_type = Object)]
    pub object: Value,
    /// For `*.updated`: the old values of the fields that changed (not
    /// `updated_at` and `version`, which change every time); `{}` when
    /// nothing else changed. Null for every other type.
    #[schema(value_type = Option<Object>, required = true)]
    pub previous: Option<Value>,
}

/// A page of the feed.
#[derive(Serialize, ToSchema)]
pub struct FeedPage {
    /// Oldest first.
    pub items: Vec<Event>,
    /// Never null: pass it as `after` for the events that follow (on an empty
    /// page, to poll again).
    pub next_cursor: String,
}

/// Where the feed stands: after the event of transaction `tx`, number `seq`
/// (seq 0: after every event of transactions before `tx`), retained since
/// `at_ms`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Position {
    pub tx: String,
    pub seq: i64,
    pub at_ms: i64,
}

/// The feed's cursors are bound to the organization, not to a filter.
fn feed_query() -> Fingerprint {
    Fingerprint::of("events").done()
}

fn sign(app: &AppState, org: Uuid, at: &Position) -> String {
    let after = After {
        key: format!("{}:{}", at.tx, at.seq),
        id: Uuid::nil(),
    };
    app.cursors.sign_at(org, feed_query(), &after, at.at_ms)
}

/// The position a client's cursor names; 410 when the retention may have
/// deleted events after it.
fn open(app: &AppState, org: Uuid, text: &str) -> AppResult<Position> {
    let (after, at_ms) = app.cursors.open_unaged(text, org, feed_query())?;
    let broken = || invalid("the cursor's position is not valid");
    let (tx, seq) = after.key.split_once(':').ok_or_else(broken)?;
    if tx.is_empty() || !tx.bytes().all(|b| b.is_ascii_digit()) {
        return Err(broken().into());
    }
    let seq = seq.parse().map_err(|_| broken())?;
    let retention = i64::from(app.config.event_retention_days) * 86_400_000;
    if crate::http::cursor::now_ms().saturating_sub(at_ms) > retention {
        return Err(Problem::new(
            StatusCode::GONE,
            "cursor_expired",
            format!(
                "events are kept {} days and some after this cursor may be gone: \
                 start again without after (from the oldest event kept)",
                app.config.event_retention_days
            ),
        )
        .into());
    }
    Ok(Position {
        tx: tx.to_owned(),
        seq,
        at_ms,
    })
}

/// `types=a,b` as the list `api.events_list` checks; empty: no filter.
fn types(text: Option<&str>) -> Option<Vec<String>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    Some(text.split(',').map(|t| t.trim().to_owned()).collect())
}

/// A page as `api.events_list` returns it.
#[derive(Deserialize)]
struct DbPage {
    items: Vec<Box<RawValue>>,
    positions: Vec<(String, i64, i64)>,
    next: (String, i64, i64),
    held: bool,
}

fn position((tx, seq, at_ms): (String, i64, i64)) -> Position {
    Position { tx, seq, at_ms }
}

/// Where a read starts.
#[derive(Clone, Copy)]
enum From<'a> {
    /// The oldest event kept.
    Start,
    After(&'a Position),
    /// The horizon: no events, the position of now.
    Now,
}

async fn read(
    app: &AppState,
    ctx: Ctx,
    from: From<'_>,
    types: Option<&Vec<String>>,
    limit: i32,
) -> AppResult<DbPage> {
    let (tx, seq) = match from {
        From::After(a) => (Some(Xid8(a.tx.clone())), Some(a.seq)),
        From::Start | From::Now => (None, None),
    };
    let now = matches!(from, From::Now);
    let types: Option<Vec<&str>> = types.map(|t| t.iter().map(String::as_str).collect());
    let json = JsonText::call(
        &app.db,
        ctx,
        "api.events_list",
        &[
            ("p_after_tx", &tx),
            ("p_after_seq", &seq),
            ("p_types", &types),
            ("p_limit", &limit),
            ("p_from_now", &now),
        ],
    )
    .await?;
    Ok(serde_json::from_str(&json.0).map_err(anyhow::Error::from)?)
}

/// The organization's events after a cursor, oldest first.
#[utoipa::path(get, operation_id = "events_list", path = "/events", tag = "events",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, FeedQuery),
    responses(
        (status = 200, description = "Events of committed transactions, oldest first; \
            following next_cursor passes each exactly once", body = FeedPage),
        (status = 400, description = "`invalid_cursor`, `event_type_unknown`, a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a member of the organization: `organization_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is older than the retention: `cursor_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> AppResult<JsonText> {
    let org = ctx.org_id.expect("an organization context");
    let after = q.after.as_deref().map(|t| open(&app, org, t)).transpose()?;
    let types = types(q.types.as_deref());
    let from = after.as_ref().map_or(From::Start, From::After);
    let page = read(&app, ctx, from, types.as_ref(), q.limit.0).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        items: &'a [Box<RawValue>],
        next_cursor: String,
    }
    let out = Out {
        items: &page.items,
        next_cursor: sign(&app, org, &position(page.next)),
    };
    Ok(JsonText(
        serde_json::to_string(&out).map_err(anyhow::Error::from)?,
    ))
}

/// The live streams open on this instance, per organization.
pub struct StreamSlots {
    open: Mutex<HashMap<Uuid, u32>>,
    /// True once the server stops: every stream ends, so that draining the
    /// connections does not wait for clients that never hang up.
    closing: watch::Sender<bool>,
}

impl Default for StreamSlots {
    fn default() -> Self {
        Self {
            open: Mutex::default(),
            closing: watch::channel(false).0,
        }
    }
}

/// An open stream's place; it frees it when the stream ends.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    org: Uuid,
}

impl StreamSlots {
    fn enter(self: &Arc<Self>, org: Uuid, limit: u32) -> Result<StreamSlot, Box<Problem>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(org).or_insert(0);
        if *n >= limit {
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!("the organization has {limit} live streams open on this server already: close one, or follow GET /events"),
            );
            p.retry_after = Some(5);
            return Err(Box::new(p));
        }
        *n += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            org,
        })
    }

    /// How many streams `org` has open on this instance.
    pub fn open(&self, org: Uuid) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&org).copied().unwrap_or(0)
    }

    /// Ends every open stream (after the event it is sending) and any opened
    /// later: the server is stopping.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.org);
            }
        }
    }
}

/// Events a stream reads at once.
const STREAM_PAGE: i32 = 100;
/// While committed events wait behind an older running transaction, a
/// stream reads again after this, doubling up to half a second (the
/// transaction that ends may have written nothing, so no notification would
/// come): an event comes at most that long after the horizon passes it.
const HELD_FIRST_RETRY: Duration = Duration::from_millis(50);
const HELD_MAX_RETRY: Duration = Duration::from_millis(500);

struct Stream {
    app: AppState,
    ctx: Ctx,
    org_prefix: String,
    types: Option<Vec<String>>,
    at: Position,
    pending: VecDeque<(Box<RawValue>, Position)>,
    /// The last read filled its page: read again at once.
    more: bool,
    /// The wait before the next read while events are held back (None: none are).
    held: Option<Duration>,
    notices: broadcast::Receiver<Notice>,
    closing: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl Stream {
    fn take(&mut self, page: DbPage) {
        self.more = page.items.len() >= STREAM_PAGE as usize;
        self.held = match (page.held, self.held) {
            (false, _) => None,
            (true, None) => Some(HELD_FIRST_RETRY),
            (true, Some(d)) => Some((d * 2).min(HELD_MAX_RETRY)),
        };
        self.at = position(page.next);
        self.pending.extend(
            page.items
                .into_iter()
                .zip(page.positions.into_iter().map(position)),
        );
    }

    /// Waits for a reason to read: a notification about this organization,
    /// a listener reset, a held-back event's retry or the fallback poll.
    /// False: the server is stopping.
    async fn wait(&mut self) -> bool {
        let wait = self
            .held
            .unwrap_or(self.app.config.stream_poll_interval)
            .min(self.app.config.stream_poll_interval);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                notice = self.notices.recv() => match notice {
                    Ok(Notice::Notified(payload)) if !payload.starts_with(&self.org_prefix) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    // The listener is gone (the server is stopping): poll.
                    Err(RecvError::Closed) => { (&mut deadline).await; break }
                },
                () = &mut deadline => break,
                _ = self.closing.changed() => return false,
            }
        }
        // Notices that came meanwhile are answered by the same read.
        while !matches!(
            self.notices.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
        true
    }

    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, Self)> {
        loop {
            if let Some((json, at)) = self.pending.pop_front() {
                let org = self.ctx.org_id.expect("an organization context");
                let event = sse::Event::default()
                    .id(sign(&self.app, org, &at))
                    .data(json.get());
                return Some((Ok(event), self));
            }
            let closing = *self.closing.borrow();
            if closing || (!self.more && !self.wait().await) {
                return None;
            }
            match read(
                &self.app,
                self.ctx,
                From::After(&self.at),
                self.types.as_ref(),
                STREAM_PAGE,
            )
            .await
            {
                Ok(page) => self.take(page),
                Err(e) => {
                    // The stream stays open: the next wake reads again.
                    let problem = e.into_problem();
                    tracing::warn!(code = %problem.code, "live stream read failed");
                    self.more = false;
                    // A membership that ended (404) or a bad filter ends the stream.
                    if problem.status().is_client_error() {
                        return None;
                    }
                }
            }
        }
    }
}

/// The organization's events as they commit (Server-Sent Events).
///
/// Each event is `id: <cursor>` and `data: <the event's JSON>` (the default
/// `message` event type; `type` is in the JSON). A comment line comes after
/// 15 s without events. Resume with the `Last-Event-ID` header (browsers'
/// EventSource sends it) or `?after=`.
#[utoipa::path(get, operation_id = "events_stream", path = "/events/stream", tag = "events",
    security(("bearer" = [])),
    params(crate::http::routes::OrgHeader, StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: resume after it (wins over `after`)")),
    responses(
        (status = 200, description = "A stream of events, each within a second of its commit", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_cursor`, `event_type_unknown`, a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a member of the organization: `organization_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is older than the retention: `cursor_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`STREAMS_PER_ORG` streams of the organization are open on this server: `too_many_streams` (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> AppResult<Response> {
    let org = ctx.org_id.expect("an organization context");
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| invalid("Last-Event-ID is not a cursor"))?
                .to_owned(),
        ),
        None => q.after,
    };
    let after = resume.as_deref().map(|t| open(&app, org, t)).transpose()?;
    let slot = app.streams.enter(org, app.config.streams_per_org)?;
    // Subscribed before the first read: nothing committed after it is missed.
    let notices = app.listener.subscribe(EVENTS);
    let closing = app.streams.closing.subscribe();
    let types = types(q.types.as_deref());
    let mut state = Stream {
        app: app.clone(),
        ctx,
        org_prefix: format!("{org}:"),
        types,
        at: Position {
            tx: String::new(),
            seq: 0,
            at_ms: 0,
        },
        pending: VecDeque::new(),
        more: false,
        held: None,
        notices,
        closing,
        _slot: slot,
    };
    // The first read checks the filter and the membership before the answer
    // starts. Without a cursor the stream starts at the horizon (now).
    match &after {
        Some(at) => {
            let page = read(
                &app,
                ctx,
                From::After(at),
                state.types.as_ref(),
                STREAM_PAGE,
            )
            .await?;
            state.take(page);
        }
        None => {
            let page = read(&app, ctx, From::Now, state.types.as_ref(), 1).await?;
            state.at = position(page.next);
        }
    }
    let stream = futures_util::stream::unfold(state, Stream::next);
    Ok(Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(app.config.stream_heartbeat)
                .text("heartbeat"),
        )
        .into_response())
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(stream))
}
