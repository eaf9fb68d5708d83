//! The change feed (SPEC §13): `GET /events` (order, pages, cursors, types,
//! retention), its notifications through the listener, the proof under
//! concurrent writers, and the live stream `GET /events/stream`.
//!
//! Most of these tests insert events directly as the superuser
//! ([`write_event`]), each insert being what one change of a record writes,
//! so they control types and timing; the triggers that write the events of
//! real changes are tested in tests/api/history.rs and pgTAP 45_events. The
//! proof under concurrent writers uses real writes (contacts created through
//! `api.contacts_create`).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    body::{Body, BodyDataStream},
    http::{header, Request, StatusCode},
};
use futures_util::StreamExt;
use minicrm::workers::listener::{Notice, EVENTS};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::{connect, TestApp, TestUser};

/// One change's event of `org`, as the superuser, in its own transaction.
async fn event(app: &TestApp, org: Uuid, type_: &str) -> Uuid {
    write_event(&app.sql().await, org, type_).await
}

/// Inserts the event one change writes (the triggers' job, on the events
/// branch) on `client`, inside whatever transaction it is in; returns its
/// resource id. The one place the tests write events.
async fn write_event(client: &tokio_postgres::Client, org: Uuid, type_: &str) -> Uuid {
    let resource = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data) \
             VALUES ($1, $2, split_part($2, '.', 1), $3, '{\"object\": {}}')",
            &[&org, &type_, &resource],
        )
        .await
        .expect("inserting an event");
    resource
}

/// Deletes the events `orgs` have so far (registering a user writes
/// `pipeline.created` and `member.added`, adding a member `member.added`),
/// so a test of the feed's mechanics reads only the events it writes.
async fn forget(app: &TestApp, orgs: &[Uuid]) {
    app.sql()
        .await
        .execute(
            "DELETE FROM crm.events WHERE organization_id = ANY($1)",
            &[&orgs],
        )
        .await
        .expect("deleting the setup's events");
}

/// Waits until every transaction that began before has ended, so the events
/// committed so far are below the feed's horizon. The horizon is the
/// cluster's: the tests running beside this one (in other databases) hold
/// it back while their transactions run.
async fn settle(app: &TestApp) {
    let client = app.sql().await;
    let mine: String = client
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    // Generous: on a loaded machine a neighbour's import or export can hold
    // the horizon back for tens of seconds, and passing returns at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let passed: bool = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8",
                &[&mine],
            )
            .await
            .unwrap()
            .get(0);
        if passed {
            return;
        }
        assert!(Instant::now() < deadline, "the horizon did not pass {mine}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn resources(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn cursor(page: &Value) -> String {
    page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_cursor in {page}"))
        .to_owned()
}

