use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::helpers::{base64url_encode, TestApp};

const SECRET: &str = "test-secret-test-secret-test-secret!";

#[tokio::test]
async fn register_creates_the_user_and_an_organization_they_own() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/api/v1/auth/register")
        .json(json!({"email": "Ada@Example.com", "password": "12345678", "name": "Ada", "organization_name": "Analytical"}))
        .send()
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
    let me = app.get("/api/v1/users/me").token(token).send().await;
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
    let res = app
        .post("/api/v1/auth/register")
        .json(json!({"email": "BOB@example.COM", "password": "12345678", "name": "Bob 2", "organization_name": "X"}))
        .send()
        .await;
    let p = res.problem(409, "users_email_taken");
    assert_eq!(p["errors"][0]["field"], "email");
    // Nothing half-written: no second organization appeared.
    let n: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM crm.organizations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn register_validates_the_request_shape() {
    let app = TestApp::spawn().await;
    let reg = |body: serde_json::Value| app.post("/api/v1/auth/register").json(body).send();
    let p = reg(json!({"email": "a@example.com", "password": "short", "name": "A", "organization_name": "O"}))
        .await;
    assert_eq!(
        p.problem(400, "validation_failed")["errors"][0]["field"],
        "password"
    );
    let long = "x".repeat(129);
    reg(json!({"email": "a@example.com", "password": long, "name": "A", "organization_name": "O"}))
        .await
        .problem(400, "validation_failed");
    let p =
        reg(json!({"email": "a@example.com", "password": "12345678", "organization_name": "O"}))
            .await;
    assert_eq!(
        p.problem(400, "validation_failed")["errors"][0]["field"],
        "body"
    );
    let p = reg(json!({"email": "not-an-email", "password": "12345678", "name": "A", "organization_name": "O"})).await;
    assert_eq!(
        p.problem(400, "users_email_invalid")["errors"][0]["field"],
        "email"
    );
    let p = reg(json!({"email": "a@example.com", "password": "12345678", "name": "  ", "organization_name": "O"})).await;
    assert_eq!(
        p.problem(400, "users_name_invalid")["errors"][0]["field"],
        "name"
    );
    let p = reg(json!({"email": "a@example.com", "password": "12345678", "name": "A", "organization_name": ""})).await;
    p.problem(400, "organizations_name_invalid");
    reg(json!({"email": 5, "password": "12345678", "name": "A", "organization_name": "O"}))
        .await
        .problem(400, "validation_failed");
    reg(json!({"email": "a@example.com", "password": "12345678", "name": "A", "organization_name": "O", "admin": true}))
        .await
        .problem(400, "validation_failed");
    // A rejected registration leaves nothing behind.
    let n: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM crm.users", &[])
        .await
        .unwrap()
        .get(0);
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
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let res = app
        .post("/api/v1/auth/login")
        .json(json!({"email": "ANN@example.com", "password": "correct horse"}))
        .send()
        .await;
    let body = res.ok(200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let me = app
        .get("/api/v1/users/me")
        .token(body["access_token"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(me.ok(200)["id"], ann.id.to_string());

    let wrong = app
        .post("/api/v1/auth/login")
        .json(json!({"email": "ann@example.com", "password": "wrong horse"}))
        .send()
        .await;
    let unknown = app
        .post("/api/v1/auth/login")
        .json(json!({"email": "nobody@example.com", "password": "wrong horse"}))
        .send()
        .await;
    wrong.problem(401, "invalid_credentials");
    unknown.problem(401, "invalid_credentials");
    // Indistinguishable answers.
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_login() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let refresh = |token: String| {
        app.post("/api/v1/auth/refresh")
            .json(json!({"refresh_token": token}))
            .send()
    };
    let first = refresh(ann.refresh_token.clone()).await;
    let body = first.ok(200).clone();
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, ann.refresh_token);
    app.get("/api/v1/users/me")
        .token(body["access_token"].as_str().unwrap())
        .send()
        .await
        .ok(200);

    // The old token again: theft detected, the whole chain is revoked.
    refresh(ann.refresh_token.clone())
        .await
        .problem(401, "refresh_token_reused");
    refresh(rotated).await.problem(401, "invalid_refresh_token");

    // Another login is unaffected.
    let other = app
        .post("/api/v1/auth/login")
        .json(json!({"email": ann.email, "password": "correct horse"}))
        .send()
        .await;
    let other_refresh = other.ok(200)["refresh_token"].as_str().unwrap().to_owned();
    refresh(other_refresh).await.ok(200);
    refresh("garbage".into())
        .await
        .problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes_and_expire() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
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
    app.post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": ann.refresh_token}))
        .send()
        .await
        .problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let res = app
        .post("/api/v1/auth/logout")
        .json(json!({"refresh_token": ann.refresh_token}))
        .send()
        .await;
    assert_eq!(res.status, 204);
    app.post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": ann.refresh_token}))
        .send()
        .await
        .problem(401, "invalid_refresh_token");
    // Idempotent.
    let again = app
        .post("/api/v1/auth/logout")
        .json(json!({"refresh_token": ann.refresh_token}))
        .send()
        .await;
    assert_eq!(again.status, 204);
}

#[tokio::test]
async fn access_and_refresh_tokens_are_not_interchangeable() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    app.get("/api/v1/users/me")
        .token(&ann.refresh_token)
        .send()
        .await
        .problem(401, "invalid_token");
    app.post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": ann.access_token}))
        .send()
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
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let me = |token: Option<String>| {
        let req = app.get("/api/v1/users/me");
        match token {
            Some(t) => req.token(&t),
            None => req,
        }
        .send()
    };
    let res = me(None).await;
    res.problem(401, "unauthenticated");
    assert_eq!(res.headers["www-authenticate"], "Bearer");
    me(Some("not-a-jwt".into()))
        .await
        .problem(401, "invalid_token");
    let now = chrono::Utc::now().timestamp();
    let expired = sign(
        json!({"sub": ann.id, "iat": now - 3600, "exp": now - 600, "typ": "access"}),
        SECRET,
    );
    me(Some(expired)).await.problem(401, "invalid_token");
    let wrong_key = sign(
        json!({"sub": ann.id, "iat": now, "exp": now + 600, "typ": "access"}),
        "another-secret-another-secret-another",
    );
    me(Some(wrong_key)).await.problem(401, "invalid_token");
    let wrong_type = sign(
        json!({"sub": ann.id, "iat": now, "exp": now + 600, "typ": "refresh"}),
        SECRET,
    );
    me(Some(wrong_type)).await.problem(401, "invalid_token");
    let good = sign(
        json!({"sub": ann.id, "iat": now, "exp": now + 600, "typ": "access"}),
        SECRET,
    );
    me(Some(good)).await.ok(200);
    // alg=none is never accepted.
    let header = base64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url_encode(
        json!({"sub": ann.id, "exp": now + 600, "typ": "access"})
            .to_string()
            .as_bytes(),
    );
    me(Some(format!("{header}.{payload}.")))
        .await
        .problem(401, "invalid_token");
    // A token for a user that no longer exists.
    let ghost = sign(
        json!({"sub": uuid::Uuid::new_v4(), "iat": now, "exp": now + 600, "typ": "access"}),
        SECRET,
    );
    me(Some(ghost)).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_email() {
    let app = TestApp::spawn_with(|c| c.auth_attempts_per_email = 3).await;
    app.register("ann").await;
    let login = |email: &str| {
        app.post("/api/v1/auth/login")
            .json(json!({"email": email, "password": "wrong horse"}))
            .send()
    };
    // The registration counted as the first attempt for this address.
    login("ann@example.com")
        .await
        .problem(401, "invalid_credentials");
    login("ANN@example.com")
        .await
        .problem(401, "invalid_credentials");
    let res = login("ann@example.com").await;
    res.problem(429, "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Even the right password waits for the window.
    app.post("/api/v1/auth/login")
        .json(json!({"email": "ann@example.com", "password": "correct horse"}))
        .send()
        .await
        .problem(429, "rate_limited");
    // Another email is not affected.
    login("bob@example.com")
        .await
        .problem(401, "invalid_credentials");
}
