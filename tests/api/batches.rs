//! Batches (SPEC §12): `POST /{contacts,deals,tasks}/batch` creates 1 to 100
//! records in order, all or nothing, every rule and timeline row per item; a
//! bad item answers its own error with `errors[].field` prefixed by its place.

use axum::http::header;
use serde_json::{json, Value};

use crate::helpers::{id_of, today_plus, TestApp};

const CONTACTS: &str = "/api/v1/contacts";
const DEALS: &str = "/api/v1/deals";
const TASKS: &str = "/api/v1/tasks";

async fn count(app: &TestApp, table: &str, org: uuid::Uuid) -> i64 {
    app.value(
        &format!("SELECT count(*) FROM crm.{table} WHERE organization_id = $1"),
        &[&org],
    )
    .await
}

/// The rows an organization has in the tables a batch writes to.
async fn snapshot(app: &TestApp, org: uuid::Uuid) -> Vec<i64> {
    let mut out = Vec::new();
    for table in ["contacts", "deals", "tasks", "activities"] {
        out.push(count(app, table, org).await);
    }
    out
}

#[tokio::test]
async fn a_batch_of_100_deals_creates_100_with_their_timeline() {
    let app = TestApp::spawn().await;
    let ann = app.user("batch-ann").await;
    let contact = ann.contact("Client").await;
    let items: Vec<Value> = (0..100)
        .map(|n| json!({"contact_id": contact, "title": format!("Deal {n:03}"), "amount": format!("{n}.50"), "currency": "EUR", "external_id": format!("b-{n}")}))
        .collect();
    let res = ann
        .post(&format!("{DEALS}/batch"), json!({ "items": items }))
        .await;
    let body = res.ok(201).clone();
    assert_eq!(res.headers[header::LOCATION], DEALS);
    let created = body["items"].as_array().unwrap();
    assert_eq!(created.len(), 100);
    for (n, deal) in created.iter().enumerate() {
        assert_eq!(deal["title"], format!("Deal {n:03}"));
        assert_eq!(deal["amount"], format!("{n}.50"));
        assert_eq!(deal["external_id"], format!("b-{n}"));
        assert_eq!(deal["status"], "new");
        assert_eq!(ann.read(&format!("{DEALS}/{}", id_of(deal))).await, *deal);
    }
    assert_eq!(count(&app, "deals", ann.org_id).await, 100);
    let created_rows: i64 = app
        .value(
            "SELECT count(*) FROM crm.activities
              WHERE organization_id = $1 AND type = 'system' AND payload ->> 'event' = 'deal_created'
                AND author_id = $2",
            &[&ann.org_id, &ann.id],
        )
        .await;
    assert_eq!(created_rows, 100, "one deal_created row per deal");
    // The caches see them: the summary counts 100 new deals.
    let summary = ann.read("/api/v1/analytics/deals/summary").await;
    assert_eq!(summary["by_status"][0]["count"], 100);
}

#[tokio::test]
async fn batch_sizes_are_1_to_100() {
    let app = TestApp::spawn().await;
    let ann = app.user("batchsize-ann").await;
    for path in [CONTACTS, DEALS, TASKS] {
        let res = ann
            .post(&format!("{path}/batch"), json!({"items": []}))
            .await;
        assert_eq!(res.field(400, "batch_size_invalid"), "items", "{path}");
    }
    let items: Vec<Value> = (0..101).map(|n| json!({"name": format!("C{n}")})).collect();
    let res = ann
        .post(&format!("{CONTACTS}/batch"), json!({ "items": items }))
        .await;
    assert_eq!(res.field(400, "batch_size_invalid"), "items");
    let items: Vec<Value> = (0..100).map(|n| json!({"name": format!("C{n}")})).collect();
    ann.post(&format!("{CONTACTS}/batch"), json!({ "items": items }))
        .await
        .ok(201);
    for body in [
        json!({}),
        json!({"items": {}}),
        json!([]),
        json!({"items": [], "x": 1}),
    ] {
        ann.post(&format!("{CONTACTS}/batch"), body)
            .await
            .problem(400, "validation_failed");
    }
}