#[tokio::test]
async fn the_feed_pages_in_order_and_its_cursor_belongs_to_the_organization() {
    let app = TestApp::spawn().await;
    let owner = app.user("feed-owner").await;
    let other = app.user("feed-other").await;
    let member = app.member_of(&owner, "feed-member", "member").await;
    forget(&app, &[owner.org_id, other.org_id]).await;
    let mut mine = Vec::new();
    for t in [
        "contact.created",
        "deal.created",
        "deal.updated",
        "task.created",
        "member.added",
    ] {
        mine.push(event(&app, owner.org_id, t).await);
    }
    let theirs = event(&app, other.org_id, "deal.created").await;
    settle(&app).await;

    // Every role reads the whole feed, oldest first, only its organization's.
    let all = member.read("/api/v1/events").await;
    assert_eq!(resources(&all), mine);
    let first = &all["items"][0];
    assert_eq!(first["type"], "contact.created");
    for field in ["id", "occurred_at", "actor_id", "resource_id", "data"] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(resources(&other.read("/api/v1/events").await), [theirs]);

    // Pages of two, following next_cursor; a cursor works with any types.
    let p1 = owner.read("/api/v1/events?limit=2").await;
    assert_eq!(resources(&p1), mine[..2]);
    let p2 = owner
        .read(&format!("/api/v1/events?limit=2&after={}", cursor(&p1)))
        .await;
    assert_eq!(resources(&p2), mine[2..4]);
    let rest = owner
        .read(&format!(
            "/api/v1/events?types=member.*,contact.created&after={}",
            cursor(&p2)
        ))
        .await;
    assert_eq!(resources(&rest), mine[4..]);
    // The end: an empty page, and a cursor to poll again with.
    let idle = owner
        .read(&format!("/api/v1/events?after={}", cursor(&rest)))
        .await;
    assert!(resources(&idle).is_empty());
    let later = event(&app, owner.org_id, "deal.deleted").await;
    settle(&app).await;
    let polled = owner
        .read(&format!("/api/v1/events?after={}", cursor(&idle)))
        .await;
    assert_eq!(resources(&polled), [later]);

    // Types: exact and patterns.
    let deals = owner.read("/api/v1/events?types=deal.*,task.created").await;
    assert_eq!(resources(&deals), [mine[1], mine[2], mine[3], later]);

    // Bad input.
    owner
        .get("/api/v1/events?types=deal.*,deal.merged")
        .await
        .field(400, "event_type_unknown");
    owner
        .get("/api/v1/events?types=*")
        .await
        .problem(400, "event_type_unknown");
    for limit in ["0", "501", "x"] {
        owner
            .get(&format!("/api/v1/events?limit={limit}"))
            .await
            .problem(400, "invalid_query_parameter");
    }
    let text = cursor(&p1);
    other
        .get(&format!("/api/v1/events?after={text}"))
        .await
        .problem(400, "invalid_cursor");
    let mut bytes = crate::helpers::base64url_decode(&text);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = crate::helpers::base64url_encode(&bytes);
    owner
        .get(&format!("/api/v1/events?after={tampered}"))
        .await
        .problem(400, "invalid_cursor");
    owner
        .get(&format!("/api/v1/events?after={}", &text[..text.len() - 4]))
        .await
        .problem(400, "invalid_cursor");
    owner
        .get("/api/v1/events?after=AAAA")
        .await
        .problem(400, "invalid_cursor");
}

#[tokio::test]
async fn a_cursor_past_the_retention_is_gone_and_an_idle_one_stays_fresh() {
    let app = TestApp::spawn().await;
    let owner = app.user("retained").await;
    forget(&app, &[owner.org_id]).await;
    // Two events of 40 days ago (older than the 30 days kept), one of today.
    app.sql()
        .await
        .execute(
            "INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data, occurred_at) \
             SELECT $1, 'deal.created', 'deal', gen_random_uuid(), '{}', now() - interval '40 days' \
               FROM generate_series(1, 2)",
            &[&owner.org_id],
        )
        .await
        .unwrap();
    event(&app, owner.org_id, "deal.updated").await;
    settle(&app).await;
    // A page that stops inside the old history: its cursor is as old as the
    // event it follows, and the events after it may be deleted any time.
    let old = owner.read("/api/v1/events?limit=1").await;
    owner
        .get(&format!("/api/v1/events?after={}", cursor(&old)))
        .await
        .problem(410, "cursor_expired");
    // Reading on from the start: the cursor at the end is fresh.
    let all = owner.read("/api/v1/events").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    owner
        .read(&format!("/api/v1/events?after={}", cursor(&all)))
        .await;
}

