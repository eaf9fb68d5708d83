//! `Idempotency-Key` (SPEC §11; src/http/idempotency.rs, sql/functions/15_idempotency.sql):
//! replays, reuse, failures, malformed keys, scope, the race of identical
//! requests, expiry and the cleanup, and every opted-in operation of the
//! OpenAPI document.

use std::time::Duration;

use axum::{
    body::Body,
    http::{HeaderValue, Method, Request},
};
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::{id_of, invite, read_response, TestApp, TestResponse, TestUser};

const KEY: &str = "Idempotency-Key";

/// POST `body` (None: no body) to `path` as `user` with `key`.
async fn post_with_key(
    user: &TestUser,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> TestResponse {
    let req = user.req(Method::POST, path).header(KEY, key);
    match body {
        // A JSON string stands for a CSV file (the import).
        Some(Value::String(csv)) => req.raw("text/csv", csv).send().await,
        Some(body) => req.json(body).send().await,
        None => req.send().await,
    }
}

fn replayed(res: &TestResponse) -> Option<&str> {
    res.headers
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap())
}

/// The second answer is the first one again, marked as a replay.
#[track_caller]
fn assert_replay(first: &TestResponse, again: &TestResponse) {
    assert_eq!(again.status, first.status, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("location"), first.headers.get("location"));
    assert_eq!(replayed(first), None, "a first answer is no replay");
    assert_eq!(replayed(again), Some("true"));
}

async fn count(app: &TestApp, query: &str) -> i64 {
    app.value::<i64>(query, &[]).await
}

#[tokio::test]
async fn a_replay_is_the_first_answer_and_writes_nothing() {
    let (app, ann) = TestApp::with_user("idem-ann").await;
    let body = json!({"name": "Ada Lovelace", "email": "ada@example.com"});
    let first = post_with_key(&ann, "/api/v1/contacts", "order-17", Some(body.clone())).await;
    first.ok(201);
    let location = first.headers["location"].to_str().unwrap();
    assert_eq!(location, format!("/api/v1/contacts/{}", id_of(&first.body)));
    for _ in 0..2 {
        let again = post_with_key(&ann, "/api/v1/contacts", "order-17", Some(body.clone())).await;
        assert_replay(&first, &again);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 1);
    // The record read back is the one the replay names.
    assert_eq!(ann.read(location).await, first.body);
    // Without the header, the same request creates another contact, as before.
    ann.create("/api/v1/contacts", body).await;
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 2);
}

