use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use std::future::IntoFuture;

use crate::helpers::{base64url_encode, Answer, TestApp};

fn login(app: &TestApp, email: &str, password: &str) -> Answer {
    app.post_json(
        "/api/v1/auth/login",
        json!({"email": email, "password": password}),
    )
}

fn refresh(app: &TestApp, token: &str) -> Answer {
    app.post_json("/api/v1/auth/refresh", json!({"refresh_token": token}))
}

fn logout(app: &TestApp, token: &str) -> Answer {
    app.post_json("/api/v1/auth/logout", json!({"refresh_token": token}))
}

fn me(app: &TestApp, token: &str) -> Answer {
    app.get("/api/v1/users/me").token(token).into_future()
}

const SECRET: &str = "test-secret-test-secret-test-secret!";

#[tokio::test]
async fn register_creates_the_user_and_an_organization_they_own() {
    let app = TestApp::spawn().await;
    let res = app.post_json("/api/v1/auth/register", json!({"email": "Ada@Example.com", "password": "12345678", "name": "Ada", "organization_name": "Analytical"}))
        .await;
    let body = res.ok(201);
    assert_eq!(body["user"]["email"], "Ada@Example.com");
    assert_eq!(body["user"]["name"], "Ada");
    assert!(body["user"]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["user"].get("hashed_password").is_none());
    assert_eq!(body["organization"]["name"], "Analytical");
    assert_eq!(body["organization"]["role"], "owner");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();
    let me = me(&app, token).await;
    assert_eq!(me.ok(200)["id"], body["user"]["id"]);
    // Stored as an argon2id PHC string, never the password.
    let row = app
        .sql()
        .await
        .query_one("SELECT hashed_password FROM crm.users", &[])
        .await
        .unwrap();
    let hash: String = row.get(0);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("12345678"));
}

#[tokio::test]
async fn email_is_unique_regardless_of_case_r10() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    let res = app.post_json("/api/v1/auth/register", json!({"email": "BOB@example.COM", "password": "12345678", "name": "Bob 2", "organization_name": "X"}))
        .await;
    let p = res.problem(409, "users_email_taken");
    assert_eq!(p["errors"][0]["field"], "email");
    // Nothing half-written: no second organization appeared.
    let n: i64 = app
        .value("SELECT count(*) FROM crm.organizations", &[])
        .await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn register_validates_the_request_shape() {
    let app = TestApp::spawn().await;
    let reg = |body: serde_json::Value| app.post_json("/api/v1/auth/register", body);
    let long = "x".repeat(129);
    // (body, code, the field the error names if any)
    let cases = [
        (
            json!({"email": "a@example.com", "password": "short", "name": "A", "organization_name": "O"}),
            "validation_failed",
            Some("password"),
        ),
        (
            json!({"email": "a@example.com", "password": long, "name": "A", "organization_name": "O"}),
            "validation_failed",
            None,
        ),
        (
            json!({"email": "a@example.com", "password": "12345678", "organization_name": "O"}),
            "validation_failed",
            Some("body"),
        ),
        (
            json!({"email": "not-an-email", "password": "12345678", "name": "A", "organization_name": "O"}),
            "users_email_invalid",
            Some("email"),
        ),
        (
            json!({"email": "a@example.com", "password": "12345678", "name": "  ", "organization_name": "O"}),
            "users_name_invalid",
            Some("name"),
        ),
        (
            json!({"email": "a@example.com", "password": "12345678", "name": "A", "organization_name": ""}),
            "organizations_name_invalid",
            None,
        ),
        (
            json!({"email": 5, "password": "12345678", "name": "A", "organization_name": "O"}),
            "validation_failed",
            None,
        ),
        (
            json!({"email": "a@example.com", "password": "12345678", "name": "A", "organization_name": "O", "admin": true}),
            "validation_failed",
            None,
        ),
    ];
    for (body, code, field) in cases {
        let res = reg(body.clone()).await;
        let problem = res.problem(400, code);
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
        }
    }
    // A rejected registration leaves nothing behind.
    let n: i64 = app.value("SELECT count(*) FROM crm.users", &[]).await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_oversized_ones_413() {
    let app = TestApp::spawn().await;
    app.post("/api/v1/auth/login")
        .raw("application/json", "{\"email\": ")
        .send()
        .await
        .problem(400, "malformed_json");
    app.post("/api/v1/auth/login")
        .raw("text/plain", "{}")
        .send()
        .await
        .problem(400, "unsupported_content_type");
    app.post("/api/v1/auth/login")
        .send()
        .await
        .problem(400, "unsupported_content_type");
    let huge = format!(
        "{{\"email\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(100_000)
    );
    app.post("/api/v1/auth/login")
        .raw("application/json", huge)
        .send()
        .await
        .problem(413, "body_too_large");
}

