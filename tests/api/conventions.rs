//! The contract integrators meet first: the OpenAPI document's conventions.

use std::collections::HashSet;

use axum::http::{header, Method};
use serde_json::{json, Value};

use crate::helpers::{id_of, today_plus, TestApp};

/// (path, method, operation) for every operation of the served document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

#[tokio::test]
async fn operation_ids_are_unique_and_named_resource_action() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json").send().await.ok(200).clone();
    let ops = operations(&doc);
    assert!(ops.len() >= 36, "{} operations", ops.len());
    let mut seen = HashSet::new();
    let tags: HashSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["description"].is_string(), "tag without description: {t}");
            t["name"].as_str().unwrap()
        })
        .collect();
    for (path, method, op) in &ops {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(seen.insert(id.to_owned()), "{id} used twice");
        let (resource, action) = id.split_once('_').unwrap_or_else(|| panic!("{id}"));
        assert!(
            !resource.is_empty()
                && !action.is_empty()
                && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{id} is not <resource>_<action>"
        );
        assert!(op["summary"].is_string(), "{id}: no summary");
        let tag = op["tags"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no tag"));
        assert!(tags.contains(tag), "{id}: tag {tag} is not declared");
    }
}

#[tokio::test]
async fn shared_answers_and_headers_are_documented_on_every_operation() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json").send().await.ok(200).clone();
    let shared = &doc["components"]["responses"];
    assert!(shared["Unavailable"]["headers"]["Retry-After"].is_object());
    assert!(shared["Unauthenticated"]["headers"]["WWW-Authenticate"].is_object());
    for (path, method, op) in operations(&doc) {
        let label = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("503"), "{label}: no 503");
        let secured = op["security"][0]
            .as_object()
            .is_some_and(|s| s.contains_key("bearer"));
        if secured {
            assert_eq!(
                op["responses"]["401"]["$ref"], "#/components/responses/Unauthenticated",
                "{label}: bearer without the shared 401"
            );
        }
        if op["requestBody"].is_object() {
            assert!(responses.contains_key("413"), "{label}: no 413");
            assert!(responses.contains_key("400"), "{label}: no 400");
        }
        for (status, response) in responses {
            if response.get("$ref").is_some() {
                continue;
            }
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{label} {status}: X-Request-Id undocumented"
            );
            if status == "201" {
                assert!(
                    response["headers"]["Location"].is_object(),
                    "{label}: Location undocumented"
                );
            }
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"].is_object(),
                    "{label} {status}: not problem+json"
                );
            }
        }
    }
}