#[tokio::test]
async fn notifications_come_once_per_organization_and_resource_at_commit_and_never_for_a_rollback()
{
    let app = TestApp::spawn().await;
    let owner = app.user("notified").await;
    let other = app.user("notified-other").await;
    let listener = &app.state.listener;
    listener.ready(0).await;
    let mut notices = listener.subscribe(EVENTS);
    // The setup's own notifications (registering writes events) may still
    // be on their way: let them pass.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), notices.recv()).await {}

    let client = app.sql().await;
    client.batch_execute("BEGIN").await.unwrap();
    write_event(&client, owner.org_id, "deal.created").await;
    write_event(&client, owner.org_id, "deal.updated").await;
    write_event(&client, owner.org_id, "contact.created").await;
    write_event(&client, other.org_id, "deal.created").await;
    // Nothing before the commit.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notices.recv())
            .await
            .is_err(),
        "a notification before the commit"
    );
    client.batch_execute("COMMIT").await.unwrap();
    let mut got = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), notices.recv()).await {
        got.push(n);
    }
    let mut expected = vec![
        Notice::Notified(format!("{}:deal", owner.org_id).into()),
        Notice::Notified(format!("{}:contact", owner.org_id).into()),
        Notice::Notified(format!("{}:deal", other.org_id).into()),
    ];
    got.sort_by_key(|n| format!("{n:?}"));
    expected.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(
        got, expected,
        "one notification per (organization, resource)"
    );

    // One statement inserting several events: one notification too.
    client
        .execute(
            "INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data) \
             SELECT $1, 'task.created', 'task', gen_random_uuid(), '{}' FROM generate_series(1, 5)",
            &[&owner.org_id],
        )
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), notices.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(n, Notice::Notified(format!("{}:task", owner.org_id).into()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notices.recv())
            .await
            .is_err(),
        "one statement, one notification"
    );

    // A rollback sends nothing.
    client.batch_execute("BEGIN").await.unwrap();
    write_event(&client, owner.org_id, "deal.deleted").await;
    client.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), notices.recv())
            .await
            .is_err(),
        "a notification for a rollback"
    );
}

#[tokio::test]
async fn the_listener_reconnects_and_tells_its_subscribers_to_start_over() {
    let app = TestApp::spawn().await;
    let owner = app.user("reconnected").await;
    let listener = &app.state.listener;
    listener.ready(0).await;
    let before = listener.connections();
    let mut notices = listener.subscribe(EVENTS);
    // The setup's own notifications (registering writes events) may still
    // be on their way: let them pass.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), notices.recv()).await {}
    // PostgreSQL ends the listener's session (as a restart would).
    let killed: i64 = app
        .value(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
              WHERE application_name = 'minicrm-listener' AND datname = current_database()",
            &[],
        )
        .await;
    assert_eq!(killed, 1);
    tokio::time::timeout(Duration::from_secs(5), listener.ready(before))
        .await
        .expect("the listener listens again");
    let reset = tokio::time::timeout(Duration::from_secs(1), notices.recv())
        .await
        .expect("a notice")
        .unwrap();
    assert_eq!(reset, Notice::Reset, "anything may have changed");
    // The session was the announcer too: its successor (the same listener,
    // reconnected) says "anything may have changed" once more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    event(&app, owner.org_id, "deal.created").await;
    let n = loop {
        let n = tokio::time::timeout(Duration::from_secs(2), notices.recv())
            .await
            .expect("notifications again")
            .unwrap();
        if n != Notice::Reset {
            break n;
        }
    };
    assert_eq!(n, Notice::Notified(format!("{}:deal", owner.org_id).into()));
}

