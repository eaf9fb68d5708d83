//! Limits: statement timeout, request timeout and pool exhaustion answer a
//! problem quickly, and a refused request changes nothing.

use std::time::Duration;

use minicrm::ops::config::Config;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{locked_deal, within, TestApp};

async fn status_changes(app: &TestApp, deal: Uuid) -> i64 {
    app.sql()
        .await
        .query_one(
            "SELECT count(*) FROM crm.activities WHERE deal_id = $1 AND type = 'status_changed'",
            &[&deal],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_statement_over_statement_timeout_is_503_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.pool.statement_timeout = Duration::from_millis(400)).await;
    let owner = app.user("owner").await;
    let (deal, lock) = locked_deal(&app, &owner).await;
    let path = format!("/api/v1/deals/{deal}");
    let patch = owner.patch(&path, json!({"status": "in_progress"}));
    within(Duration::from_secs(3), patch)
        .await
        .unavailable("statement_timeout");
    lock.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(owner.read(&path).await["status"], "new");
    assert_eq!(status_changes(&app, deal).await, 0);
}

#[tokio::test]
async fn a_request_over_the_request_timeout_is_503_not_a_hang() {
    // Set up through a normal app, then talk to the same database through a
    // 300 ms one.
    let setup = TestApp::spawn().await;
    let owner = setup.user("owner").await;
    let (deal, lock) = locked_deal(&setup, &owner).await;
    let mut config = Config::for_database(setup.db_url.clone());
    config.request_timeout = Duration::from_millis(300);
    let app = TestApp::with_config(config);
    let owner = owner.via(&app);
    let path = format!("/api/v1/deals/{deal}");
    let patch = owner.patch(&path, json!({"status": "in_progress"}));
    within(Duration::from_secs(2), patch)
        .await
        .problem(503, "request_timeout");
    // The abandoned statement was cancelled: releasing the lock applies nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(owner.read(&path).await["status"], "new");
    assert_eq!(status_changes(&app, deal).await, 0);
}

#[tokio::test]
async fn an_exhausted_pool_is_503_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.pool.size = 1;
        c.pool.wait_timeout = Duration::from_millis(300);
    })
    .await;
    let owner = app.user("owner").await;
    let (deal, lock) = locked_deal(&app, &owner).await;
    // The only pooled connection waits on the row lock...
    let blocked = tokio::spawn(owner.patch(
        &format!("/api/v1/deals/{deal}"),
        json!({"status": "in_progress"}),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the next request waits for the pool, then gets a quick 503.
    let me = owner.no_org().get("/api/v1/users/me");
    within(Duration::from_secs(2), me)
        .await
        .unavailable("database_unavailable");
    lock.batch_execute("ROLLBACK").await.unwrap();
    // The blocked write then completes normally, once, with its timeline row.
    assert_eq!(blocked.await.unwrap().ok(200)["status"], "in_progress");
    assert_eq!(status_changes(&app, deal).await, 1);
}

#[tokio::test]
async fn page_size_has_a_maximum() {
    let (_, owner) = TestApp::with_user("owner").await;
    for path in ["/api/v1/contacts", "/api/v1/deals", "/api/v1/tasks"] {
        owner
            .get(&format!("{path}?page_size=101"))
            .await
            .problem(400, "invalid_query_parameter");
        owner.get(&format!("{path}?page_size=100")).await.ok(200);
    }
}