#[tokio::test]
async fn another_request_with_the_key_is_422() {
    let (app, ann) = TestApp::with_user("idem-reuse").await;
    post_with_key(&ann, "/api/v1/contacts", "k", Some(json!({"name": "Ada"})))
        .await
        .ok(201);
    // Another body, the same body spelled otherwise, another path.
    for (path, body) in [
        ("/api/v1/contacts", json!({"name": "Bea"})),
        ("/api/v1/contacts", json!({"name": "Ada", "phone": null})),
        (
            "/api/v1/pipelines",
            json!({"name": "Ada", "stages": [{"key": "a", "name": "A", "probability": 1}]}),
        ),
    ] {
        post_with_key(&ann, path, "k", Some(body))
            .await
            .problem(422, "idempotency_key_reused");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM crm.pipelines").await, 1);
}

#[tokio::test]
async fn a_failed_request_stores_nothing_and_may_be_retried() {
    let (app, ann) = TestApp::with_user("idem-fail").await;
    // Refused by the database (a blank name), then by the handler (an unknown
    // field), then by the database again (an owner who is not a member).
    post_with_key(
        &ann,
        "/api/v1/contacts",
        "retry-me",
        Some(json!({"name": " "})),
    )
    .await
    .problem(400, "contacts_name_invalid");
    post_with_key(
        &ann,
        "/api/v1/contacts",
        "retry-me",
        Some(json!({"name": "A", "x": 1})),
    )
    .await
    .problem(400, "validation_failed");
    post_with_key(
        &ann,
        "/api/v1/contacts",
        "retry-me",
        Some(json!({"name": "A", "owner_id": Uuid::new_v4()})),
    )
    .await
    .problem(404, "contacts_owner_id_not_member");
    assert_eq!(
        count(&app, "SELECT count(*) FROM crm.idempotency_keys").await,
        0
    );
    let retry = post_with_key(
        &ann,
        "/api/v1/contacts",
        "retry-me",
        Some(json!({"name": "Ada"})),
    )
    .await;
    retry.ok(201);
    assert_eq!(replayed(&retry), None);
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 1);
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let (app, ann) = TestApp::with_user("idem-bad").await;
    let long = "k".repeat(256);
    // (Control characters other than tab never get past HTTP itself.)
    let bad: [&[u8]; 5] = [
        b"",
        b"   ",
        long.as_bytes(),
        "caf\u{e9}".as_bytes(),
        b"tab\tkey",
    ];
    for key in bad {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/contacts")
            .header("authorization", format!("Bearer {}", ann.access_token))
            .header("x-organization-id", ann.org_id.to_string())
            .header("content-type", "application/json")
            .header(KEY, HeaderValue::from_bytes(key).unwrap())
            .body(Body::from(r#"{"name": "Ada"}"#))
            .unwrap();
        let res = read_response(app.router.clone().oneshot(request).await.unwrap()).await;
        assert_eq!(
            res.problem(400, "invalid_idempotency_key")["errors"][0]["field"],
            "Idempotency-Key",
            "{key:?}"
        );
    }
    // Sent twice.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/contacts")
        .header("authorization", format!("Bearer {}", ann.access_token))
        .header("x-organization-id", ann.org_id.to_string())
        .header("content-type", "application/json")
        .header(KEY, "a")
        .header(KEY, "a")
        .body(Body::from(r#"{"name": "Ada"}"#))
        .unwrap();
    read_response(app.router.clone().oneshot(request).await.unwrap())
        .await
        .problem(400, "invalid_idempotency_key");
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 0);
    // The longest key, and every printable character.
    let printable: String = (0x20u8..=0x7e).map(char::from).collect();
    for key in ["k".repeat(255), printable.trim().to_owned()] {
        post_with_key(&ann, "/api/v1/contacts", &key, Some(json!({"name": "Ada"})))
            .await
            .ok(201);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 2);
}

#[tokio::test]
async fn keys_belong_to_a_user_in_an_organization() {
    let (app, ann) = TestApp::with_user("idem-scope-ann").await;
    let bob = app.member_of(&ann, "idem-scope-bob", "member").await;
    let body = json!({"name": "Same"});
    let by_ann = post_with_key(&ann, "/api/v1/contacts", "shared", Some(body.clone())).await;
    let by_bob = post_with_key(&bob, "/api/v1/contacts", "shared", Some(body.clone())).await;
    by_ann.ok(201);
    by_bob.ok(201);
    assert_eq!(replayed(&by_bob), None, "Bob's key is his own");
    assert_ne!(id_of(&by_ann.body), id_of(&by_bob.body));
    // Ann in another organization of hers: a key of that organization.
    let other = ann
        .no_org()
        .create("/api/v1/organizations", json!({"name": "Ann Two"}))
        .await;
    let in_other = post_with_key(
        &ann.in_org(id_of(&other)),
        "/api/v1/contacts",
        "shared",
        Some(body.clone()),
    )
    .await;
    in_other.ok(201);
    assert_eq!(replayed(&in_other), None);
    // Each replays their own answer.
    assert_replay(
        &by_ann,
        &post_with_key(&ann, "/api/v1/contacts", "shared", Some(body.clone())).await,
    );
    assert_replay(
        &by_bob,
        &post_with_key(&bob, "/api/v1/contacts", "shared", Some(body)).await,
    );
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 3);
    // Another organization's member cannot use Ann's organization at all.
    let eve = app.user("idem-scope-eve").await;
    post_with_key(
        &eve.in_org(ann.org_id),
        "/api/v1/contacts",
        "shared",
        Some(json!({"name": "Same"})),
    )
    .await
    .problem(404, "organization_not_found");
}

/// SPEC §11: concurrent identical requests with one key create exactly one
/// record; each answer is the record (the first, or a replay) or 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_identical_requests_at_once_create_one_record() {
    let app = TestApp::spawn_with(|c| c.pool.size = 21).await;
    let ann = app.user("idem-race").await;
    let body = json!({"name": "Raced"});
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let request = ann
                .req(Method::POST, "/api/v1/contacts")
                .header(KEY, "race")
                .json(body.clone())
                .send_owned();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                request.await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 1);
    let id: Uuid = app.value("SELECT id FROM crm.contacts", &[]).await;
    let (mut created, mut in_progress) = (0, 0);
    for res in &answers {
        match res.status.as_u16() {
            201 => {
                assert_eq!(id_of(&res.body), id, "every 201 is the one record");
                created += 1;
            }
            409 => {
                res.problem(409, "idempotency_key_in_progress");
                in_progress += 1;
            }
            other => panic!("unexpected answer {other}: {}", res.body),
        }
    }
    assert!(created >= 1, "the first request answered 201");
    eprintln!("20 identical requests at once: {created} × 201, {in_progress} × 409");
    assert_eq!(created + in_progress, 20);
    let fresh = answers
        .iter()
        .filter(|r| r.status == 201 && replayed(r).is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one answer is not a replay");
    let later = post_with_key(&ann, "/api/v1/contacts", "race", Some(body)).await;
    later.ok(201);
    assert_eq!(id_of(&later.body), id);
    assert_eq!(replayed(&later), Some("true"));
}

#[tokio::test]
async fn an_expired_key_is_absent_and_the_cleanup_deletes_it() {
    let (app, ann) = TestApp::with_user("idem-expiry").await;
    let body = json!({"name": "Once"});
    let first = post_with_key(&ann, "/api/v1/contacts", "old", Some(body.clone())).await;
    first.ok(201);
    let expires_in: f64 = app
        .value(
            "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM crm.idempotency_keys",
            &[],
        )
        .await;
    assert_eq!(
        expires_in, 86400.0,
        "IDEMPOTENCY_TTL_SECS defaults to a day"
    );
    app.sql()
        .await
        .batch_execute(
            "UPDATE crm.idempotency_keys SET created_at = now() - interval '2 days', \
             expires_at = now() - interval '1 second'",
        )
        .await
        .unwrap();
    // Expired: the key is free again (and may carry another request).
    let again = post_with_key(
        &ann,
        "/api/v1/contacts",
        "old",
        Some(json!({"name": "Twice"})),
    )
    .await;
    again.ok(201);
    assert_eq!(replayed(&again), None);
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 2);

    // The cleanup leaves live keys and deletes expired ones.
    app.sql()
        .await
        .batch_execute(&format!(
            "INSERT INTO crm.idempotency_keys (organization_id, user_id, key, fingerprint, status, body, created_at, expires_at) \
             VALUES ('{org}', '{user}', 'stale', sha256('x'), 201, '{{}}', now() - interval '2 days', now() - interval '1 day')",
            org = ann.org_id,
            user = ann.id
        ))
        .await
        .unwrap();
    let steps = minicrm::workers::maintenance::run_once(&app.state.db, 30, 30)
        .await
        .expect("a maintenance round");
    assert!(
        steps.contains(&("idempotency_keys".to_owned(), 1)),
        "{steps:?}"
    );
    assert_eq!(
        app.column::<String>("SELECT key FROM crm.idempotency_keys", &[])
            .await,
        ["old"]
    );
}

