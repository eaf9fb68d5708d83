//! External ids (SPEC §12): set on POST and PATCH, unique per organization
//! and type, found by the lists' filter, and the upserts
//! `PUT /{contacts,deals}/by-external-id/{external_id}` (201 created, 200
//! updated, with the rules and the timeline of POST and PATCH).

use std::future::IntoFuture;

use axum::http::{header, Method};
use serde_json::{json, Value};

use crate::helpers::{id_of, Answer, TestApp, TestUser};

const CONTACTS: &str = "/api/v1/contacts";
const DEALS: &str = "/api/v1/deals";

fn put(user: &TestUser, path: &str, body: Value) -> Answer {
    user.req(Method::PUT, path).json(body).into_future()
}

fn contact_at(external_id: &str) -> String {
    format!("{CONTACTS}/by-external-id/{external_id}")
}

fn deal_at(external_id: &str) -> String {
    format!("{DEALS}/by-external-id/{external_id}")
}

#[tokio::test]
async fn external_ids_are_set_on_post_and_patch_and_unique_per_organization_and_type() {
    let app = TestApp::spawn().await;
    let ann = app.user("ext-ann").await;
    let bob = app.user("ext-bob").await;

    let first = ann
        .create(CONTACTS, json!({"name": "Ext", "external_id": "crm-1"}))
        .await;
    assert_eq!(first["external_id"], "crm-1");
    let again = ann
        .post(CONTACTS, json!({"name": "Twin", "external_id": "crm-1"}))
        .await;
    assert_eq!(
        again.field(409, "contacts_external_id_taken"),
        "external_id"
    );
    // The same external id on a deal, and in another organization.
    let contact = id_of(&first);
    let deal = ann
        .create(
            DEALS,
            json!({"contact_id": contact, "title": "D", "amount": 5, "currency": "EUR", "external_id": "crm-1"}),
        )
        .await;
    assert_eq!(deal["external_id"], "crm-1");
    let twin_deal = json!({"contact_id": contact, "title": "D2", "amount": 5, "currency": "EUR", "external_id": "crm-1"});
    assert_eq!(
        ann.post(DEALS, twin_deal)
            .await
            .field(409, "deals_external_id_taken"),
        "external_id"
    );
    bob.create(CONTACTS, json!({"name": "Bob's", "external_id": "crm-1"}))
        .await;

    // Length bounds: 1 to 255 characters (not bytes).
    let long = "é".repeat(255);
    assert_eq!(
        ann.create(CONTACTS, json!({"name": "Long", "external_id": long}))
            .await["external_id"],
        long.as_str()
    );
    for bad in [String::new(), "x".repeat(256)] {
        let res = ann
            .post(CONTACTS, json!({"name": "Bad", "external_id": bad}))
            .await;
        assert_eq!(
            res.field(400, "contacts_external_id_invalid"),
            "external_id"
        );
        let res = ann
            .post(
                DEALS,
                json!({"contact_id": contact, "title": "Bad", "amount": 1, "currency": "EUR", "external_id": bad}),
            )
            .await;
        assert_eq!(res.field(400, "deals_external_id_invalid"), "external_id");
    }

    // PATCH sets, keeps and clears it.
    let other = ann.contact("Other").await;
    let path = format!("{CONTACTS}/{other}");
    assert_eq!(
        ann.patch(&path, json!({"external_id": "crm-2"}))
            .await
            .ok(200)["external_id"],
        "crm-2"
    );
    assert_eq!(
        ann.patch(&path, json!({"name": "Renamed"})).await.ok(200)["external_id"],
        "crm-2"
    );
    assert_eq!(
        ann.patch(&path, json!({"external_id": "crm-1"}))
            .await
            .field(409, "contacts_external_id_taken"),
        "external_id"
    );
    assert_eq!(
        ann.patch(&path, json!({"external_id": null})).await.ok(200)["external_id"],
        Value::Null
    );
    let deal_path = format!("{DEALS}/{}", id_of(&deal));
    assert_eq!(
        ann.patch(&deal_path, json!({"external_id": "opp-1"}))
            .await
            .ok(200)["external_id"],
        "opp-1"
    );
    assert_eq!(
        ann.patch(&deal_path, json!({"status": "in_progress"}))
            .await
            .ok(200)["external_id"],
        "opp-1"
    );
    assert_eq!(
        ann.patch(&deal_path, json!({"external_id": null}))
            .await
            .ok(200)["external_id"],
        Value::Null
    );
}

