//! Versions and ETags (SPEC §11): `ETag: "<version>"` on every answer that
//! holds a contact, deal, task or pipeline; `If-None-Match` → 304;
//! `If-Match` → 412 `precondition_failed` with nothing changed, decided by the
//! database in the write's own statement (so of racing writers with one
//! ETag exactly one wins); 400 for malformed conditions.

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::helpers::{at, id_of, TestApp, TestResponse, TestUser};

/// The ETag header of an answer.
#[track_caller]
fn etag(res: &TestResponse) -> String {
    res.headers
        .get(header::ETAG)
        .unwrap_or_else(|| panic!("no ETag on {} {}", res.status, res.body))
        .to_str()
        .unwrap()
        .to_owned()
}

/// One versioned resource: its collection, a body to create one, and a patch.
struct Kind {
    collection: &'static str,
    create: Value,
    patch: Value,
}

async fn kinds(user: &TestUser) -> Vec<Kind> {
    let contact = user.contact("Client").await;
    let deal = user.deal(contact, "Deal", "10.00").await;
    vec![
        Kind {
            collection: "/api/v1/contacts",
            create: json!({"name": "Ada"}),
            patch: json!({"phone": "+1 555"}),
        },
        Kind {
            collection: "/api/v1/deals",
            create: json!({"contact_id": contact, "title": "New", "amount": "5.00", "currency": "EUR"}),
            patch: json!({"title": "Renamed"}),
        },
        Kind {
            collection: "/api/v1/tasks",
            create: json!({"deal_id": deal, "title": "Call", "due_date": "2999-01-01"}),
            patch: json!({"is_done": true}),
        },
        Kind {
            collection: "/api/v1/pipelines",
            create: json!({"name": "Renewals", "stages": [{"key": "due", "name": "Due", "probability": 50}]}),
            patch: json!({"name": "Renewals EMEA"}),
        },
    ]
}

#[tokio::test]
async fn every_answer_with_one_record_has_its_version_as_etag_and_lists_have_none() {
    let (_app, user) = TestApp::with_user("ann").await;
    for kind in kinds(&user).await {
        let created = user.post(kind.collection, kind.create.clone()).await;
        let record = created.ok(201).clone();
        assert_eq!(
            (etag(&created).as_str(), &record["version"]),
            ("\"1\"", &json!(1)),
            "POST {}",
            kind.collection
        );
        let path = at(kind.collection, id_of(&record));
        let read = user.get(&path).await;
        assert_eq!(read.ok(200)["version"], 1);
        assert_eq!(etag(&read), "\"1\"", "GET {path}");

        let patched = user.patch(&path, kind.patch.clone()).await;
        assert_eq!(patched.ok(200)["version"], 2, "PATCH {path}");
        assert_eq!(etag(&patched), "\"2\"", "PATCH {path}: a new ETag");
        let again = user.get(&path).await;
        assert_eq!(etag(&again), "\"2\"", "GET {path} after the PATCH");
        assert_eq!(again.body["version"], 2);

        let list = user.get(kind.collection).await;
        list.ok(200);
        assert!(
            !list.headers.contains_key(header::ETAG),
            "a list has no ETag: {}",
            kind.collection
        );
    }
}

