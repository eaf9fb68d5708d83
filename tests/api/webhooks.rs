//! Webhooks (SPEC §13, README "Webhooks"): the management API, and the
//! delivery worker against a local receiver (axum on port 0, so these tests
//! allow private networks): signatures checked with the documented
//! algorithm, retries, 410, redirects, timeouts, a hanging endpoint,
//! rotation, the test delivery and two instances on one database. Events are
//! inserted as the superuser (only the event triggers write them).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
    Router,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use minicrm::ops::config::Config;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::helpers::{id_of, TestApp, TestUser};

/// What the receiver got: one entry per request.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Requests seen per path (for /flaky/{n}).
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

/// `/ok/..` 200; `/flaky/{n}/..` 500 for the first n requests then 200;
/// `/gone` 410; `/redirect` 302 to /ok/redirected; `/hang` never answers.
async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.hits.lock().unwrap().push(Hit {
        path: path.clone(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
    });
    let n = {
        let mut seen = r.seen.lock().unwrap();
        let n = seen.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let mut parts = path.split('/');
    match parts.next() {
        Some("flaky") => {
            let fails: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
            if n <= fails {
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
        Some("gone") => StatusCode::GONE.into_response(),
        Some("redirect") => (StatusCode::FOUND, [("location", "/ok/redirected")]).into_response(),
        Some("hang") => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

impl Receiver {
    /// Starts it; returns it and its base URL.
    async fn start() -> (Self, String) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn hits(&self, prefix: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until `prefix` has at least `n` hits (or fails after `secs`).
    async fn wait(&self, prefix: &str, n: usize, secs: u64) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits(prefix);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix}: {} hits of {n} after {secs} s",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The receiver's check, as the README documents it.
fn verifies(secret: &str, hit: &Hit) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", hit.id, hit.timestamp, hit.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    hit.signature
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// Settings for deliveries to a local receiver, with a fast backoff.
fn local(config: &mut Config) {
    let w = &mut config.webhooks;
    w.allow_private_networks = true;
    w.backoff_scale = 0.01;
    w.poll_interval = Duration::from_millis(100);
    w.timeout = Duration::from_millis(1500);
}

/// The worker and its listener for `app`, until the sender is dropped or sends true.
fn start_worker(app: &TestApp) -> watch::Sender<bool> {
    let (stop, stopped) = watch::channel(false);
    let hooks = app.state.webhooks.clone().expect("webhooks configured");
    let wake = Arc::new(Notify::new());
    minicrm::workers::webhooks::listen(&app.state.listener, wake.clone(), stopped.clone());
    minicrm::workers::webhooks::spawn(app.state.db.clone(), hooks, wake, stopped);
    stop
}

async fn event(app: &TestApp, org: Uuid, kind: &str) -> Uuid {
    app.value(
        "INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data) \
         VALUES ($1, $2, split_part($2, '.', 1), gen_random_uuid(), '{\"object\": {\"n\": 1}, \"previous\": null}') RETURNING id",
        &[&org, &kind],
    )
    .await
}

/// Waits until the announcer's round has fanned `event` out (its position,
/// where the next round starts, is past the event's transaction).
async fn fanned_out(app: &TestApp, event: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !app
        .value::<bool>(
            "SELECT (SELECT position FROM private.events_announcer) > (SELECT tx FROM crm.events WHERE id = $1)",
            &[&event],
        )
        .await
    {
        assert!(Instant::now() < deadline, "event {event} never fanned out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscribe(user: &TestUser, url: &str, events: Value) -> Value {
    user.create("/api/v1/webhooks", json!({"url": url, "events": events}))
        .await
}

async fn deliveries(user: &TestUser, hook: Uuid) -> Vec<Value> {
    user.read(&format!("/api/v1/webhooks/{hook}/deliveries"))
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the webhook's newest delivery satisfies `done`.
async fn wait_delivery(user: &TestUser, hook: Uuid, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(d) = deliveries(user, hook).await.first() {
            if done(d) {
                return d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "delivery never settled as expected: {d}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deliveries_are_signed_and_retried_after_a_500() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);

    let created = owner
        .post("/api/v1/webhooks", json!({"url": format!("{base}/flaky/1"), "events": ["deal.*"], "description": "billing"}))
        .await;
    let body = created.ok(201).clone();
    let hook = id_of(&body);
    assert_eq!(
        created.headers["location"],
        format!("/api/v1/webhooks/{hook}")
    );
    assert_eq!(created.headers["etag"], "\"1\"");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(body.get("secret_sealed").is_none());
    // No read shows the secret again, and the database holds it only sealed.
    let read = owner.read(&format!("/api/v1/webhooks/{hook}")).await;
    assert!(read.get("secret").is_none() && read.get("secret_sealed").is_none());
    assert_eq!(read["events"], json!(["deal.*"]));
    let listed = owner.read("/api/v1/webhooks").await;
    assert!(!listed.to_string().contains(&secret[6..]));
    let stored: Vec<u8> = app
        .value(
            "SELECT secret_sealed FROM crm.webhooks WHERE id = $1",
            &[&hook],
        )
        .await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&secret[6..])
        .unwrap();
    assert!(!stored.windows(raw.len()).any(|w| w == raw.as_slice()));

    let id = event(&app, owner.org_id, "deal.updated").await;
    let hits = receiver.wait("flaky/1", 2, 15).await;
    assert_eq!(hits.len(), 2, "one 500, then one success");
    let json: Value = app
        .value(
            "SELECT app.event_json(e)::text::jsonb FROM crm.events e WHERE id = $1",
            &[&id],
        )
        .await;
    for hit in &hits {
        assert_eq!(
            hit.id,
            id.to_string(),
            "webhook-id is the event id, on every attempt"
        );
        assert!(verifies(&secret, hit), "signature: {hit:?}");
        assert_eq!(serde_json::from_str::<Value>(&hit.body).unwrap(), json);
        let ts: i64 = hit.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    }
    let d = wait_delivery(&owner, hook, |d| d["status"] == "delivered").await;
    assert_eq!(d["event_id"], id.to_string());
    assert_eq!(d["type"], "deal.updated");
    assert_eq!(d["attempt"], 2);
    assert_eq!(d["status_code"], 200);
    assert!(d["delivered_at"].is_string() && d["next_attempt_at"].is_null());
    assert_eq!(d["attempts"][0]["status_code"], 200);
    assert_eq!(d["attempts"][1]["status_code"], 500);
    assert_eq!(d["attempts"][1]["error"], "HTTP 500 Internal Server Error");
    // A type it does not subscribe to is not sent.
    event(&app, owner.org_id, "task.created").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits("flaky/1").len(), 2);
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_redirects_are_not_followed() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    let gone = id_of(&subscribe(&owner, &format!("{base}/gone"), json!(["deal.*"])).await);
    let moved = id_of(&subscribe(&owner, &format!("{base}/redirect"), json!(["deal.*"])).await);

    event(&app, owner.org_id, "deal.created").await;
    let d = wait_delivery(&owner, gone, |d| d["status"] == "failed").await;
    assert_eq!(
        (d["attempt"].clone(), d["status_code"].clone()),
        (json!(1), json!(410))
    );
    let hook = owner.read(&format!("/api/v1/webhooks/{gone}")).await;
    assert_eq!(
        (hook["enabled"].clone(), hook["disabled_reason"].clone()),
        (json!(false), json!("endpoint_gone"))
    );
    assert!(hook["disabled_at"].is_string());
    // Disabled: no new delivery, and a test delivery is refused.
    let later = event(&app, owner.org_id, "deal.updated").await;
    fanned_out(&app, later).await;
    owner
        .post(&format!("/api/v1/webhooks/{gone}/test"), json!({}))
        .await
        .problem(409, "webhook_disabled");
    assert_eq!(deliveries(&owner, gone).await.len(), 1);
    // Enabled again: the reason goes.
    let hook = owner
        .patch(
            &format!("/api/v1/webhooks/{gone}"),
            json!({"enabled": true}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(
        (hook["enabled"].clone(), hook["disabled_reason"].clone()),
        (json!(true), Value::Null)
    );

    // The redirect is a failure, retried, and its target is never asked.
    let d = wait_delivery(&owner, moved, |d| d["attempt"].as_i64() >= Some(2)).await;
    assert_eq!(d["attempts"][0]["status_code"], 302);
    assert!(d["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("redirects are not followed"));
    assert!(receiver.hits("ok/redirected").is_empty());
    assert_eq!(receiver.hits("gone").len(), 1);
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_and_does_not_stall_the_others() {
    let app = TestApp::spawn_with(|c| {
        local(c);
        c.webhooks.concurrency = 4;
        c.webhooks.concurrency_per_endpoint = 2;
        c.webhooks.timeout = Duration::from_millis(2000);
    })
    .await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    let hang = id_of(&subscribe(&owner, &format!("{base}/hang"), json!(["deal.*"])).await);
    subscribe(&owner, &format!("{base}/ok/fast"), json!(["deal.*"])).await;
    let started = Instant::now();
    for _ in 0..6 {
        event(&app, owner.org_id, "deal.updated").await;
    }
    // Every event reaches the healthy endpoint while the other hangs.
    receiver.wait("ok/fast", 6, 10).await;
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "stalled: {:?}",
        started.elapsed()
    );
    assert!(
        receiver.hits("hang").len() <= 2,
        "at most 2 in flight to one endpoint"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let timed_out = loop {
        let found = deliveries(&owner, hang)
            .await
            .iter()
            .flat_map(|d| d["attempts"].as_array().unwrap().clone())
            .find(|a| a["error"].as_str().is_some_and(|e| e.contains("timed out")));
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "no attempt timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(timed_out["status_code"].is_null());
    assert!(timed_out["duration_ms"].as_i64().unwrap() >= 1900);
}

#[tokio::test]
async fn after_a_rotation_deliveries_are_signed_with_the_new_secret_only() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    let hook = subscribe(
        &owner,
        &format!("{base}/ok/rotated"),
        json!(["contact.created"]),
    )
    .await;
    let old = hook["secret"].as_str().unwrap().to_owned();
    let rotated = owner
        .post(
            &format!("/api/v1/webhooks/{}/rotate-secret", id_of(&hook)),
            json!({}),
        )
        .await
        .ok(200)
        .clone();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert_eq!(rotated["version"], 2);
    event(&app, owner.org_id, "contact.created").await;
    let hits = receiver.wait("ok/rotated", 1, 10).await;
    assert!(verifies(&new, &hits[0]));
    assert!(!verifies(&old, &hits[0]));
}

#[tokio::test]
async fn a_test_delivery_goes_to_that_endpoint_only_and_not_to_the_feed() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    let hook = subscribe(&owner, &format!("{base}/ok/one"), json!(["deal.*"])).await;
    subscribe(&owner, &format!("{base}/ok/other"), json!(["deal.*"])).await;
    let queued = owner
        .post(
            &format!("/api/v1/webhooks/{}/test", id_of(&hook)),
            json!({}),
        )
        .await
        .ok(202)
        .clone();
    assert_eq!(
        (queued["type"].clone(), queued["status"].clone()),
        (json!("webhook.test"), json!("pending"))
    );
    let hits = receiver.wait("ok/one", 1, 10).await;
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["type"], "webhook.test");
    assert_eq!(body["resource_id"], hook["id"]);
    assert_eq!(body["data"]["object"]["url"], hook["url"]);
    assert!(verifies(hook["secret"].as_str().unwrap(), &hits[0]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.hits("ok/other").is_empty());
    let events: i64 = app
        .value(
            "SELECT count(*) FROM crm.events WHERE type = 'webhook.test'",
            &[],
        )
        .await;
    assert_eq!(events, 0, "a test event is in no feed");
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    let first = TestApp::spawn_with(local).await;
    let mut config = Config::for_database(first.db_url.clone());
    local(&mut config);
    let second = TestApp::with_config(config);
    let owner = first.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _a = start_worker(&first);
    let _b = start_worker(&second);
    subscribe(
        &owner,
        &format!("{base}/ok/shared"),
        json!(["deal.*", "task.*"]),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            event(
                &first,
                owner.org_id,
                if i % 2 == 0 {
                    "deal.updated"
                } else {
                    "task.created"
                },
            )
            .await,
        );
    }
    receiver.wait("ok/shared", 40, 20).await;
    // Time for a duplicate to show, if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits("ok/shared");
    let mut got: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
    got.sort();
    let mut want: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(got, want, "every event exactly once");
    let claimers: i64 = first
        .value(
            "SELECT count(*) FROM crm.webhook_deliveries WHERE status = 'delivered'",
            &[],
        )
        .await;
    assert_eq!(claimers, 40);
}

#[tokio::test]
async fn owners_and_admins_manage_webhooks_with_validation_and_versions() {
    let app = TestApp::spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let owner = app.user("olga").await;
    let admin = app.member_of(&owner, "adam", "admin").await;
    let manager = app.member_of(&owner, "mia", "manager").await;
    let url = "https://hooks.example.com/in";
    for who in [&manager] {
        who.post(
            "/api/v1/webhooks",
            json!({"url": url, "events": ["deal.*"]}),
        )
        .await
        .problem(403, "role_forbidden");
        who.get("/api/v1/webhooks")
            .await
            .problem(403, "role_forbidden");
    }
    let hook = subscribe(&admin, url, json!(["deal.*", "task.created"])).await;
    let path = format!("/api/v1/webhooks/{}", id_of(&hook));
    manager.get(&path).await.problem(403, "role_forbidden");
    manager
        .patch(&path, json!({"enabled": false}))
        .await
        .problem(403, "role_forbidden");
    manager.delete(&path).await.problem(403, "role_forbidden");
    manager
        .post(&format!("{path}/rotate-secret"), json!({}))
        .await
        .problem(403, "role_forbidden");

    for (body, code, field) in [
        (
            json!({"url": url, "events": ["deal.exploded"]}),
            "webhook_events_invalid",
            "events",
        ),
        (
            json!({"url": url, "events": []}),
            "webhooks_events_invalid",
            "events",
        ),
        (
            json!({"url": url, "events": ["deal.*"], "description": "x".repeat(501)}),
            "webhooks_description_invalid",
            "description",
        ),
        (
            json!({"url": "ftp://hooks.example.com/", "events": ["deal.*"]}),
            "webhooks_url_invalid",
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["deal.*"]}),
            "webhooks_url_invalid",
            "url",
        ),
    ] {
        let res = owner.post("/api/v1/webhooks", body).await;
        assert_eq!(res.field(400, code), field);
    }

    // PATCH with If-Match: versions and ETags.
    let res = owner
        .req(axum::http::Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(json!({"description": "crm → billing", "events": ["contact.*"]}))
        .send()
        .await;
    assert_eq!(res.headers["etag"], "\"2\"");
    assert_eq!(res.ok(200)["events"], json!(["contact.*"]));
    owner
        .req(axum::http::Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(json!({"enabled": false}))
        .send()
        .await
        .problem(412, "precondition_failed");
    let off = owner
        .patch(&path, json!({"enabled": false}))
        .await
        .ok(200)
        .clone();
    assert_eq!(off["disabled_reason"], "disabled_by_user");
    owner
        .patch(&path, json!({"url": null}))
        .await
        .problem(400, "value_required");

    // The list is paginated like the others.
    subscribe(&owner, "https://hooks.example.com/2", json!(["deal.*"])).await;
    subscribe(&owner, "https://hooks.example.com/3", json!(["deal.*"])).await;
    let page = owner.read("/api/v1/webhooks?page_size=2").await;
    assert_eq!(
        (
            page["total"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(3), 2)
    );
    let next = page["next_cursor"].as_str().unwrap();
    let rest = owner
        .read(&format!("/api/v1/webhooks?page_size=2&cursor={next}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);

    // Another organization sees none of it.
    let zed = app.user("zed").await;
    zed.get(&path).await.problem(404, "webhook_not_found");
    assert_eq!(zed.read("/api/v1/webhooks").await["total"], 0);

    owner.delete(&path).await.no_content();
    owner.get(&path).await.problem(404, "webhook_not_found");
}

#[tokio::test]
async fn an_idempotent_create_replays_the_same_secret() {
    let app = TestApp::spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let owner = app.user("olga").await;
    let send = || {
        owner
            .req(axum::http::Method::POST, "/api/v1/webhooks")
            .header("idempotency-key", "hook-1")
            .json(json!({"url": "https://hooks.example.com/in", "events": ["deal.*"]}))
            .send()
    };
    let first = send().await;
    let again = send().await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(first.ok(201)["secret"], again.ok(201)["secret"]);
    assert_eq!(first.headers["location"], again.headers["location"]);
    let stored: String = app
        .value("SELECT body FROM crm.idempotency_keys", &[])
        .await;
    let secret = first.body["secret"].as_str().unwrap();
    assert!(
        !stored.contains(&secret[6..]),
        "the stored answer holds the secret sealed only"
    );
}

#[tokio::test]
async fn urls_that_are_not_public_https_are_refused() {
    let app = TestApp::spawn().await;
    let owner = app.user("olga").await;
    for url in [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://localhost/in",
        "https://[::1]/in",
        "https://0.0.0.0/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest",
        "https://[::ffff:127.0.0.1]/in",
        "https://100.64.0.1/in",
        "https://[fd00::1]/in",
    ] {
        let res = owner
            .post(
                "/api/v1/webhooks",
                json!({"url": url, "events": ["deal.*"]}),
            )
            .await;
        assert_eq!(res.field(400, "webhook_url_forbidden"), "url", "{url}");
    }
    // PATCH checks a new URL too.
    let hook: Uuid = Uuid::new_v4();
    let sealed = app.state.webhooks.as_ref().unwrap().sealer.seal(
        owner.org_id,
        hook,
        &minicrm::webhooks::secrets::Secret::generate(),
    );
    app.sql()
        .await
        .execute(
            "INSERT INTO crm.webhooks (organization_id, id, url, events, secret_sealed) \
             VALUES ($1, $2, 'https://8.8.8.8/in', '{deal.*}', $3)",
            &[&owner.org_id, &hook, &sealed],
        )
        .await
        .unwrap();
    owner
        .patch(
            &format!("/api/v1/webhooks/{hook}"),
            json!({"url": "https://localhost/x"}),
        )
        .await
        .problem(400, "webhook_url_forbidden");
}

#[tokio::test]
async fn without_a_secrets_key_webhooks_are_off() {
    let app = TestApp::spawn_with(|c| c.webhooks.secrets_key = None).await;
    let owner = app.user("olga").await;
    owner
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://hooks.example.com/", "events": ["deal.*"]}),
        )
        .await
        .unavailable("webhooks_not_configured");
    owner
        .get("/api/v1/webhooks")
        .await
        .unavailable("webhooks_not_configured");
    assert!(app.state.webhooks.is_none());
}

impl Receiver {
    /// Starts it on `addr` (a port that was free a moment ago).
    async fn start_on(addr: std::net::SocketAddr) -> Self {
        let r = Receiver::default();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }
}

#[tokio::test]
async fn a_receiver_down_then_back_gets_every_event_once() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    // A port with nobody listening: connections are refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let _worker = start_worker(&app);
    let hook =
        id_of(&subscribe(&owner, &format!("http://{addr}/ok/back"), json!(["deal.*"])).await);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(event(&app, owner.org_id, "deal.updated").await.to_string());
    }
    // Down long enough for a few failed attempts each.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failed: i64 = app
            .value(
                "SELECT count(*) FROM crm.webhook_attempts WHERE status_code IS NULL",
                &[],
            )
            .await;
        if failed >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "only {failed} failed attempts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = deliveries(&owner, hook).await;
    let error = d[0]["attempts"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("connect"), "{error}");
    assert!(
        !error.contains(&addr.to_string()),
        "the url stays out of errors: {error}"
    );
    let receiver = Receiver::start_on(addr).await;
    receiver.wait("ok/back", 20, 15).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got: Vec<String> = receiver
        .hits("ok/back")
        .iter()
        .map(|h| h.id.clone())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every event once");
    let pending: i64 = app
        .value(
            "SELECT count(*) FROM crm.webhook_deliveries WHERE status <> 'delivered'",
            &[],
        )
        .await;
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_dead_instances_claim_comes_back_after_its_lease() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let hook = id_of(&subscribe(&owner, &format!("{base}/ok/lease"), json!(["deal.*"])).await);
    let id = event(&app, owner.org_id, "deal.updated").await;
    fanned_out(&app, id).await;
    // Another instance claims it with a lease of 1 s, then dies.
    let claimed: i64 = app
        .value(
            "SELECT count(*) FROM private.webhook_deliveries_claim(10, 4, 1000)",
            &[],
        )
        .await;
    assert_eq!(claimed, 1);
    let started = Instant::now();
    let _worker = start_worker(&app);
    let hits = receiver.wait("ok/lease", 1, 10).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "taken before the lease ended"
    );
    assert_eq!(hits[0].id, id.to_string());
    let d = wait_delivery(&owner, hook, |d| d["status"] == "delivered").await;
    assert_eq!(d["attempt"], 1, "the dead claim made no attempt");
}

#[tokio::test]
async fn the_worker_recovers_when_its_database_connections_are_killed() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    subscribe(&owner, &format!("{base}/ok/killed"), json!(["deal.*"])).await;
    event(&app, owner.org_id, "deal.updated").await;
    receiver.wait("ok/killed", 1, 10).await;
    // Every connection of the server (the pool's and the listener's) dies,
    // as in a PostgreSQL restart.
    let killed: i64 = app
        .value(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name LIKE 'minicrm%') k",
            &[],
        )
        .await;
    assert!(
        killed >= 2,
        "the listener and a pooled connection: {killed}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..5 {
        event(&app, owner.org_id, "deal.updated").await;
    }
    receiver.wait("ok/killed", 6, 10).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The address is checked again at delivery: a webhook whose URL is now a
/// forbidden literal or plain http (written past the API, as a changed DNS
/// answer would be) is not contacted; its attempts say why.
#[tokio::test]
async fn a_delivery_to_a_forbidden_address_is_refused_at_delivery_time() {
    let app = TestApp::spawn_with(|c| {
        local(c);
        c.webhooks.allow_private_networks = false;
    })
    .await;
    let owner = app.user("olga").await;
    let (receiver, base) = Receiver::start().await;
    let _worker = start_worker(&app);
    let hooks = app.state.webhooks.clone().unwrap();
    let https = base.replace("http://", "https://");
    for (url, why) in [
        (format!("{https}/ok/literal"), "127.0.0.1 is loopback"),
        (format!("{base}/ok/plain"), "not https"),
    ] {
        let id = Uuid::new_v4();
        let sealed = hooks.sealer.seal(
            owner.org_id,
            id,
            &minicrm::webhooks::secrets::Secret::generate(),
        );
        app.sql()
            .await
            .execute(
                "INSERT INTO crm.webhooks (organization_id, id, url, events, secret_sealed) \
                 VALUES ($1, $2, $3, '{deal.*}', $4)",
                &[&owner.org_id, &id, &url, &sealed],
            )
            .await
            .unwrap();
        event(&app, owner.org_id, "deal.updated").await;
        let d = wait_delivery(&owner, id, |d| d["attempt"].as_i64() >= Some(1)).await;
        let error = d["attempts"][0]["error"].as_str().unwrap();
        assert!(
            error.starts_with("webhook_url_forbidden") && error.contains(why),
            "{error}"
        );
        assert!(d["status_code"].is_null());
    }
    assert!(
        receiver.hits("ok").is_empty(),
        "nothing reached the receiver"
    );
}