#[tokio::test]
async fn the_lists_find_records_by_external_id() {
    let app = TestApp::spawn().await;
    let ann = app.user("extlist-ann").await;
    let bob = app.user("extlist-bob").await;
    let contact = ann
        .create(
            CONTACTS,
            json!({"name": "Ada Lovelace", "external_id": "hub/7 x"}),
        )
        .await;
    for n in 0..3 {
        ann.contact(&format!("Filler {n}")).await;
    }
    let deal = ann
        .create(
            DEALS,
            json!({"contact_id": id_of(&contact), "title": "D", "amount": 5, "currency": "EUR", "external_id": "opp-7"}),
        )
        .await;
    let found = ann
        .read(&format!("{CONTACTS}?external_id=hub%2F7%20x"))
        .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["id"], contact["id"]);
    assert_eq!(
        ann.read(&format!("{CONTACTS}?external_id=hub%2F7%20x&search=ada"))
            .await["total"],
        1
    );
    assert_eq!(
        ann.read(&format!("{CONTACTS}?external_id=hub%2F7%20x&search=filler"))
            .await["total"],
        0
    );
    assert_eq!(
        ann.read(&format!("{CONTACTS}?external_id=nope")).await["total"],
        0
    );
    let found = ann.read(&format!("{DEALS}?external_id=opp-7")).await;
    assert_eq!(found["items"][0]["id"], deal["id"]);
    assert_eq!(
        ann.read(&format!("{DEALS}?external_id=opp-7&status=won"))
            .await["total"],
        0
    );
    // Another organization's external id finds nothing.
    assert_eq!(
        bob.read(&format!("{DEALS}?external_id=opp-7")).await["total"],
        0
    );
    // Over 255 characters: 400, like any bad query value. (An empty
    // `external_id=` is no filter, as for every other parameter.)
    for path in [CONTACTS, DEALS] {
        let res = ann
            .get(&format!("{path}?external_id={}", "x".repeat(256)))
            .await;
        assert_eq!(res.field(400, "external_id_invalid"), "external_id");
    }
    // The filter is part of the cursor's query: a cursor of the unfiltered
    // list does not page the filtered one.
    let page = ann.read(&format!("{CONTACTS}?page_size=2")).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    ann.get(&format!(
        "{CONTACTS}?page_size=2&external_id=hub&cursor={cursor}"
    ))
    .await
    .problem(400, "invalid_cursor");
}

#[tokio::test]
async fn a_contact_upsert_creates_then_updates() {
    let app = TestApp::spawn().await;
    let ann = app.user("upc-ann").await;
    let res = put(
        &ann,
        &contact_at("hub-9"),
        json!({"name": "Hub Nine", "email": "nine@hub.test"}),
    )
    .await;
    let created = res.ok(201).clone();
    assert_eq!(created["external_id"], "hub-9");
    assert_eq!(created["owner_id"], ann.id.to_string());
    let location = res.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{CONTACTS}/{}", id_of(&created)));
    assert_eq!(ann.read(&location).await, created);

    // Again: 200, the same contact, only the fields given changed; null clears.
    let res = put(&ann, &contact_at("hub-9"), json!({"phone": "+1 555"})).await;
    let updated = res.ok(200).clone();
    assert!(res.headers.get(header::LOCATION).is_none());
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(
        (&updated["name"], &updated["email"], &updated["phone"]),
        (
            &json!("Hub Nine"),
            &json!("nine@hub.test"),
            &json!("+1 555")
        )
    );
    let cleared = put(&ann, &contact_at("hub-9"), json!({"email": null}))
        .await
        .ok(200)
        .clone();
    assert_eq!(cleared["email"], Value::Null);
    assert_eq!(
        app.value::<i64>(
            "SELECT count(*) FROM crm.contacts WHERE external_id = 'hub-9'",
            &[]
        )
        .await,
        1
    );

    // Body rules: creating needs a name; the body has no external_id; bad values.
    let res = put(&ann, &contact_at("hub-10"), json!({"email": "x@hub.test"})).await;
    assert_eq!(res.field(400, "validation_failed"), "name");
    let res = put(
        &ann,
        &contact_at("hub-10"),
        json!({"name": "N", "external_id": "other"}),
    )
    .await;
    assert_eq!(res.field(400, "validation_failed"), "external_id");
    let res = put(
        &ann,
        &contact_at("hub-10"),
        json!({"name": "N", "email": "no-at"}),
    )
    .await;
    assert_eq!(res.field(400, "contacts_email_invalid"), "email");
    // The path: percent-encoded, any characters, 1 to 255 of them.
    let odd = put(&ann, &contact_at("a%2Fb%20%C3%A9"), json!({"name": "Odd"}))
        .await
        .ok(201)
        .clone();
    assert_eq!(odd["external_id"], "a/b é");
    let res = put(&ann, &contact_at(&"x".repeat(256)), json!({"name": "N"})).await;
    assert_eq!(res.field(400, "external_id_invalid"), "external_id");
    let res = put(&ann, &contact_at(&"é".repeat(255)), json!({"name": "N"})).await;
    res.ok(201);
    // Nothing written by the refusals.
    assert_eq!(
        app.value::<i64>(
            "SELECT count(*) FROM crm.contacts WHERE organization_id = $1",
            &[&ann.org_id]
        )
        .await,
        3
    );
}