#[tokio::test]
async fn login_with_right_and_wrong_credentials() {
    let (app, ann) = TestApp::with_registered("ann").await;
    let res = login(&app, "ANN@example.com", "correct horse").await;
    let body = res.ok(200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let me = me(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.ok(200)["id"], ann.id.to_string());

    let wrong = login(&app, "ann@example.com", "wrong horse").await;
    let unknown = login(&app, "nobody@example.com", "wrong horse").await;
    wrong.problem(401, "invalid_credentials");
    unknown.problem(401, "invalid_credentials");
    // Indistinguishable answers.
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_login() {
    let (app, ann) = TestApp::with_registered("ann").await;
    let first = refresh(&app, &ann.refresh_token).await;
    let body = first.ok(200).clone();
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, ann.refresh_token);
    me(&app, body["access_token"].as_str().unwrap())
        .await
        .ok(200);

    // The old token again: theft detected, the whole chain is revoked.
    refresh(&app, &ann.refresh_token)
        .await
        .problem(401, "refresh_token_reused");
    refresh(&app, &rotated)
        .await
        .problem(401, "invalid_refresh_token");

    // Another login is unaffected.
    let other = login(&app, &ann.email, "correct horse").await;
    let other_refresh = other.ok(200)["refresh_token"].as_str().unwrap().to_owned();
    refresh(&app, &other_refresh).await.ok(200);
    refresh(&app, "garbage")
        .await
        .problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes_and_expire() {
    let (app, ann) = TestApp::with_registered("ann").await;
    let db = app.sql().await;
    let stored: Vec<u8> = db
        .query_one("SELECT token_hash FROM private.refresh_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.len(), 32);
    assert_ne!(stored, ann.refresh_token.as_bytes());
    db.execute(
        "UPDATE private.refresh_tokens SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    refresh(&app, &ann.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let (app, ann) = TestApp::with_registered("ann").await;
    let res = logout(&app, &ann.refresh_token).await;
    assert_eq!(res.status, 204);
    refresh(&app, &ann.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    // Idempotent.
    let again = logout(&app, &ann.refresh_token).await;
    assert_eq!(again.status, 204);
}

#[tokio::test]
async fn access_and_refresh_tokens_are_not_interchangeable() {
    let (app, ann) = TestApp::with_registered("ann").await;
    me(&app, &ann.refresh_token)
        .await
        .problem(401, "invalid_token");
    refresh(&app, &ann.access_token)
        .await
        .problem(401, "invalid_refresh_token");
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn users_me_refuses_missing_bad_expired_and_foreign_tokens() {
    let (app, ann) = TestApp::with_user("ann").await;
    let res = app.get("/api/v1/users/me").await;
    res.problem(401, "unauthenticated");
    assert_eq!(res.headers["www-authenticate"], "Bearer");
    let now = chrono::Utc::now().timestamp();
    let claims = |sub: uuid::Uuid, iat: i64, exp: i64, typ: &str| json!({"sub": sub, "iat": iat, "exp": exp, "typ": typ});
    // alg=none is never accepted.
    let header = base64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = json!({"sub": ann.id, "exp": now + 600, "typ": "access"}).to_string();
    let unsigned = format!("{header}.{}.", base64url_encode(unsigned.as_bytes()));
    let other_key = "another-secret-another-secret-another";
    for (what, token) in [
        ("not a JWT", "not-a-jwt".to_owned()),
        (
            "expired",
            sign(claims(ann.id, now - 3600, now - 600, "access"), SECRET),
        ),
        (
            "another key",
            sign(claims(ann.id, now, now + 600, "access"), other_key),
        ),
        (
            "a refresh type",
            sign(claims(ann.id, now, now + 600, "refresh"), SECRET),
        ),
        ("alg none", unsigned),
        // A token for a user that no longer exists.
        (
            "a ghost",
            sign(
                claims(uuid::Uuid::new_v4(), now, now + 600, "access"),
                SECRET,
            ),
        ),
    ] {
        let res = me(&app, &token).await;
        assert_eq!(res.status, 401, "{what}");
        res.problem(401, "invalid_token");
    }
    let good = sign(claims(ann.id, now, now + 600, "access"), SECRET);
    me(&app, &good).await.ok(200);
}

/// The server remembers verified tokens (README, *Access tokens*): a
/// remembered one must still be refused once it has expired.
#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let (app, ann) = TestApp::with_user("ann").await;
    // Expired two seconds ago: accepted within the 5 s leeway, for 3 s more.
    let exp = chrono::Utc::now().timestamp() - 2;
    let token = sign(
        json!({"sub": ann.id, "iat": exp - 60, "exp": exp, "typ": "access"}),
        SECRET,
    );
    me(&app, &token).await.ok(200);
    me(&app, &token).await.ok(200);
    while chrono::Utc::now().timestamp() <= exp + 5 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    me(&app, &token).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_email() {
    let app = TestApp::spawn_with(|c| c.auth_attempts_per_email = 3).await;
    app.register("ann").await;
    let wrong = |email: &str| login(&app, email, "wrong horse");
    // The registration counted as the first attempt for this address.
    wrong("ann@example.com")
        .await
        .problem(401, "invalid_credentials");
    wrong("ANN@example.com")
        .await
        .problem(401, "invalid_credentials");
    let res = wrong("ann@example.com").await;
    res.problem(429, "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Even the right password waits for the window.
    login(&app, "ann@example.com", "correct horse")
        .await
        .problem(429, "rate_limited");
    // Another email is not affected.
    wrong("bob@example.com")
        .await
        .problem(401, "invalid_credentials");
}