/// A short TTL from the configuration is what the database stores.
#[tokio::test]
async fn the_ttl_comes_from_the_configuration() {
    let app = TestApp::spawn_with(|c| c.idempotency_ttl = Duration::from_secs(90)).await;
    let ann = app.user("idem-ttl").await;
    post_with_key(&ann, "/api/v1/contacts", "k", Some(json!({"name": "Ada"})))
        .await
        .ok(201);
    let expires_in: f64 = app
        .value(
            "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM crm.idempotency_keys",
            &[],
        )
        .await;
    assert_eq!(expires_in, 90.0);
}

/// The worker runs rounds on its own, survives a database it cannot reach,
/// and stops when told to.
#[tokio::test]
async fn the_maintenance_worker_cleans_up_and_stops() {
    let (app, ann) = TestApp::with_user("idem-worker").await;
    app.sql()
        .await
        .batch_execute(&format!(
            "INSERT INTO crm.user_idempotency_keys (user_id, key, fingerprint, status, body, created_at, expires_at) \
             VALUES ('{user}', 'stale', sha256('x'), 201, '{{}}', now() - interval '2 days', now() - interval '1 day')",
            user = ann.id
        ))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = minicrm::workers::maintenance::spawn(
        app.state.db.clone(),
        Duration::from_millis(20),
        30,
        30,
        stopped,
    );
    let mut left = 1;
    for _ in 0..250 {
        left = count(&app, "SELECT count(*) FROM crm.user_idempotency_keys").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "the worker deleted the expired key");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops")
        .unwrap();

    // A database that does not answer: rounds fail, the worker goes on.
    let mut config = minicrm::ops::config::Config::for_database(
        "postgres://postgres@127.0.0.1:9/none?connect_timeout=1".into(),
    );
    config.pool.wait_timeout = Duration::from_millis(200);
    let down =
        minicrm::db::Db::connect(&config.pool, config.database_url.as_deref().unwrap()).unwrap();
    assert!(minicrm::workers::maintenance::run_once(&down, 30, 30)
        .await
        .is_none());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker =
        minicrm::workers::maintenance::spawn(down, Duration::from_millis(10), 30, 30, stopped);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !worker.is_finished(),
        "a failed round does not stop the worker"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops")
        .unwrap();
}