#[tokio::test]
async fn schemas_carry_the_database_constraints() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json").send().await.ok(200).clone();
    let schemas = &doc["components"]["schemas"];
    let new_deal = &schemas["NewDeal"]["properties"];
    assert_eq!(new_deal["currency"]["pattern"], "^[A-Z]{3}$");
    assert_eq!(new_deal["title"]["maxLength"], 200);
    assert_eq!(new_deal["title"]["minLength"], 1);
    // Money: a decimal string or a number, both bounded.
    let money: Vec<&str> = new_deal["amount"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(money, ["string", "number"]);
    assert_eq!(new_deal["amount"]["oneOf"][1]["minimum"], 0);
    assert_eq!(
        schemas["NewContact"]["properties"]["phone"]["maxLength"],
        50
    );
    assert_eq!(
        schemas["NewTask"]["properties"]["description"]["maxLength"],
        10000
    );
    // The register answer is flat: tokens beside the user and organization.
    let register = &schemas["RegisterResponse"];
    for field in [
        "user",
        "organization",
        "access_token",
        "refresh_token",
        "expires_in",
    ] {
        assert!(
            register["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field} not required in {register}"
        );
    }
    assert!(register.get("allOf").is_none());
    // Comment payloads are typed.
    assert_eq!(
        schemas["NewActivity"]["properties"]["payload"]["$ref"],
        "#/components/schemas/CommentPayload"
    );
    assert!(schemas["FunnelStage"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "conversion_pct"));
    assert_eq!(doc["servers"][0]["url"], "/");
}

#[tokio::test]
async fn swagger_ui_does_not_call_the_public_validator() {
    let app = TestApp::spawn().await;
    let res = app.get("/docs/swagger-initializer.js").send().await;
    let script = res.ok(200).as_str().unwrap().to_owned();
    assert!(
        script.contains("\"validatorUrl\": \"none\"")
            || script.contains("\"validatorUrl\":\"none\""),
        "{script}"
    );
}

#[tokio::test]
async fn every_201_says_where_the_created_record_is() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/api/v1/auth/register")
        .json(json!({"email": "loc@example.com", "password": "correct horse", "name": "Loc", "organization_name": "Loc Inc"}))
        .send()
        .await;
    assert!(res.ok(201)["user"]["id"].is_string());
    assert_eq!(res.headers[header::LOCATION], "/api/v1/users/me");
    let owner = app.register("owner").await;
    let friend = app.register("friend").await;

    // Each created record can be read back at its Location.
    let contact = app.contact(&owner, owner.org_id, "Ada").await;
    let deal_body = json!({"contact_id": contact, "title": "D", "amount": "5", "currency": "EUR"});
    let created = [
        ("/api/v1/contacts", json!({"name": "Bob"})),
        ("/api/v1/deals", deal_body),
        ("/api/v1/organizations", json!({"name": "Second"})),
    ];
    for (path, body) in created {
        let res = app
            .post(path)
            .token(&owner.access_token)
            .org(owner.org_id)
            .json(body)
            .send()
            .await;
        let record = res.ok(201).clone();
        let location = res.headers[header::LOCATION].to_str().unwrap().to_owned();
        assert_eq!(
            location,
            format!("{path}/{}", record["id"].as_str().unwrap())
        );
        let again = app
            .get(&location)
            .token(&owner.access_token)
            .org(owner.org_id)
            .send()
            .await;
        assert_eq!(again.ok(200)["id"], record["id"], "{location}");
    }
    let deal = id_of(&app.read(&owner, owner.org_id, "/api/v1/deals").await["items"][0]);
    let res = app
        .post("/api/v1/tasks")
        .token(&owner.access_token)
        .org(owner.org_id)
        .json(json!({"deal_id": deal, "title": "T", "due_date": today_plus(1)}))
        .send()
        .await;
    let task = res.ok(201).clone();
    assert_eq!(
        res.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v1/tasks/{}", task["id"].as_str().unwrap())
    );
    let res = app
        .post(&format!("/api/v1/deals/{deal}/activities"))
        .token(&owner.access_token)
        .org(owner.org_id)
        .json(json!({"type": "comment", "payload": {"text": "hi"}}))
        .send()
        .await;
    res.ok(201);
    assert_eq!(
        res.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v1/deals/{deal}/activities")
    );
    let res = app
        .post(&format!("/api/v1/organizations/{}/members", owner.org_id))
        .token(&owner.access_token)
        .json(json!({"email": friend.email, "role": "member"}))
        .send()
        .await;
    let invitation = res.ok(201)["id"].as_str().unwrap().to_owned();
    let location = format!(
        "/api/v1/organizations/{}/invitations/{invitation}",
        owner.org_id
    );
    assert_eq!(res.headers[header::LOCATION].to_str().unwrap(), location);
    // The Location answers with the invitation.
    let at = owner.no_org().read(&location).await;
    assert_eq!(at["id"], invitation.as_str());
}