#[tokio::test]
async fn upserts_follow_the_role_rules() {
    let app = TestApp::spawn().await;
    let owner = app.user("upr-owner").await;
    let member = app.member_of(&owner, "upr-member", "member").await;
    let manager = app.member_of(&owner, "upr-manager", "manager").await;
    put(&owner, &contact_at("owned"), json!({"name": "Owner's"}))
        .await
        .ok(201);
    // A member may not change another member's contact, nor create one for
    // someone else; a manager may.
    let res = put(&member, &contact_at("owned"), json!({"name": "Mine"})).await;
    assert_eq!(res.field(403, "role_forbidden"), "owner_id");
    let res = put(
        &member,
        &contact_at("for-owner"),
        json!({"name": "N", "owner_id": owner.id}),
    )
    .await;
    assert_eq!(res.field(403, "role_forbidden"), "owner_id");
    put(&manager, &contact_at("owned"), json!({"name": "Managed"}))
        .await
        .ok(200);
    // A member's own deal: forward is free, back (R5) is for owner/admin.
    let contact = member.contact("Member's").await;
    put(
        &member,
        &deal_at("m-1"),
        json!({"contact_id": contact, "title": "M", "amount": 1, "currency": "EUR", "stage": "negotiation"}),
    )
    .await
    .ok(201);
    let res = put(&member, &deal_at("m-1"), json!({"stage": "proposal"})).await;
    assert_eq!(res.field(403, "stage_rollback_forbidden"), "stage");
    let res = put(&manager, &deal_at("m-1"), json!({"stage": "proposal"})).await;
    assert_eq!(res.field(403, "stage_rollback_forbidden"), "stage");
    put(&owner, &deal_at("m-1"), json!({"stage": "proposal"}))
        .await
        .ok(200);
    // Another member's deal.
    let res = put(&member, &deal_at("m-1"), json!({"title": "x"})).await;
    res.ok(200);
    let res = put(&manager, &deal_at("m-1"), json!({"owner_id": owner.id})).await;
    res.ok(200);
    let res = put(&member, &deal_at("m-1"), json!({"title": "y"})).await;
    assert_eq!(res.field(403, "role_forbidden"), "owner_id");
}