/// Every operation that the OpenAPI document says takes `Idempotency-Key`
/// replays: the same status, body and `Location`, `Idempotent-Replayed:
/// true`, and nothing more written. Every creating POST outside /auth takes
/// it; a new one fails this test until it has a case below.
#[tokio::test]
async fn every_operation_with_the_header_replays() {
    let doc = serde_json::to_value(minicrm::http::openapi()).unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let takes_key = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == KEY && p["in"] == "header");
            let id = op["operationId"].as_str().unwrap().to_owned();
            if method != "post" {
                assert!(!takes_key, "{id}: only POSTs take Idempotency-Key");
                continue;
            }
            let creates = op["responses"].get("201").is_some();
            if path.starts_with("/api/v1/auth/") {
                assert!(
                    !takes_key,
                    "{id}: the auth endpoints take no Idempotency-Key"
                );
            } else if creates {
                assert!(takes_key, "{id} creates (201) but takes no Idempotency-Key");
            }
            if takes_key {
                for status in ["409", "422"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{id}: {status} undocumented"
                    );
                }
                let success = op["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(s, _)| s.starts_with('2'))
                    .unwrap()
                    .1;
                assert!(
                    success["headers"].get("Idempotent-Replayed").is_some(),
                    "{id}: Idempotent-Replayed undocumented"
                );
                documented.push(id);
            }
        }
    }
    documented.sort();

    let (app, ann) = TestApp::with_user("idem-every").await;
    let vic = app.user("idem-every-vic").await;
    let contact = ann.contact("Ada").await;
    let deal = ann.deal(contact, "Deal", "100.00").await;
    let pipeline = id_of(&ann.read("/api/v1/pipelines").await["items"][0]);
    let invitation = id_of(&invite(&ann, &vic.email, "member").await);
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(3)).to_string();
    // operation id → (caller, path, body, the rows it creates).
    let cases: Vec<(&str, &TestUser, String, Option<Value>, &str)> = vec![
        (
            "activities_create",
            &ann,
            format!("/api/v1/deals/{deal}/activities"),
            Some(json!({"type": "comment", "payload": {"text": "hello"}})),
            "SELECT count(*) FROM crm.activities",
        ),
        (
            "contacts_batch",
            &ann,
            "/api/v1/contacts/batch".into(),
            Some(json!({"items": [{"name": "Cy"}, {"name": "Di"}]})),
            "SELECT count(*) FROM crm.contacts",
        ),
        (
            "contacts_create",
            &ann,
            "/api/v1/contacts".into(),
            Some(json!({"name": "Bea"})),
            "SELECT count(*) FROM crm.contacts",
        ),
        (
            "contacts_import",
            &ann,
            "/api/v1/contacts/import".into(),
            Some(json!("name,email\r\nImported,imported@example.com\r\n")),
            "SELECT count(*) FROM crm.contacts",
        ),
        (
            "deals_batch",
            &ann,
            "/api/v1/deals/batch".into(),
            Some(
                json!({"items": [{"contact_id": contact, "title": "B1", "amount": "1.00", "currency": "EUR"}]}),
            ),
            "SELECT count(*) FROM crm.deals",
        ),
        (
            "deals_create",
            &ann,
            "/api/v1/deals".into(),
            Some(
                json!({"contact_id": contact, "title": "Another", "amount": "5.00", "currency": "EUR"}),
            ),
            "SELECT count(*) FROM crm.deals",
        ),
        (
            "invitations_accept",
            &vic,
            format!("/api/v1/invitations/{invitation}/accept"),
            None,
            "SELECT count(*) FROM crm.organization_members",
        ),
        (
            "invitations_create",
            &ann,
            format!("/api/v1/organizations/{}/members", ann.org_id),
            Some(json!({"email": "newcomer@example.com", "role": "member"})),
            "SELECT count(*) FROM crm.invitations",
        ),
        (
            "organizations_create",
            &ann,
            "/api/v1/organizations".into(),
            Some(json!({"name": "Second"})),
            "SELECT count(*) FROM crm.organizations",
        ),
        (
            "pipeline_stages_create",
            &ann,
            format!("/api/v1/pipelines/{pipeline}/stages"),
            Some(json!({"key": "extra", "name": "Extra", "probability": 20})),
            "SELECT count(*) FROM crm.pipeline_stages",
        ),
        (
            "pipelines_create",
            &ann,
            "/api/v1/pipelines".into(),
            Some(
                json!({"name": "Hiring", "stages": [{"key": "applied", "name": "Applied", "probability": 10}]}),
            ),
            "SELECT count(*) FROM crm.pipelines",
        ),
        (
            "tasks_batch",
            &ann,
            "/api/v1/tasks/batch".into(),
            Some(json!({"items": [{"deal_id": deal, "title": "B", "due_date": due}]})),
            "SELECT count(*) FROM crm.tasks",
        ),
        (
            "tasks_create",
            &ann,
            "/api/v1/tasks".into(),
            Some(json!({"deal_id": deal, "title": "Call", "due_date": due})),
            "SELECT count(*) FROM crm.tasks",
        ),
        (
            "webhooks_create",
            &ann,
            "/api/v1/webhooks".into(),
            Some(json!({"url": "https://8.8.8.8/hook", "events": ["deal.*"]})),
            "SELECT count(*) FROM crm.webhooks",
        ),
    ];
    let covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(
        documented, covered,
        "every documented operation has a case here, in order"
    );
    for (id, caller, path, body, rows) in cases {
        // Organization-level routes act in the path's organization or none.
        let caller = if path.starts_with("/api/v1/organizations")
            || path.starts_with("/api/v1/invitations")
        {
            caller.no_org()
        } else {
            caller.clone()
        };
        let before = count(&app, rows).await;
        let first = post_with_key(&caller, &path, id, body.clone()).await;
        assert!(
            first.status.is_success(),
            "{id}: {} {}",
            first.status,
            first.body
        );
        let after = count(&app, rows).await;
        assert!(after > before, "{id} wrote");
        let again = post_with_key(&caller, &path, id, body).await;
        assert_replay(&first, &again);
        assert_eq!(
            count(&app, rows).await,
            after,
            "{id}: the replay wrote nothing"
        );
    }
}

