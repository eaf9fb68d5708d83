//! The whole story over HTTP: register, a second organization, a member, a
//! contact, a deal, a task, stage and status moves, and the deal's timeline.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{id_of, page_items, today_plus, TestApp, TestUser};

#[tokio::test]
async fn full_scenario_up_to_the_timeline() {
    let app = TestApp::spawn().await;

    // 1. Ann registers: she owns her first organization.
    let ann = app.user("ann").await;

    // 2. She creates a second organization.
    let res = ann
        .no_org()
        .post("/api/v1/organizations", json!({"name": "Second Org"}))
        .await;
    let org2 = res.ok(201).clone();
    assert_eq!(org2["name"], "Second Org");
    assert_eq!(org2["role"], "owner");
    let org: Uuid = org2["id"].as_str().unwrap().parse().unwrap();
    let mine = ann.no_org().get("/api/v1/organizations/me").await;
    assert_eq!(mine.ok(200)["items"].as_array().unwrap().len(), 2);

    // 3. She adds Bob to it as a member: she invites him, he accepts.
    let bob = app.user("bob").await;
    let res = ann
        .no_org()
        .post(
            &format!("/api/v1/organizations/{org}/members"),
            json!({"email": bob.email, "role": "member"}),
        )
        .await;
    assert_eq!(res.ok(201)["status"], "pending");
    let mine = bob.no_org().read("/api/v1/invitations").await;
    assert_eq!(mine["items"][0]["organization"]["id"], org.to_string());
    let invitation = id_of(&mine["items"][0]);
    assert_eq!(bob.accept(invitation).await["role"], "member");
    let bobs_orgs = bob.no_org().get("/api/v1/organizations/me").await;
    let second = bobs_orgs.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == org.to_string())
        .cloned()
        .expect("Bob sees the second organization");
    assert_eq!(second["role"], "member");

    let bob = bob.in_org(org);
    // 4. Bob creates a contact ...
    let contact = bob
        .create(
            "/api/v1/contacts",
            json!({"name": "Ada Lovelace", "email": "ada@engines.example", "phone": "+44 20 0000"}),
        )
        .await;
    assert_eq!(contact["owner_id"], bob.id.to_string());
    assert_eq!(contact["organization_id"], org.to_string());
    let contact_id = id_of(&contact);

    // 5. ... a deal on it ...
    let deal = bob.create("/api/v1/deals", json!({"contact_id": contact_id, "title": "Analytical Engine", "amount": "5000", "currency": "GBP"}))
        .await;
    assert_eq!(
        (
            &deal["status"],
            &deal["stage"],
            &deal["amount"],
            &deal["owner_id"]
        ),
        (
            &json!("new"),
            &json!("qualification"),
            &json!("5000.00"),
            &json!(bob.id.to_string())
        )
    );
    let deal_id = id_of(&deal);
    let deal_path = format!("/api/v1/deals/{deal_id}");

    // 6. ... and a task on the deal.
    let task = bob.create("/api/v1/tasks", json!({"deal_id": deal_id, "title": "Send the proposal", "description": "With drawings", "due_date": today_plus(1)}))
        .await;
    assert_eq!(task["deal_id"], deal_id.to_string());
    assert_eq!(task["is_done"], false);
    let task_id = id_of(&task);

    // 7. The deal moves along: stage, status, a comment, then won and closed.
    let patch = |user: &TestUser, body: Value| user.in_org(org).patch(&deal_path, body);
    let res = patch(&bob, json!({"stage": "proposal"})).await;
    assert_eq!(res.ok(200)["stage"], "proposal");
    let res = patch(&bob, json!({"status": "in_progress"})).await;
    assert_eq!(res.ok(200)["status"], "in_progress");
    let res = bob
        .post(
            &format!("{deal_path}/activities"),
            json!({"type": "comment", "payload": {"text": "They loved the drawings"}}),
        )
        .await;
    assert_eq!(res.ok(201)["author_id"], bob.id.to_string());
    let res = patch(&bob, json!({"status": "won", "stage": "closed"})).await;
    let won = res.ok(200).clone();
    assert_eq!(
        (&won["status"], &won["stage"]),
        (&json!("won"), &json!("closed"))
    );
    // Bob, a member, may not move it back; Ann, the owner, may.
    patch(&bob, json!({"stage": "negotiation"}))
        .await
        .problem(403, "stage_rollback_forbidden");
    let res = patch(&ann, json!({"stage": "negotiation"})).await;
    assert_eq!(res.ok(200)["stage"], "negotiation");
    // The task gets done.
    let res = bob
        .patch(
            &format!("/api/v1/tasks/{task_id}"),
            json!({"is_done": true}),
        )
        .await;
    assert_eq!(res.ok(200)["is_done"], true);

    // 8. The timeline, newest first.
    let timeline = bob.read(&format!("{deal_path}/activities")).await;
    let items = page_items(&timeline, 1, 20, 8);
    let got: Vec<(&str, Value, Value)> = items
        .iter()
        .map(|a| {
            assert_eq!(a["deal_id"], deal_id.to_string());
            assert_eq!(a["organization_id"], org.to_string());
            (
                a["type"].as_str().unwrap(),
                a["payload"].clone(),
                a["author_id"].clone(),
            )
        })
        .collect();
    let types: Vec<&str> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        types,
        [
            "stage_changed",
            "stage_changed",
            "status_changed",
            "comment",
            "status_changed",
            "stage_changed",
            "task_created",
            "system",
        ]
    );
    let row = |kind, payload, by: &TestUser| (kind, payload, json!(by.id.to_string()));
    let moved = |from: &str, to: &str| json!({"from": from, "to": to});
    let created = json!({"task_id": task_id.to_string(), "title": "Send the proposal", "due_date": today_plus(1)});
    assert_eq!(
        got[..7],
        [
            row("stage_changed", moved("closed", "negotiation"), &ann),
            row("stage_changed", moved("proposal", "closed"), &bob),
            row("status_changed", moved("in_progress", "won"), &bob),
            row("comment", json!({"text": "They loved the drawings"}), &bob),
            row("status_changed", moved("new", "in_progress"), &bob),
            row("stage_changed", moved("qualification", "proposal"), &bob),
            row("task_created", created, &bob),
        ]
    );

    // The deal as it stands, and the other organizations are untouched.
    let now = bob.read(&deal_path).await;
    assert_eq!(
        (&now["status"], &now["stage"], &now["amount"]),
        (&json!("won"), &json!("negotiation"), &json!("5000.00"))
    );
    let tasks = ann.in_org(org).read("/api/v1/tasks").await;
    assert_eq!(page_items(&tasks, 1, 20, 1)[0]["id"], task_id.to_string());
    for (user, other) in [(&ann, ann.org_id), (&bob, bob.org_id)] {
        for list in ["/api/v1/contacts", "/api/v1/deals", "/api/v1/tasks"] {
            let body = user.in_org(other).read(list).await;
            assert!(page_items(&body, 1, 20, 0).is_empty(), "{list}");
        }
        user.in_org(other)
            .get(&deal_path)
            .await
            .problem(404, "deal_not_found");
    }
}