#[tokio::test]
async fn if_none_match_answers_304_without_a_body_while_the_record_is_unchanged() {
    let (_app, user) = TestApp::with_user("ann").await;
    for kind in kinds(&user).await {
        let record = user.create(kind.collection, kind.create.clone()).await;
        let path = at(kind.collection, id_of(&record));
        let get = |tag: &str| {
            user.req(Method::GET, &path)
                .header("If-None-Match", tag)
                .send()
        };
        for tag in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*", "\"x\",W/\"1\""] {
            let res = get(tag).await;
            assert_eq!(
                res.status,
                StatusCode::NOT_MODIFIED,
                "{path} If-None-Match: {tag}"
            );
            assert_eq!(res.body, Value::Null, "304 has no body");
            assert_eq!(etag(&res), "\"1\"", "304 keeps the ETag");
            assert!(!res.headers.contains_key(header::CONTENT_TYPE));
        }
        for tag in ["\"2\"", "\"01\"", "\"abc\""] {
            let res = get(tag).await;
            assert_eq!(
                res.ok(200)["id"],
                record["id"],
                "{path} If-None-Match: {tag}"
            );
            assert_eq!(etag(&res), "\"1\"");
        }
        // Changed: the old ETag no longer matches, the new one does.
        user.patch(&path, kind.patch.clone()).await.ok(200);
        assert_eq!(get("\"1\"").await.ok(200)["version"], 2);
        assert_eq!(get("\"2\"").await.status, StatusCode::NOT_MODIFIED);
        // A missing record is 404 whatever the condition.
        let missing = at(kind.collection, Uuid::new_v4());
        let res = user
            .req(Method::GET, &missing)
            .header("If-None-Match", "*")
            .send()
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn if_match_writes_only_the_version_it_names_and_a_stale_one_changes_nothing() {
    let (_app, user) = TestApp::with_user("ann").await;
    for kind in kinds(&user).await {
        let record = user.create(kind.collection, kind.create.clone()).await;
        let path = at(kind.collection, id_of(&record));
        let patch = |tag: &str| {
            user.req(Method::PATCH, &path)
                .header("If-Match", tag)
                .json(kind.patch.clone())
                .send()
        };
        // Stale, weak (strong comparison) or foreign tags: 412, nothing written.
        for tag in ["\"2\"", "W/\"1\"", "\"01\"", "\"a\", \"3\""] {
            patch(tag).await.problem(412, "precondition_failed");
            let now = user.get(&path).await;
            assert_eq!(
                now.ok(200),
                &record,
                "{path} after If-Match: {tag}: unchanged"
            );
        }
        // The current version (alone or in a list): written, a new ETag.
        let res = patch("\"9\", \"1\"").await;
        assert_eq!(res.ok(200)["version"], 2);
        assert_eq!(etag(&res), "\"2\"");
        // The ETag it replaced no longer matches; `*` matches any version.
        patch("\"1\"").await.problem(412, "precondition_failed");
        let res = patch("*").await;
        assert_eq!(
            (res.ok(200)["version"].clone(), etag(&res)),
            (json!(3), "\"3\"".to_owned())
        );

        // DELETE: stale → 412 and still there; current → 204 and gone.
        let delete = |tag: &str| {
            user.req(Method::DELETE, &path)
                .header("If-Match", tag)
                .send()
        };
        delete("\"2\"").await.problem(412, "precondition_failed");
        user.get(&path).await.ok(200);
        // (A pipeline too: the organization keeps Sales.)
        delete("\"3\"").await.no_content();
        user.get(&path)
            .await
            .problem(404, &format!("{}_not_found", singular(kind.collection)));
        // 404 wins over 412: a missing record is not found, whatever If-Match says.
        for tag in ["\"3\"", "\"1\"", "*"] {
            patch(tag)
                .await
                .problem(404, &format!("{}_not_found", singular(kind.collection)));
            delete(tag)
                .await
                .problem(404, &format!("{}_not_found", singular(kind.collection)));
        }
    }
}

fn singular(collection: &str) -> &'static str {
    match collection {
        "/api/v1/contacts" => "contact",
        "/api/v1/deals" => "deal",
        "/api/v1/tasks" => "task",
        "/api/v1/pipelines" => "pipeline",
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn malformed_conditions_are_400_on_every_method_that_reads_them() {
    let (_app, user) = TestApp::with_user("ann").await;
    let contact = user.contact("Client").await;
    let path = at("/api/v1/contacts", contact);
    let pipeline = id_of(&user.read("/api/v1/pipelines").await["items"][0]);
    let stages = format!("/api/v1/pipelines/{pipeline}/stages");
    const BAD: [&str; 9] = [
        "3",
        "'3'",
        "\"3",
        "\"3\" \"4\"",
        "w/\"3\"",
        "*, \"3\"",
        "\"a b\"",
        "",
        "W/ \"3\"",
    ];
    for bad in BAD {
        for (method, path, body) in [
            (Method::PATCH, path.clone(), Some(json!({"name": "x"}))),
            (Method::DELETE, path.clone(), None),
            (
                Method::POST,
                stages.clone(),
                Some(json!({"key": "demo", "name": "Demo", "probability": 5})),
            ),
            (
                Method::PATCH,
                format!("{stages}/proposal"),
                Some(json!({"probability": 5})),
            ),
            (Method::DELETE, format!("{stages}/negotiation"), None),
        ] {
            let mut req = user.req(method.clone(), &path).header("If-Match", bad);
            if let Some(body) = body {
                req = req.json(body);
            }
            let res = req.send().await;
            assert_eq!(
                res.field(400, "invalid_if_match"),
                "If-Match",
                "{method} {path} If-Match: {bad:?}"
            );
        }
        let res = user
            .req(Method::GET, &path)
            .header("If-None-Match", bad)
            .send()
            .await;
        assert_eq!(
            res.field(400, "invalid_if_none_match"),
            "If-None-Match",
            "GET If-None-Match: {bad:?}"
        );
    }
    // Nothing was written by any of them.
    let now = user.read(&path).await;
    assert_eq!(
        (now["name"].as_str(), now["version"].as_i64()),
        (Some("Client"), Some(1))
    );
    let sales = user.read(&format!("/api/v1/pipelines/{pipeline}")).await;
    assert_eq!(sales["version"], 1);
    assert_eq!(sales["stages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn stage_changes_are_changes_of_the_pipeline_and_take_its_if_match() {
    let (_app, owner) = TestApp::with_user("ann").await;
    let pipeline = id_of(&owner.read("/api/v1/pipelines").await["items"][0]);
    let path = format!("/api/v1/pipelines/{pipeline}");
    let stages = format!("{path}/stages");
    let read = owner.get(&path).await;
    assert_eq!(etag(&read), "\"1\"");
    let before = read.body.clone();

    // Add a stage with a stale ETag: 412, no stage; with the current: 201, v2.
    let add = |tag: &str| {
        owner
            .req(Method::POST, &stages)
            .header("If-Match", tag)
            .json(json!({"key": "demo", "name": "Demo", "probability": 20, "position": 2}))
            .send()
    };
    add("\"2\"").await.problem(412, "precondition_failed");
    assert_eq!(owner.read(&path).await, before, "nothing changed");
    let added = add("\"1\"").await;
    assert_eq!(
        added.ok(201)["version"],
        2,
        "one change, though it shifted three stages"
    );
    assert_eq!(etag(&added), "\"2\"");
    assert_eq!(etag(&owner.get(&path).await), "\"2\"");

    // Change a stage: the old ETag is stale now.
    let change = |tag: &str| {
        owner
            .req(Method::PATCH, &format!("{stages}/closed"))
            .header("If-Match", tag)
            .json(json!({"position": 1, "name": "Won"}))
            .send()
    };
    change("\"1\"").await.problem(412, "precondition_failed");
    let changed = change("\"2\"").await;
    assert_eq!(changed.ok(200)["stages"][0]["name"], "Won");
    assert_eq!(etag(&changed), "\"3\"");

    // Delete a stage: 412 when stale, 204 when current; the pipeline moved on.
    let delete = |tag: &str| {
        owner
            .req(Method::DELETE, &format!("{stages}/demo"))
            .header("If-Match", tag)
            .send()
    };
    delete("\"2\"").await.problem(412, "precondition_failed");
    delete("\"3\"").await.no_content();
    let after = owner.get(&path).await;
    assert_eq!(etag(&after), "\"4\"");
    assert_eq!(after.body["stages"].as_array().unwrap().len(), 4);

    // The pipeline's own PATCH sees the stage changes in its version.
    owner
        .req(Method::PATCH, &path)
        .header("If-Match", "\"3\"")
        .json(json!({"name": "Sales EMEA"}))
        .send()
        .await
        .problem(412, "precondition_failed");
    let renamed = owner
        .req(Method::PATCH, &path)
        .header("If-Match", "\"4\"")
        .json(json!({"name": "Sales EMEA"}))
        .send()
        .await;
    assert_eq!(etag(&renamed), "\"5\"");

    // A missing pipeline is 404 whatever If-Match says.
    owner
        .req(
            Method::POST,
            &format!("/api/v1/pipelines/{}/stages", Uuid::new_v4()),
        )
        .header("If-Match", "\"1\"")
        .json(json!({"key": "demo", "name": "Demo", "probability": 20}))
        .send()
        .await
        .problem(404, "pipeline_not_found");
}

#[tokio::test]
async fn another_organizations_record_is_404_with_any_condition() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let contact = at("/api/v1/contacts", ann.contact("Ann's client").await);
    for tag in ["\"1\"", "*"] {
        bob.req(Method::PATCH, &contact)
            .header("If-Match", tag)
            .json(json!({"name": "Stolen"}))
            .send()
            .await
            .problem(404, "contact_not_found");
        bob.req(Method::GET, &contact)
            .header("If-None-Match", tag)
            .send()
            .await
            .problem(404, "contact_not_found");
    }
    assert_eq!(ann.read(&contact).await["version"], 1);
}

/// `n` requests released at once.
async fn race(requests: Vec<crate::helpers::Req>) -> Vec<TestResponse> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|req| {
            let barrier = barrier.clone();
            let send = req.send_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                send.await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_patches_with_one_etag_exactly_one_wins() {
    let (app, user) = TestApp::with_user("ann").await;
    let contact = user.contact("Client").await;
    let deal = at(
        "/api/v1/deals",
        user.deal(contact, "Contested", "10.00").await,
    );
    let tag = etag(&user.get(&deal).await);
    let answers = race(
        (0..20)
            .map(|i| {
                user.req(Method::PATCH, &deal)
                    .header("If-Match", &tag)
                    .json(json!({"title": format!("Writer {i}")}))
            })
            .collect(),
    )
    .await;
    let won: Vec<&TestResponse> = answers.iter().filter(|r| r.status == 200).collect();
    let lost = answers
        .iter()
        .filter(|r| r.status == 412 && r.body["code"] == "precondition_failed")
        .count();
    assert_eq!(
        (won.len(), lost),
        (1, 19),
        "answers: {:?}",
        answers
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    let now = user.read(&deal).await;
    assert_eq!(now["version"], 2, "one step, exactly");
    assert_eq!(
        now["title"], won[0].body["title"],
        "the winner's write is the one kept"
    );
    let updates: i64 = app
        .value(
            "SELECT count(*) FROM crm.activities WHERE deal_id = $1",
            &[&id_of(&now)],
        )
        .await;
    assert_eq!(
        updates, 1,
        "only the creation is on the timeline (no status change)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_a_patch_with_one_etag_lets_exactly_one_through() {
    let (_app, user) = TestApp::with_user("ann").await;
    let contact = user.contact("Client").await;
    let (mut patches_won, mut deletes_won) = (0, 0);
    for round in 0..10 {
        let deal = at(
            "/api/v1/deals",
            user.deal(contact, &format!("Round {round}"), "10.00").await,
        );
        let tag = etag(&user.get(&deal).await);
        let mut answers = race(vec![
            user.req(Method::PATCH, &deal)
                .header("If-Match", &tag)
                .json(json!({"title": "Patched"})),
            user.req(Method::DELETE, &deal).header("If-Match", &tag),
        ])
        .await;
        let delete = answers.pop().unwrap();
        let patch = answers.pop().unwrap();
        match (patch.status.as_u16(), delete.status.as_u16()) {
            (200, 412) => {
                patches_won += 1;
                assert_eq!(delete.body["code"], "precondition_failed");
                let now = user.read(&deal).await;
                assert_eq!(
                    (now["title"].as_str(), now["version"].as_i64()),
                    (Some("Patched"), Some(2))
                );
            }
            (404, 204) => {
                deletes_won += 1;
                assert_eq!(
                    patch.body["code"], "deal_not_found",
                    "the PATCH found it gone"
                );
                user.get(&deal).await.problem(404, "deal_not_found");
            }
            other => panic!("round {round}: {other:?}: {} / {}", patch.body, delete.body),
        }
    }
    assert_eq!(patches_won + deletes_won, 10);
}

#[tokio::test]
async fn cors_exposes_the_etag_to_browsers() {
    let app = TestApp::spawn_with(|c| {
        c.cors_allowed_origins = Some("https://app.example".parse().unwrap())
    })
    .await;
    let user = app.user("ann").await;
    let contact = at("/api/v1/contacts", user.contact("Client").await);
    let res = user
        .req(Method::GET, &contact)
        .header("Origin", "https://app.example")
        .send()
        .await;
    let exposed = res.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
    assert_eq!(etag(&res), "\"1\"");
}

/// PUT by external id (SPEC §12) answers with the record's ETag, created or
/// updated, and takes `If-Match` like PATCH: a stale version is 412 with
/// nothing changed, and a version of a record that does not exist is 412
/// rather than a create.
#[tokio::test]
async fn upserts_by_external_id_answer_etags_and_honour_if_match() {
    let (_app, user) = TestApp::with_user("ann").await;
    let path = "/api/v1/contacts/by-external-id/crm-1";
    let put = |tag: Option<&str>, body: Value| {
        let mut req = user.req(Method::PUT, path).json(body);
        if let Some(tag) = tag {
            req = req.header("If-Match", tag);
        }
        req.send()
    };

    let absent = put(Some("\"1\""), json!({"name": "Ada"})).await;
    absent.problem(412, "precondition_failed");
    let listed = user.get("/api/v1/contacts?external_id=crm-1").await;
    assert_eq!(listed.ok(200)["items"], json!([]), "nothing was created");

    let created = put(None, json!({"name": "Ada"})).await;
    assert_eq!(created.ok(201)["version"], 1);
    assert_eq!(etag(&created), "\"1\"");

    let updated = put(Some("\"1\""), json!({"phone": "+1 555"})).await;
    assert_eq!(updated.ok(200)["version"], 2);
    assert_eq!(etag(&updated), "\"2\"");

    let stale = put(Some("\"1\""), json!({"phone": "+1 666"})).await;
    stale.problem(412, "precondition_failed");
    let read = user
        .get(&at("/api/v1/contacts", id_of(created.ok(201))))
        .await;
    assert_eq!(
        read.ok(200)["phone"],
        "+1 555",
        "a stale If-Match changes nothing"
    );

    let deal_path = "/api/v1/deals/by-external-id/opp-1";
    let contact = id_of(created.ok(201));
    let deal = user
        .req(Method::PUT, deal_path)
        .json(json!({"contact_id": contact, "title": "T", "amount": "1.00", "currency": "EUR"}))
        .send()
        .await;
    assert_eq!(etag(&deal), "\"1\"");
    let stale_deal = user
        .req(Method::PUT, deal_path)
        .header("If-Match", "\"7\"")
        .json(json!({"title": "U"}))
        .send()
        .await;
    stale_deal.problem(412, "precondition_failed");
}