/// Behind a transaction-mode pooler (`DB_POOLER=transaction`, PgBouncer
/// started by scripts/test): the claim is an advisory *transaction* lock and
/// the whole exchange one statement, so it holds when consecutive statements
/// land on different server connections; the cleanup is a simple query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_behind_a_transaction_mode_pooler() {
    let app = TestApp::spawn_behind_pooler().await;
    let ann = app.user("idem-pooler").await;
    let body = json!({"name": "Pooled"});
    let answers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(
                ann.req(Method::POST, "/api/v1/contacts")
                    .header(KEY, "pooled")
                    .json(body.clone())
                    .send_owned(),
            )
        })
        .collect();
    for answer in answers {
        let res = answer.await.unwrap();
        assert!(
            res.status == 201 || res.body["code"] == "idempotency_key_in_progress",
            "{} {}",
            res.status,
            res.body
        );
    }
    let first = post_with_key(&ann, "/api/v1/contacts", "pooled", Some(body.clone())).await;
    first.ok(201);
    assert_eq!(replayed(&first), Some("true"));
    assert_eq!(count(&app, "SELECT count(*) FROM crm.contacts").await, 1);
    post_with_key(
        &ann,
        "/api/v1/contacts",
        "pooled",
        Some(json!({"name": "Other"})),
    )
    .await
    .problem(422, "idempotency_key_reused");
    let steps = minicrm::workers::maintenance::run_once(&app.state.db, 30, 30)
        .await
        .expect("a maintenance round through the pooler");
    assert!(
        steps.iter().any(|(step, _)| step == "idempotency_keys"),
        "{steps:?}"
    );
}

/// A browser front end may send the key and read whether it got a replay.
#[tokio::test]
async fn browsers_may_send_the_key_and_read_the_replay_header() {
    let app = TestApp::spawn_with(|c| {
        c.cors_allowed_origins = Some(minicrm::ops::config::CorsOrigins::List(vec![
            "https://app.example.com".into(),
        ]))
    })
    .await;
    let ann = app.user("idem-cors").await;
    let preflight = app
        .req(Method::OPTIONS, "/api/v1/contacts")
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "idempotency-key")
        .send()
        .await;
    let allowed = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let send = || {
        ann.req(Method::POST, "/api/v1/contacts")
            .header("Origin", "https://app.example.com")
            .header(KEY, "from-the-browser")
            .json(json!({"name": "Ada"}))
            .send()
    };
    send().await.ok(201);
    let again = send().await;
    assert_eq!(replayed(&again), Some("true"));
    let exposed = again.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("idempotent-replayed"), "{exposed}");
}
