//! The contract integrators meet first: the OpenAPI document's conventions.

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::TestApp;

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
