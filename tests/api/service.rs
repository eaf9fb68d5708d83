use std::time::Duration;

use minicrm::ops::config::Config;
use serde_json::json;

use crate::helpers::{within, TestApp};

#[tokio::test]
async fn healthz_and_readyz_answer_when_the_database_is_up() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").send().await.ok(200)["status"], "ok");
    assert_eq!(app.get("/readyz").send().await.ok(200)["status"], "ready");
}

#[tokio::test]
async fn an_unreachable_database_is_503_quickly_not_a_hang() {
    // Nothing listens on port 1.
    let mut config = Config::for_database("postgres://postgres@127.0.0.1:1/none".into());
    config.pool.wait_timeout = Duration::from_millis(500);
    let app = TestApp::with_config(config);
    let login = app
        .post("/api/v1/auth/login")
        .json(json!({"email": "a@example.com", "password": "whatever1"}));
    let (readyz, login) = within(Duration::from_secs(8), async {
        (app.get("/readyz").await, login.await)
    })
    .await;
    readyz.unavailable("database_unavailable");
    login.problem(503, "database_unavailable");
    // Liveness does not depend on the database.
    app.get("/healthz").send().await.ok(200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/nope")
        .send()
        .await
        .problem(404, "route_not_found");
    app.req(axum::http::Method::PUT, "/api/v1/users/me")
        .send()
        .await
        .problem(405, "method_not_allowed");
}

#[tokio::test]
async fn openapi_document_is_3_1_and_describes_every_route() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json").send().await.ok(200).clone();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/organizations", "post"),
        ("/api/v1/organizations/me", "get"),
        ("/api/v1/organizations/{org_id}", "get"),
        ("/api/v1/organizations/{org_id}", "patch"),
        ("/api/v1/organizations/{org_id}", "delete"),
        ("/api/v1/organizations/{org_id}/members", "get"),
        ("/api/v1/organizations/{org_id}/members", "post"),
        ("/api/v1/organizations/{org_id}/members/{user_id}", "patch"),
        ("/api/v1/organizations/{org_id}/members/{user_id}", "delete"),
        ("/api/v1/organizations/{org_id}/invitations", "get"),
        ("/api/v1/organizations/{org_id}/invitations/{id}", "get"),
        ("/api/v1/organizations/{org_id}/invitations/{id}", "delete"),
        ("/api/v1/invitations", "get"),
        ("/api/v1/invitations/{id}/accept", "post"),
        ("/api/v1/invitations/{id}/decline", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        // Every operation but the liveness probe documents an error answer.
        if path != "/healthz" {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('4') || s.starts_with('5')),
                "{method} {path} documents no error"
            );
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn docs_page_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let res = app.get("/docs/").send().await;
    assert_eq!(res.status, 200);
    let html = res.body.as_str().unwrap();
    assert!(html.contains("swagger"), "{html}");
    // The UI's script comes from the binary, not a CDN.
    let js = app.get("/docs/swagger-ui-bundle.js").send().await;
    assert_eq!(js.status, 200);
}