#[tokio::test]
async fn deleting_an_organization_takes_its_pipeline_along() {
    let (app, ann) = TestApp::with_user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    let org = ann.org_id;
    // Ann keeps a second organization with data of its own.
    let res = ann
        .no_org()
        .post("/api/v1/organizations", json!({"name": "Keeper"}))
        .await;
    let keeper: Uuid = res.ok(201)["id"].as_str().unwrap().parse().unwrap();
    let kept_contact = ann.in_org(keeper).contact("Kept").await;
    let kept_deal = ann.in_org(keeper).deal(kept_contact, "Kept", "1").await;

    let contact = bob.contact("Client").await;
    let deal = bob.deal(contact, "Deal", "10").await;
    bob.task(deal, "Task", 1).await;
    ann.post(
        &format!("/api/v1/deals/{deal}/activities"),
        json!({"type": "comment", "payload": {"text": "bye"}}),
    )
    .await
    .ok(201);
    let res = ann
        .no_org()
        .delete(&format!("/api/v1/organizations/{org}"))
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    for user in [&ann, &bob] {
        user.in_org(org)
            .get("/api/v1/deals")
            .await
            .problem(404, "organization_not_found");
    }
    let db = app.sql().await;
    for table in ["contacts", "deals", "tasks", "activities"] {
        let n: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM crm.{table} WHERE organization_id = $1"),
                &[&org],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let body = ann.in_org(keeper).read("/api/v1/deals").await;
    assert_eq!(page_items(&body, 1, 20, 1)[0]["id"], kept_deal.to_string());
    assert_eq!(
        ann.in_org(keeper).timeline_types(kept_deal).await,
        ["system"]
    );
}