#[tokio::test]
async fn a_deal_upsert_creates_then_updates_with_the_timeline() {
    let app = TestApp::spawn().await;
    let ann = app.user("upd-ann").await;
    let bob = app.user("upd-bob").await;
    let contact = ann.contact("Client").await;

    // Creating needs contact_id (and the other create fields).
    let res = put(
        &ann,
        &deal_at("opp-1"),
        json!({"title": "T", "amount": 10, "currency": "EUR"}),
    )
    .await;
    assert_eq!(res.field(400, "validation_failed"), "contact_id");
    let res = put(&ann, &deal_at("opp-1"), json!({"contact_id": contact})).await;
    assert_eq!(res.field(400, "validation_failed"), "title");

    let res = put(
        &ann,
        &deal_at("opp-1"),
        json!({"contact_id": contact, "title": "One", "amount": "100.5", "currency": "EUR"}),
    )
    .await;
    let created = res.ok(201).clone();
    let deal = id_of(&created);
    assert_eq!(
        res.headers[header::LOCATION].to_str().unwrap(),
        format!("{DEALS}/{deal}")
    );
    assert_eq!(
        (&created["status"], &created["stage"], &created["amount"]),
        (&json!("new"), &json!("qualification"), &json!("100.50"))
    );
    assert_eq!(ann.timeline_types(deal).await, ["system"]);

    // Updating needs no contact_id; status and stage go on the timeline (R6).
    let updated = put(
        &ann,
        &deal_at("opp-1"),
        json!({"status": "in_progress", "stage": "proposal"}),
    )
    .await
    .ok(200)
    .clone();
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["title"], "One");
    let timeline = ann.timeline(deal).await;
    let changes: Vec<(&str, &Value)> = timeline
        .iter()
        .filter(|a| a["type"] != "system")
        .map(|a| (a["type"].as_str().unwrap(), &a["payload"]))
        .collect();
    assert_eq!(changes.len(), 2, "{timeline:?}");
    assert!(changes.contains(&(
        "status_changed",
        &json!({"from": "new", "to": "in_progress"})
    )));
    assert!(changes.contains(&(
        "stage_changed",
        &json!({"from": "qualification", "to": "proposal"})
    )));
    // R1 on the update path.
    let res = put(
        &ann,
        &deal_at("opp-1"),
        json!({"status": "won", "amount": 0}),
    )
    .await;
    res.problem(400, "deal_won_requires_amount");
    // Creating as won: created, then the status change, both on the timeline.
    let won = put(
        &ann,
        &deal_at("opp-2"),
        json!({"contact_id": contact, "title": "Two", "amount": 5, "currency": "EUR", "status": "won"}),
    )
    .await
    .ok(201)
    .clone();
    assert_eq!(won["status"], "won");
    assert!(won["closed_at"].is_string());
    // (One transaction: the same created_at, so compare them as a set.)
    let mut types = ann.timeline_types(id_of(&won)).await;
    types.sort();
    assert_eq!(types, ["status_changed", "system"]);
    let res = put(
        &ann,
        &deal_at("opp-3"),
        json!({"contact_id": contact, "title": "Three", "amount": 0, "currency": "EUR", "status": "won"}),
    )
    .await;
    assert_eq!(res.field(400, "deal_won_requires_amount"), "status");

    // Tenancy: another organization's contact is 404, its external ids are its own.
    let bobs = bob.contact("Bob's").await;
    let res = put(
        &ann,
        &deal_at("opp-4"),
        json!({"contact_id": bobs, "title": "X", "amount": 5, "currency": "EUR"}),
    )
    .await;
    assert_eq!(res.field(404, "deals_contact_id_not_found"), "contact_id");
    let res = put(&ann, &deal_at("opp-1"), json!({"contact_id": bobs})).await;
    assert_eq!(res.field(404, "deals_contact_id_not_found"), "contact_id");
    put(
        &bob,
        &deal_at("opp-1"),
        json!({"contact_id": bobs, "title": "Bob's one", "amount": 5, "currency": "USD"}),
    )
    .await
    .ok(201);
    assert_eq!(ann.read(&format!("{DEALS}/{deal}")).await["title"], "One");
    assert_eq!(
        app.value::<i64>(
            "SELECT count(*) FROM crm.deals WHERE organization_id = $1",
            &[&ann.org_id]
        )
        .await,
        2
    );
    // Bad paths and bodies.
    let res = put(&ann, &deal_at(&"x".repeat(256)), json!({"title": "T"})).await;
    assert_eq!(res.field(400, "external_id_invalid"), "external_id");
    let res = put(&ann, &deal_at("opp-1"), json!({"status": "closed"})).await;
    assert_eq!(res.field(400, "validation_failed"), "status");
    let res = ann
        .req(Method::PUT, &deal_at("opp-1"))
        .raw("text/plain", "{}")
        .await;
    res.problem(400, "unsupported_content_type");
}

/// 20 concurrent PUTs of one new external id: exactly one record, one 201,
/// the other 19 are 200 updates of it.
#[tokio::test]
async fn concurrent_upserts_of_a_new_external_id_create_exactly_one_record() {
    let app = TestApp::spawn().await;
    let ann = app.user("uprace-ann").await;
    let contact = ann.contact("Client").await;
    for (path, body, table) in [
        (
            contact_at("race-1"),
            json!({"name": "Racer"}),
            "crm.contacts",
        ),
        (
            deal_at("race-1"),
            json!({"contact_id": contact, "title": "Racer", "amount": 1, "currency": "EUR"}),
            "crm.deals",
        ),
    ] {
        let answers: Vec<_> = (0..20)
            .map(|_| tokio::spawn(put(&ann, &path, body.clone())))
            .collect();
        let mut statuses = Vec::new();
        let mut ids = Vec::new();
        for answer in answers {
            let res = answer.await.unwrap();
            statuses.push(res.status.as_u16());
            ids.push(res.body["id"].clone());
        }
        statuses.sort_unstable();
        let mut want = vec![200; 19];
        want.push(201);
        assert_eq!(statuses, want, "{path}");
        assert!(ids.iter().all(|id| *id == ids[0]), "{path}: {ids:?}");
        let sql = format!("SELECT count(*) FROM {table} WHERE external_id = 'race-1'");
        assert_eq!(app.value::<i64>(&sql, &[]).await, 1, "{path}");
    }
    // The deal's timeline: one deal_created, nothing from the 19 updates
    // (they changed no status or stage).
    let deal = id_of(&ann.read(&format!("{DEALS}?external_id=race-1")).await["items"][0]);
    assert_eq!(ann.timeline_types(deal).await, ["system"]);
}