#[tokio::test]
async fn token_answers_are_never_cached_and_attempts_are_counted_in_headers() {
    let app = TestApp::spawn().await;
    let user = app.register("cache").await;
    let login = || {
        app.post("/api/v1/auth/login")
            .json(json!({"email": user.email, "password": "correct horse"}))
            .send()
    };
    let res = login().await;
    res.ok(200);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    // The per-email limit (10 a minute) is the tighter one; registration spent one.
    assert_eq!(res.headers["ratelimit-limit"], "10");
    assert_eq!(res.headers["ratelimit-remaining"], "8");
    let reset: u64 = res.headers["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset));
    let refreshed = app
        .post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": res.body["refresh_token"]}))
        .send()
        .await;
    refreshed.ok(200);
    assert_eq!(refreshed.headers[header::CACHE_CONTROL], "no-store");
    // A wrong password counts too, and says so.
    let wrong = app
        .post("/api/v1/auth/login")
        .json(json!({"email": user.email, "password": "wrong horse"}))
        .send()
        .await;
    wrong.problem(401, "invalid_credentials");
    assert_eq!(wrong.headers["ratelimit-remaining"], "7");
    for _ in 0..7 {
        login().await.ok(200);
    }
    let limited = login().await;
    limited.problem(429, "rate_limited");
    assert_eq!(limited.headers["ratelimit-remaining"], "0");
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let app = TestApp::spawn().await;
    let res = app
        .req(Method::OPTIONS, "/api/v1/deals")
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await;
    assert!(!res
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let res = app
        .get("/healthz")
        .header("Origin", "https://app.example.com")
        .send()
        .await;
    assert!(!res
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn cors_answers_preflights_for_the_configured_origins_only() {
    let app = TestApp::spawn_with(|c| {
        c.cors_allowed_origins = Some("https://app.example.com".parse().unwrap())
    })
    .await;
    let preflight = |origin: &'static str| {
        app.req(Method::OPTIONS, "/api/v1/deals")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-organization-id",
            )
            .send()
    };
    let res = preflight("https://app.example.com").await;
    assert!(res.status.is_success(), "{}", res.status);
    assert_eq!(
        res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let methods = res.headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_owned();
    // Every method of the API (the PUT upserts too) is allowed.
    let doc = serde_json::to_value(minicrm::http::openapi()).unwrap();
    for item in doc["paths"].as_object().unwrap().values() {
        let keys = item.as_object().unwrap().keys();
        for method in
            keys.filter(|k| ["get", "put", "post", "patch", "delete"].contains(&k.as_str()))
        {
            let method = method.to_ascii_uppercase();
            assert!(
                methods.split(',').any(|m| m.trim() == method),
                "{method} is not in {methods}"
            );
        }
    }
    let allowed = res.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("x-organization-id") && allowed.contains("authorization"),
        "{allowed}"
    );
    let other = preflight("https://evil.example.com").await;
    assert!(!other
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // A real request from the origin can read the headers it needs.
    let user = app.register("cors").await;
    let res = app
        .post("/api/v1/contacts")
        .token(&user.access_token)
        .org(user.org_id)
        .header("Origin", "https://app.example.com")
        .json(json!({"name": "Ada"}))
        .send()
        .await;
    res.ok(201);
    assert_eq!(
        res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let exposed = res.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("location") && exposed.contains("x-request-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn answers_are_compressed_when_the_client_accepts_it() {
    let app = TestApp::spawn().await;
    let plain = app.get("/openapi.json").send().await;
    assert!(!plain.headers.contains_key(header::CONTENT_ENCODING));
    for (accept, encoding) in [("gzip", "gzip"), ("br", "br"), ("gzip, br", "br")] {
        let res = app
            .get("/openapi.json")
            .header("Accept-Encoding", accept)
            .send()
            .await;
        assert_eq!(res.status, 200);
        let got = res
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(got.is_some(), "{accept}: not compressed");
        if accept != "gzip, br" {
            assert_eq!(got.as_deref(), Some(encoding), "{accept}");
        }
    }
}

#[tokio::test]
async fn event_streams_are_never_compressed() {
    use axum::{routing::get, Router};
    use tower::ServiceExt;
    // The application's own compression layer, in front of a stream.
    let router = Router::new()
        .route(
            "/events",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    "data: tick\n\n".repeat(500),
                )
            }),
        )
        .route(
            "/json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "[0]".repeat(500),
                )
            }),
        )
        .layer(minicrm::http::compression());
    for (path, compressed) in [("/events", false), ("/json", true)] {
        let request = axum::http::Request::get(path)
            .header("Accept-Encoding", "gzip, br")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = router.clone().oneshot(request).await.unwrap();
        assert_eq!(
            res.headers().contains_key(header::CONTENT_ENCODING),
            compressed,
            "{path}"
        );
    }
}

#[tokio::test]
async fn cors_for_any_origin_echoes_the_origin_and_never_sends_a_star() {
    let app = TestApp::spawn_with(|c| c.cors_allowed_origins = Some("*".parse().unwrap())).await;
    let res = app
        .req(Method::OPTIONS, "/api/v1/contacts")
        .header("Origin", "https://anywhere.example")
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "last-event-id,if-match,idempotency-key",
        )
        .send()
        .await;
    assert_eq!(
        res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://anywhere.example"
    );
    let allowed = res.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "last-event-id",
        "if-match",
        "if-none-match",
        "idempotency-key",
    ] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }
    let vary = res
        .headers
        .get_all(header::VARY)
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    assert!(vary.contains("origin"), "{vary}");
}