/// The proof: many concurrent writer transactions, some slow to
/// commit and some rolled back, against a follower polling the feed as fast
/// as it can. The follower sees every committed event exactly once and none
/// of the rolled-back ones; a follower of `seq > last` (from the same table)
/// misses some, so the test is sharp.
#[tokio::test]
async fn a_follower_sees_every_committed_event_exactly_once_under_concurrent_writers() {
    const WRITERS: usize = 12;
    const TRANSACTIONS: usize = 25;
    let app = TestApp::spawn().await;
    let owner = app.user("follower").await;
    forget(&app, &[owner.org_id]).await;
    let org = owner.org_id;
    let done = Arc::new(AtomicBool::new(false));
    let settled = Arc::new(AtomicBool::new(false));

    let user = owner.id;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = connect(&app.db_url).await;
        writers.push(tokio::spawn(async move {
            let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
            for t in 0..TRANSACTIONS {
                let dice = Uuid::new_v4().as_u128();
                let events = 1 + (dice % 3) as usize;
                let slow = (dice >> 8) % 4 == 0;
                let rollback = (dice >> 16) % 8 == 0;
                client.batch_execute("BEGIN").await.unwrap();
                let mut ids = Vec::new();
                for _ in 0..events {
                    // A real write: the contact's own event trigger writes
                    // contact.created, whose resource is the contact.
                    let row = client
                        .query_one(
                            "SELECT (api.contacts_create(p_name => 'Writer')->>'id')::uuid \
                             FROM app.act_as($1, $2)",
                            &[&user, &org],
                        )
                        .await
                        .unwrap();
                    ids.push(row.get::<_, Uuid>(0));
                }
                if slow {
                    // Slow to commit: later transactions commit first.
                    let ms = 50 + ((dice >> 24) % 250) as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if rollback {
                    client.batch_execute("ROLLBACK").await.unwrap();
                    rolled_back.extend(ids);
                } else {
                    client.batch_execute("COMMIT").await.unwrap();
                    committed.extend(ids);
                }
                let _ = (w, t);
            }
            (committed, rolled_back)
        }));
    }

    // The naive follower: `seq > last`, straight from the table.
    let naive = {
        let client = connect(&app.db_url).await;
        let done = done.clone();
        tokio::spawn(async move {
            let (mut last, mut seen) = (0i64, HashSet::new());
            loop {
                let finished = done.load(Ordering::SeqCst);
                let rows = client
                    .query(
                        "SELECT resource_id, seq FROM crm.events WHERE organization_id = $1 AND seq > $2 ORDER BY seq",
                        &[&org, &last],
                    )
                    .await
                    .unwrap();
                for r in &rows {
                    seen.insert(r.get::<_, Uuid>(0));
                    last = last.max(r.get(1));
                }
                if finished {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // The follower: GET /events with next_cursor, as fast as it can. Once
    // the writers are done it goes on until the horizon has passed their
    // last transaction (the tests beside this one hold it back too), then
    // reads once more.
    let follower = {
        let owner = owner.clone();
        let settled = settled.clone();
        tokio::spawn(async move {
            let (mut seen, mut after, mut polls) = (Vec::new(), None::<String>, 0);
            loop {
                let finished = settled.load(Ordering::SeqCst);
                let path = match &after {
                    None => "/api/v1/events?limit=500".to_owned(),
                    Some(c) => format!("/api/v1/events?limit=500&after={c}"),
                };
                let page = owner.read(&path).await;
                polls += 1;
                let items = resources(&page);
                let full = items.len() == 500;
                seen.extend(items);
                after = Some(cursor(&page));
                if finished && !full {
                    return (seen, polls);
                }
            }
        })
    };

    let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
    for w in writers {
        let (c, r) = w.await.unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    done.store(true, Ordering::SeqCst);
    settle(&app).await;
    settled.store(true, Ordering::SeqCst);
    let (seen, polls) = follower.await.unwrap();
    let naive_seen = naive.await.unwrap();

    let committed_set: HashSet<Uuid> = committed.iter().copied().collect();
    let seen_set: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "an event seen twice");
    let missed: Vec<_> = committed_set.difference(&seen_set).collect();
    assert!(missed.is_empty(), "the follower missed {missed:?}");
    assert!(
        rolled_back.iter().all(|id| !seen_set.contains(id)),
        "a rolled-back event was seen"
    );
    assert_eq!(seen_set, committed_set);
    // Seen in (tx, seq) order.
    let rows = app
        .sql()
        .await
        .query(
            "SELECT resource_id, tx::text::numeric, seq FROM crm.events WHERE organization_id = $1",
            &[&org],
        )
        .await
        .unwrap();
    let place: HashMap<Uuid, (rust_decimal::Decimal, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert!(
        seen.windows(2).all(|w| place[&w[0]] < place[&w[1]]),
        "the follower saw events out of (tx, seq) order"
    );
    let naive_missed = committed_set.difference(&naive_seen).count();
    assert!(
        naive_missed > 0,
        "the naive seq follower missed nothing: the test would not catch a plain sequence cursor \
         ({} committed events, {polls} polls)",
        committed.len()
    );
    eprintln!(
        "feed proof: {} committed events ({} rolled back) in {} transactions; the follower saw all \
         in {polls} polls, a seq > last follower missed {naive_missed}",
        committed.len(),
        rolled_back.len(),
        WRITERS * TRANSACTIONS
    );
}

// ---- the live stream ----

/// One Server-Sent Events frame.
#[derive(Debug, Default)]
struct Frame {
    id: Option<String>,
    data: Option<String>,
    comment: bool,
}

struct Sse {
    body: BodyDataStream,
    buffer: String,
}

impl Sse {
    /// The next frame, or None if none comes within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data = Some(v.trim_start().to_owned());
                    } else if line.starts_with(':') {
                        frame.comment = true;
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline.into(), self.body.next())
                .await
                .ok()??
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event (skipping heartbeats): its id and its JSON.
    async fn event(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            let frame = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if let (Some(id), Some(data)) = (frame.id, frame.data) {
                return Some((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
}

/// Opens `GET /events/stream<query>` as `user`; the answer's status and, on
/// 200, the stream.
async fn open(
    app: &TestApp,
    user: &TestUser,
    query: &str,
    last_event_id: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Option<Sse>) {
    let mut req = Request::get(format!("/api/v1/events/stream{query}"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", user.access_token),
        )
        .header("X-Organization-Id", user.acting_org.unwrap().to_string());
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let res = app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    if status != StatusCode::OK {
        return (status, headers, None);
    }
    let sse = Sse {
        body: res.into_body().into_data_stream(),
        buffer: String::new(),
    };
    (status, headers, Some(sse))
}

#[tokio::test]
async fn the_stream_sends_events_in_order_as_they_commit_and_resumes_from_last_event_id() {
    let app = TestApp::spawn_with(|c| c.stream_heartbeat = Duration::from_millis(200)).await;
    let owner = app.user("streamer").await;
    let other = app.user("streamer-other").await;
    app.state.listener.ready(0).await;
    let before = event(&app, owner.org_id, "deal.created").await;
    // Below the horizon before the stream opens (else "from now on", which
    // starts at the horizon, includes it).
    settle(&app).await;

    let (status, headers, sse) = open(&app, &owner, "", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let mut sse = sse.unwrap();
    // A heartbeat (a comment line) while nothing happens.
    let frame = sse.next(Duration::from_secs(2)).await.expect("a heartbeat");
    assert!(frame.comment && frame.data.is_none(), "{frame:?}");

    // Without a cursor: from now on (not the event of before). Each event
    // within a second of its commit, in order; organization B's never.
    let (mut sent, mut ids) = (Vec::new(), Vec::new());
    for t in ["deal.updated", "contact.created", "task.created"] {
        event(&app, other.org_id, "deal.updated").await;
        let committed = Instant::now();
        let resource = event(&app, owner.org_id, t).await;
        let (id, e) = sse.event(Duration::from_secs(3)).await.expect("an event");
        assert!(
            committed.elapsed() < Duration::from_secs(1),
            "{t} came {:?} after its commit",
            committed.elapsed()
        );
        assert_eq!(e["resource_id"], resource.to_string());
        assert_eq!(e["type"], t);
        sent.push(resource);
        ids.push(id);
    }
    assert!(!sent.contains(&before));

    // Resume after the first with Last-Event-ID (which wins over ?after=).
    let (_, _, resumed) = open(&app, &owner, &format!("?after={}", ids[2]), Some(&ids[0])).await;
    let mut resumed = resumed.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let (_, e) = resumed
            .event(Duration::from_secs(3))
            .await
            .expect("an event");
        got.push(e["resource_id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    assert_eq!(got, sent[1..], "resumed after the first event, in order");
    // ?after= without Last-Event-ID, with a filter.
    let (_, _, filtered) = open(
        &app,
        &owner,
        &format!("?after={}&types=deal.*", ids[0]),
        None,
    )
    .await;
    let mut filtered = filtered.unwrap();
    let deal = event(&app, owner.org_id, "deal.deleted").await;
    let (_, e) = filtered
        .event(Duration::from_secs(3))
        .await
        .expect("an event");
    assert_eq!(
        e["resource_id"],
        deal.to_string(),
        "only deal.* after the first"
    );
    // The feed's cursors and the stream's ids are the same thing.
    settle(&app).await;
    let page = owner
        .read(&format!("/api/v1/events?after={}", ids[1]))
        .await;
    assert_eq!(resources(&page), [sent[2], deal]);

    // Bad cursors and filters are answered before the stream starts.
    let (status, _, _) = open(&app, &owner, "?types=nope.*", None).await;
    assert_eq!(status, 400);
    let (status, _, _) = open(&app, &owner, "", Some("garbage")).await;
    assert_eq!(status, 400);
    let (status, _, _) = open(&app, &other, "", Some(&ids[0])).await;
    assert_eq!(status, 400, "another organization's cursor");
}

#[tokio::test]
async fn an_organization_has_at_most_streams_per_org_open_streams_and_a_stop_ends_them() {
    let app = TestApp::spawn_with(|c| c.streams_per_org = 2).await;
    let owner = app.user("limited").await;
    let other = app.user("limited-other").await;
    let (_, _, a) = open(&app, &owner, "", None).await;
    let (_, _, b) = open(&app, &owner, "", None).await;
    assert!(a.is_some() && b.is_some());
    let (status, headers, _) = open(&app, &owner, "", None).await;
    assert_eq!(status, 429);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert!(headers.contains_key(header::RETRY_AFTER));
    let res = owner.get("/api/v1/events/stream").await;
    res.problem(429, "too_many_streams");
    // Another organization is not held back.
    let (status, _, c) = open(&app, &other, "", None).await;
    assert_eq!(status, 200);
    // Closing a stream frees its place.
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, d) = open(&app, &owner, "", None).await;
    assert_eq!(status, 200);
    drop(b);

    // A stopping server ends every stream, so draining does not wait for them.
    app.state.streams.close_all();
    for mut sse in [c.unwrap(), d.unwrap()] {
        let end = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(chunk) = sse.body.next().await {
                chunk.unwrap();
            }
        })
        .await;
        assert!(end.is_ok(), "a stream outlived the server's stop");
    }
}

#[tokio::test]
async fn a_stream_catches_up_by_polling_when_a_notification_is_lost() {
    let app = TestApp::spawn_with(|c| c.stream_poll_interval = Duration::from_millis(300)).await;
    let owner = app.user("polled").await;
    forget(&app, &[owner.org_id]).await;
    app.state.listener.ready(0).await;
    let (_, _, sse) = open(&app, &owner, "", None).await;
    let mut sse = sse.unwrap();
    // The trigger does not fire in replica mode: no notification.
    let client = app.sql().await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let id = write_event(&client, owner.org_id, "deal.created").await;
    let (_, e) = sse
        .event(Duration::from_secs(2))
        .await
        .expect("the fallback poll");
    assert_eq!(e["resource_id"], id.to_string());
}

#[tokio::test]
async fn an_event_held_behind_an_older_transaction_comes_within_a_second_of_its_end() {
    // No fallback poll to speak of: only the retries of held events.
    let app = TestApp::spawn_with(|c| c.stream_poll_interval = Duration::from_secs(60)).await;
    let owner = app.user("held").await;
    forget(&app, &[owner.org_id]).await;
    app.state.listener.ready(0).await;
    let (_, _, sse) = open(&app, &owner, "", None).await;
    let mut sse = sse.unwrap();
    // An older transaction that writes no event (so no notification when it
    // ends) holds the horizon back.
    let blocker = app.sql().await;
    blocker
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    let held = event(&app, owner.org_id, "deal.updated").await;
    assert!(
        sse.event(Duration::from_millis(400)).await.is_none(),
        "an event above the horizon was sent"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    let ended = Instant::now();
    let (_, e) = sse
        .event(Duration::from_secs(3))
        .await
        .expect("the held event");
    assert_eq!(e["resource_id"], held.to_string());
    assert!(
        ended.elapsed() < Duration::from_secs(1),
        "{:?} after the end",
        ended.elapsed()
    );
}