#[tokio::test]
async fn a_bad_item_rejects_the_whole_batch_and_names_its_place() {
    let app = TestApp::spawn().await;
    let ann = app.user("batchbad-ann").await;
    ann.create(CONTACTS, json!({"name": "Taken", "external_id": "taken"}))
        .await;
    let before = count(&app, "contacts", ann.org_id).await;
    let good = |n: usize| json!({"name": format!("Good {n}")});
    let with = |bad: Value| {
        let mut items: Vec<Value> = (0..5).map(good).collect();
        items[3] = bad;
        json!({ "items": items })
    };
    let path = format!("{CONTACTS}/batch");
    // Found by serde while parsing: the field's path, with the item's index.
    let res = ann.post(&path, with(json!({"name": 5}))).await;
    assert_eq!(res.field(400, "validation_failed"), "items[3].name");
    let res = ann
        .post(&path, with(json!({"name": "N", "nickname": "x"})))
        .await;
    let field = res.field(400, "validation_failed").as_str().unwrap();
    assert!(field.starts_with("items[3]"), "{field}");
    let res = ann
        .post(&path, with(json!({"email": "x@example.com"})))
        .await;
    assert_eq!(res.field(400, "validation_failed"), "items[3]");
    // Found by the database: the item's own error, its field prefixed.
    let res = ann
        .post(&path, with(json!({"name": "N", "email": "no-at-sign"})))
        .await;
    let problem = res.problem(400, "contacts_email_invalid");
    assert_eq!(problem["errors"][0]["field"], "items[3].email");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("items[3]: "),
        "{problem}"
    );
    let res = ann.post(&path, with(json!({"name": " \t "}))).await;
    assert_eq!(res.field(400, "contacts_name_invalid"), "items[3].name");
    let res = ann
        .post(&path, with(json!({"name": "N", "external_id": "taken"})))
        .await;
    assert_eq!(
        res.field(409, "contacts_external_id_taken"),
        "items[3].external_id"
    );
    // Two items with one external id: the second is the one in conflict.
    let res = ann
        .post(
            &path,
            json!({"items": [{"name": "A", "external_id": "twin"}, {"name": "B", "external_id": "twin"}]}),
        )
        .await;
    assert_eq!(
        res.field(409, "contacts_external_id_taken"),
        "items[1].external_id"
    );
    // An owner who is no member: 404, item 3.
    let res = ann
        .post(
            &path,
            with(json!({"name": "N", "owner_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(
        res.field(404, "contacts_owner_id_not_member"),
        "items[3].owner_id"
    );
    // Nothing of items 0-2 stayed, after any of them.
    assert_eq!(count(&app, "contacts", ann.org_id).await, before);
}

#[tokio::test]
async fn batches_follow_the_role_rules_per_item() {
    let app = TestApp::spawn().await;
    let owner = app.user("batchrole-owner").await;
    let member = app.member_of(&owner, "batchrole-member", "member").await;
    let before = count(&app, "contacts", owner.org_id).await;
    // A member may create for themselves, not for someone else (item 1).
    let res = member
        .post(
            &format!("{CONTACTS}/batch"),
            json!({"items": [{"name": "Mine"}, {"name": "Theirs", "owner_id": owner.id}]}),
        )
        .await;
    assert_eq!(res.field(403, "role_forbidden"), "items[1].owner_id");
    assert_eq!(count(&app, "contacts", owner.org_id).await, before);
    // R3: a member's task on the owner's deal (item 0).
    let contact = owner.contact("Owner's").await;
    let deal = owner.deal(contact, "Owner's deal", "10").await;
    let mine = member.contact("Member's").await;
    let my_deal = member.deal(mine, "Member's deal", "10").await;
    let res = member
        .post(
            &format!("{TASKS}/batch"),
            json!({"items": [
                {"deal_id": deal, "title": "Not mine", "due_date": today_plus(1)},
                {"deal_id": my_deal, "title": "Mine", "due_date": today_plus(1)},
            ]}),
        )
        .await;
    assert_eq!(res.field(403, "deal_not_owned"), "items[0].deal_id");
    assert_eq!(count(&app, "tasks", owner.org_id).await, 0);
}

#[tokio::test]
async fn task_batches_apply_r4_and_r7_per_item() {
    let app = TestApp::spawn().await;
    let ann = app.user("batchtask-ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    let path = format!("{TASKS}/batch");
    let res = ann
        .post(
            &path,
            json!({"items": [
                {"deal_id": deal, "title": "Today", "due_date": today_plus(0)},
                {"deal_id": deal, "title": "Yesterday", "due_date": today_plus(-1)},
            ]}),
        )
        .await;
    assert_eq!(res.field(400, "tasks_due_date_past"), "items[1].due_date");
    let res = ann
        .post(
            &path,
            json!({"items": [{"deal_id": deal, "title": "T", "due_date": "tomorrow"}]}),
        )
        .await;
    assert_eq!(res.field(400, "validation_failed"), "items[0].due_date");
    assert_eq!(count(&app, "tasks", ann.org_id).await, 0);
    assert_eq!(ann.timeline_types(deal).await, ["system"]);

    let res = ann
        .post(
            &path,
            json!({"items": [
                {"deal_id": deal, "title": "One", "due_date": today_plus(1), "description": "first"},
                {"deal_id": deal, "title": "Two", "due_date": today_plus(2)},
            ]}),
        )
        .await;
    let body = res.ok(201).clone();
    assert_eq!(res.headers[header::LOCATION], TASKS);
    let titles: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["One", "Two"]);
    assert_eq!(body["items"][0]["description"], "first");
    let mut types = ann.timeline_types(deal).await;
    types.sort();
    assert_eq!(types, ["system", "task_created", "task_created"]);
}

/// Another organization's ids in a batch: 404 for that item, nothing written
/// in either organization.
#[tokio::test]
async fn cross_organization_ids_in_a_batch_are_not_found() {
    let app = TestApp::spawn().await;
    let ann = app.user("batchx-ann").await;
    let bob = app.user("batchx-bob").await;
    let mine = ann.contact("Ann's").await;
    let bobs_contact = bob.contact("Bob's").await;
    let bobs_deal = bob.deal(bobs_contact, "Bob's deal", "10").await;
    let bobs_pipeline: uuid::Uuid = app
        .value(
            "SELECT id FROM crm.pipelines WHERE organization_id = $1",
            &[&bob.org_id],
        )
        .await;
    let (ann_before, bob_before) = (
        snapshot(&app, ann.org_id).await,
        snapshot(&app, bob.org_id).await,
    );
    let deal = |contact, extra: Value| {
        let mut d = json!({"contact_id": contact, "title": "D", "amount": 1, "currency": "EUR"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    let cases = [
        (
            json!([
                deal(mine, json!({})),
                deal(mine, json!({})),
                deal(bobs_contact, json!({}))
            ]),
            "deals_contact_id_not_found",
            "items[2].contact_id",
        ),
        (
            json!([deal(mine, json!({"owner_id": bob.id}))]),
            "deals_owner_id_not_member",
            "items[0].owner_id",
        ),
        (
            json!([
                deal(mine, json!({})),
                deal(mine, json!({"pipeline_id": bobs_pipeline}))
            ]),
            "pipeline_not_found",
            "items[1].pipeline_id",
        ),
    ];
    for (items, code, field) in cases {
        let res = ann
            .post(&format!("{DEALS}/batch"), json!({ "items": items }))
            .await;
        assert_eq!(res.field(404, code), field);
    }
    let res = ann
        .post(
            &format!("{TASKS}/batch"),
            json!({"items": [{"deal_id": bobs_deal, "title": "T", "due_date": today_plus(1)}]}),
        )
        .await;
    assert_eq!(
        res.field(404, "tasks_deal_id_not_found"),
        "items[0].deal_id"
    );
    let res = ann
        .post(
            &format!("{CONTACTS}/batch"),
            json!({"items": [{"name": "C", "owner_id": bob.id}]}),
        )
        .await;
    assert_eq!(
        res.field(404, "contacts_owner_id_not_member"),
        "items[0].owner_id"
    );
    assert_eq!(snapshot(&app, ann.org_id).await, ann_before);
    assert_eq!(snapshot(&app, bob.org_id).await, bob_before);
}
