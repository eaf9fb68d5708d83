//! The trash (SPEC §11, README "Trash"): DELETE moves a record there, it
//! vanishes from every read, `GET /trash` lists it, `POST …/restore` brings it
//! back, `DELETE /trash/…` erases it (owner/admin), with the role matrix,
//! parent_in_trash, R2 and cross-organization ids.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_timestamp, ids, page_items, today_plus, TestApp, TestUser,
};

fn trash(kind: &str, id: Uuid) -> String {
    format!("/api/v1/trash/{kind}/{id}")
}

fn restore(kind: &str, id: Uuid) -> String {
    format!("/api/v1/trash/{kind}/{id}/restore")
}

async fn trash_ids(user: &TestUser, query: &str) -> Vec<Uuid> {
    ids(user
        .read(&format!("/api/v1/trash?page_size=100{query}"))
        .await["items"]
        .as_array()
        .unwrap())
}

async fn list_ids(user: &TestUser, path: &str) -> Vec<Uuid> {
    ids(user.read(path).await["items"].as_array().unwrap())
}

#[tokio::test]
async fn a_deleted_deal_goes_to_the_trash_with_its_tasks_and_comes_back() {
    let (_app, owner) = TestApp::with_user("trash-owner").await;
    let contact = owner.contact("Ada").await;
    let deal = owner.deal(contact, "Big one", "900.00").await;
    let task = owner.task(deal, "Call", 3).await;
    owner.comment(deal, "hello").await;
    let deal_path = format!("/api/v1/deals/{deal}");
    let task_path = format!("/api/v1/tasks/{task}");
    let before = owner.read(&deal_path).await;
    let timeline = owner.timeline(deal).await;

    owner.delete(&deal_path).await.no_content();
    owner.get(&deal_path).await.problem(404, "deal_not_found");
    owner
        .patch(&deal_path, json!({"title": "X"}))
        .await
        .problem(404, "deal_not_found");
    owner
        .delete(&deal_path)
        .await
        .problem(404, "deal_not_found");
    owner.get(&task_path).await.problem(404, "task_not_found");
    owner
        .get(&format!("{deal_path}/activities"))
        .await
        .problem(404, "deal_not_found");
    owner
        .get(&format!("{deal_path}/stage-history"))
        .await
        .problem(404, "deal_not_found");
    assert!(!list_ids(&owner, "/api/v1/deals").await.contains(&deal));
    assert!(!list_ids(&owner, "/api/v1/tasks").await.contains(&task));
    assert_eq!(
        owner.read(&format!("/api/v1/tasks?deal_id={deal}")).await["total"],
        0
    );

    // The trash: both, newest first, with who and when.
    let body = owner.read("/api/v1/trash").await;
    let items = page_items(&body, 1, 20, 2);
    let mut got = ids(&items);
    got.sort();
    let mut want = vec![deal, task];
    want.sort();
    assert_eq!(got, want);
    let item = items.iter().find(|i| i["id"] == json!(deal)).unwrap();
    assert_eq!(item["type"], "deal");
    assert_eq!(item["name_or_title"], "Big one");
    assert_eq!(item["deleted_by"], json!(owner.id));
    assert_timestamp(&item["deleted_at"]);
    assert_eq!(trash_ids(&owner, "&type=deal").await, vec![deal]);
    assert_eq!(trash_ids(&owner, "&type=task").await, vec![task]);
    assert!(trash_ids(&owner, "&type=contact").await.is_empty());

    // Restoring the deal brings back the record as it was, with its task and timeline.
    // Trashing and restoring are changes: the version moved twice, so an
    // ETag from before the trash no longer matches.
    let restored = owner.post(&restore("deal", deal), json!({})).await;
    let mut expected = before.clone();
    expected["version"] = json!(before["version"].as_i64().unwrap() + 2);
    assert_eq!(restored.ok(200), &expected);
    assert_eq!(
        restored.headers.get("etag").unwrap(),
        &format!("\"{}\"", expected["version"])
    );
    assert_eq!(owner.read(&deal_path).await, expected);
    owner.read(&task_path).await;
    assert_eq!(owner.timeline(deal).await, timeline);
    assert!(trash_ids(&owner, "").await.is_empty());
    owner
        .post(&restore("deal", deal), json!({}))
        .await
        .problem(404, "deal_not_found");
}

#[tokio::test]
async fn trashed_records_vanish_from_search_and_analytics() {
    let (_app, owner) = TestApp::with_user("trash-analytics").await;
    let contact = owner.contact("Zanzibar Trading").await;
    let deal = owner.deal(contact, "Spice", "250.00").await;
    let count_new = |summary: &Value| summary["by_status"][0]["count"].clone();
    let summary = owner.read("/api/v1/analytics/deals/summary").await;
    assert_eq!(count_new(&summary), 1);
    assert_eq!(summary["new_deals"], 1);
    let funnel = owner.read("/api/v1/analytics/deals/funnel").await;
    let velocity = owner.read("/api/v1/analytics/deals/velocity").await;
    assert_eq!(velocity["stages"][0]["current"], 1);
    assert_eq!(
        list_ids(&owner, "/api/v1/contacts?search=zanz").await,
        vec![contact]
    );

    owner
        .delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    owner
        .delete(&format!("/api/v1/contacts/{contact}"))
        .await
        .no_content();
    assert!(list_ids(&owner, "/api/v1/contacts?search=zanz")
        .await
        .is_empty());
    assert!(list_ids(&owner, "/api/v1/contacts").await.is_empty());
    owner
        .get(&format!("/api/v1/contacts/{contact}"))
        .await
        .problem(404, "contact_not_found");
    let empty = owner.read("/api/v1/analytics/deals/summary").await;
    assert_eq!(count_new(&empty), 0);
    assert_eq!(empty["by_status"][0]["amounts"], json!([]));
    assert_eq!(empty["new_deals"], 0);
    let empty_funnel = owner.read("/api/v1/analytics/deals/funnel").await;
    assert_eq!(empty_funnel["stages"][0]["count"], 0);
    assert_eq!(
        owner.read("/api/v1/analytics/deals/velocity").await["stages"][0]["current"],
        0
    );
    let forecast = owner.read("/api/v1/analytics/deals/forecast").await;
    assert_eq!(forecast["unscheduled"], json!([]));

    // Back, and counted again.
    owner
        .post(&restore("contact", contact), json!({}))
        .await
        .ok(200);
    owner.post(&restore("deal", deal), json!({})).await.ok(200);
    assert_eq!(owner.read("/api/v1/analytics/deals/summary").await, summary);
    assert_eq!(owner.read("/api/v1/analytics/deals/funnel").await, funnel);
    assert_eq!(
        owner.read("/api/v1/analytics/deals/velocity").await["stages"][0]["current"],
        1
    );
    assert_eq!(
        list_ids(&owner, "/api/v1/contacts?search=zanz").await,
        vec![contact]
    );
}

#[tokio::test]
async fn r2_references_and_parents_in_the_trash() {
    let (_app, owner) = TestApp::with_user("trash-refs").await;
    let contact = owner.contact("Bea").await;
    let other = owner.contact("Cy").await;
    let deal = owner.deal(contact, "One", "10.00").await;
    let task = owner.task(deal, "Do", 1).await;
    let contact_path = format!("/api/v1/contacts/{contact}");
    owner
        .delete(&contact_path)
        .await
        .problem(409, "contact_has_deals");
    owner
        .delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    // R2 counts only the deals that are not in the trash.
    owner.delete(&contact_path).await.no_content();

    // References to trashed records are 404, as to missing ones.
    let body = json!({"contact_id": contact, "title": "T", "amount": "1.00", "currency": "EUR"});
    assert_eq!(
        owner
            .post("/api/v1/deals", body)
            .await
            .field(404, "deals_contact_id_not_found"),
        "contact_id"
    );
    let live = owner.deal(other, "Two", "10.00").await;
    owner
        .patch(
            &format!("/api/v1/deals/{live}"),
            json!({"contact_id": contact}),
        )
        .await
        .problem(404, "deals_contact_id_not_found");
    let body = json!({"deal_id": deal, "title": "T", "due_date": today_plus(1)});
    owner
        .post("/api/v1/tasks", body)
        .await
        .problem(404, "tasks_deal_id_not_found");
    let body = json!({"type": "comment", "payload": {"text": "hi"}});
    owner
        .post(&format!("/api/v1/deals/{deal}/activities"), body)
        .await
        .problem(404, "activities_deal_id_not_found");

    // Restoring needs the parent out of the trash first.
    assert_eq!(
        owner
            .post(&restore("deal", deal), json!({}))
            .await
            .field(409, "parent_in_trash"),
        "contact_id"
    );
    assert_eq!(
        owner
            .post(&restore("task", task), json!({}))
            .await
            .field(409, "parent_in_trash"),
        "deal_id"
    );
    owner
        .post(&restore("contact", contact), json!({}))
        .await
        .ok(200);
    owner.post(&restore("deal", deal), json!({})).await.ok(200);
    owner.read(&format!("/api/v1/tasks/{task}")).await;
}

#[tokio::test]
async fn restore_follows_the_delete_rules_and_erase_is_for_owners_and_admins() {
    let (app, owner) = TestApp::with_user("trash-roles").await;
    let admin = app.member_of(&owner, "trash-admin", "admin").await;
    let manager = app.member_of(&owner, "trash-manager", "manager").await;
    let member = app.member_of(&owner, "trash-member", "member").await;
    let deal_of = |user: TestUser| async move {
        let contact = user.contact("C").await;
        let deal = user.deal(contact, "D", "5.00").await;
        user.delete(&format!("/api/v1/deals/{deal}"))
            .await
            .no_content();
        deal
    };
    let members_deal = deal_of(member.clone()).await;
    let managers_deal = deal_of(manager.clone()).await;

    // Every role reads the trash.
    for user in [&owner, &admin, &manager, &member] {
        assert_eq!(trash_ids(user, "&type=deal").await.len(), 2);
    }
    // A member restores her own records only.
    member
        .post(&restore("deal", managers_deal), json!({}))
        .await
        .problem(403, "role_forbidden");
    member
        .post(&restore("deal", members_deal), json!({}))
        .await
        .ok(200);
    member
        .delete(&format!("/api/v1/deals/{members_deal}"))
        .await
        .no_content();
    manager
        .post(&restore("deal", members_deal), json!({}))
        .await
        .ok(200);
    member
        .delete(&format!("/api/v1/deals/{members_deal}"))
        .await
        .no_content();

    // Erasing: owner and admin only.
    for user in [&member, &manager] {
        user.delete(&trash("deal", members_deal))
            .await
            .problem(403, "role_forbidden");
    }
    admin
        .delete(&trash("deal", members_deal))
        .await
        .no_content();
    owner
        .delete(&trash("deal", managers_deal))
        .await
        .no_content();
    assert!(trash_ids(&owner, "").await.is_empty());
    let gone: i64 = app
        .value(
            "SELECT count(*) FROM crm.deals WHERE id = ANY ($1)",
            &[&vec![members_deal, managers_deal]],
        )
        .await;
    assert_eq!(gone, 0, "erased for good");
}

#[tokio::test]
async fn erase_rules_and_bad_requests() {
    let (app, owner) = TestApp::with_user("trash-erase").await;
    let contact = owner.contact("Dee").await;
    let deal = owner.deal(contact, "Gone", "7.00").await;
    let task = owner.task(deal, "T", 2).await;
    owner.comment(deal, "kept with it").await;
    owner
        .delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    owner
        .delete(&format!("/api/v1/contacts/{contact}"))
        .await
        .no_content();
    // A contact whose deals are in the trash: erase them first.
    owner
        .delete(&trash("contact", contact))
        .await
        .problem(409, "contact_has_deals");
    owner.delete(&trash("deal", deal)).await.no_content();
    owner
        .delete(&trash("deal", deal))
        .await
        .problem(404, "deal_not_found");
    owner
        .post(&restore("task", task), json!({}))
        .await
        .problem(404, "task_not_found");
    let left: i64 = app
        .value(
            "SELECT (SELECT count(*) FROM crm.tasks WHERE deal_id = $1) + (SELECT count(*) FROM crm.activities WHERE deal_id = $1)",
            &[&deal],
        )
        .await;
    assert_eq!(left, 0, "the deal's tasks and timeline went with it");
    owner.delete(&trash("contact", contact)).await.no_content();

    // Not in the trash: 404; bad paths and queries: 400.
    let live = owner.contact("Live").await;
    owner
        .delete(&trash("contact", live))
        .await
        .problem(404, "contact_not_found");
    owner
        .post(&restore("contact", live), json!({}))
        .await
        .problem(404, "contact_not_found");
    owner
        .delete(&format!("/api/v1/trash/pipeline/{live}"))
        .await
        .problem(400, "invalid_path_parameter");
    owner
        .post("/api/v1/trash/deal/not-a-uuid/restore", json!({}))
        .await
        .problem(400, "invalid_path_parameter");
    assert_bad_queries(
        &owner,
        "/api/v1/trash",
        "type=pipeline type=Deal page_size=500 colour=red",
    )
    .await;
}

#[tokio::test]
async fn the_trash_pages_with_cursors() {
    let (_app, owner) = TestApp::with_user("trash-pages").await;
    let mut want = Vec::new();
    for n in 0..5 {
        let id = owner.contact(&format!("P{n}")).await;
        owner
            .delete(&format!("/api/v1/contacts/{id}"))
            .await
            .no_content();
        want.push(id);
    }
    want.reverse(); // newest first
    let first = owner.read("/api/v1/trash?page_size=2").await;
    let mut got = ids(first["items"].as_array().unwrap());
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = owner
            .read(&format!("/api/v1/trash?page_size=2&cursor={c}"))
            .await;
        assert_eq!(page["page"], Value::Null);
        got.extend(ids(page["items"].as_array().unwrap()));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(got, want);
    let c = first["next_cursor"].as_str().unwrap();
    owner
        .get(&format!("/api/v1/trash?page_size=2&type=deal&cursor={c}"))
        .await
        .problem(400, "invalid_cursor");
}

#[tokio::test]
async fn another_organizations_trash_is_not_found() {
    let app = TestApp::spawn().await;
    let a = app.user("trash-a").await;
    let b = app.user("trash-b").await;
    let contact = b.contact("B's").await;
    let deal = b.deal(contact, "B's deal", "3.00").await;
    b.delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    assert!(trash_ids(&a, "").await.is_empty());
    a.post(&restore("deal", deal), json!({}))
        .await
        .problem(404, "deal_not_found");
    a.delete(&trash("deal", deal))
        .await
        .problem(404, "deal_not_found");
    assert_eq!(trash_ids(&b, "").await, vec![deal]);
    a.in_org(b.org_id)
        .get("/api/v1/trash")
        .await
        .problem(404, "organization_not_found");
}

/// Trashing a parent races creating a child on it: whichever commits first,
/// no child is left out of the trash with its parent in it (the rules read
/// the parent under a share lock, which the trashing UPDATE waits for).
#[tokio::test]
async fn trashing_a_parent_races_creating_a_child() {
    let (app, owner) = TestApp::with_user("trash-race").await;
    for round in 0..12 {
        let contact = owner.contact(&format!("Race {round}")).await;
        let deal = owner.deal(contact, "Racing", "1.00").await;
        let body = json!({"deal_id": deal, "title": "T", "due_date": today_plus(1)});
        let (trashed, created) = tokio::join!(
            tokio::spawn(owner.delete(&format!("/api/v1/deals/{deal}"))),
            tokio::spawn(owner.post("/api/v1/tasks", body)),
        );
        assert_eq!(trashed.unwrap().status, 204);
        let created = created.unwrap();
        assert!(
            created.status == 201 || created.body["code"] == "tasks_deal_id_not_found",
            "{}",
            created.body
        );
        let body =
            json!({"contact_id": contact, "title": "D", "amount": "1.00", "currency": "EUR"});
        let (trashed, created) = tokio::join!(
            tokio::spawn(owner.delete(&format!("/api/v1/contacts/{contact}"))),
            tokio::spawn(owner.post("/api/v1/deals", body)),
        );
        let (trashed, created) = (trashed.unwrap(), created.unwrap());
        assert!(
            (trashed.status == 204) != (created.status == 201),
            "exactly one wins: {} {}",
            trashed.body,
            created.body
        );
    }
    let orphans: i64 = app
        .value(
            "SELECT (SELECT count(*) FROM crm.tasks t JOIN crm.deals d ON d.organization_id = t.organization_id AND d.id = t.deal_id
                      WHERE t.deleted_at IS NULL AND d.deleted_at IS NOT NULL)
                  + (SELECT count(*) FROM crm.deals d JOIN crm.contacts c ON c.organization_id = d.organization_id AND c.id = d.contact_id
                      WHERE d.deleted_at IS NULL AND c.deleted_at IS NOT NULL)",
            &[],
        )
        .await;
    assert_eq!(
        orphans, 0,
        "a record out of the trash whose parent is in it"
    );
}

/// The server's maintenance round erases what has been in the trash longer
/// than `TRASH_RETENTION_DAYS`, and nothing younger.
#[tokio::test]
async fn the_maintenance_round_erases_expired_trash() {
    let (app, owner) = TestApp::with_user("trash-purge").await;
    let old = owner.contact("Old").await;
    let young = owner.contact("Young").await;
    for id in [old, young] {
        owner
            .delete(&format!("/api/v1/contacts/{id}"))
            .await
            .no_content();
    }
    app.sql()
        .await
        .execute(
            "UPDATE crm.contacts SET deleted_at = now() - interval '8 days' WHERE id = $1",
            &[&old],
        )
        .await
        .unwrap();
    let steps = minicrm::workers::maintenance::run_once(&app.state.db, 7, 30)
        .await
        .expect("a maintenance round");
    assert!(steps.contains(&("trash".to_owned(), 1)), "{steps:?}");
    assert_eq!(trash_ids(&owner, "").await, [young], "the young one stays");
    let left = app
        .column::<Uuid>(
            "SELECT id FROM crm.contacts WHERE id = ANY($1)",
            &[&vec![old, young]],
        )
        .await;
    assert_eq!(left, [young], "the old one is erased");
}

/// A record in the trash keeps its external id: an upsert or a create with
/// it is 409 (the upsert says the holder is in the trash) and never revives
/// or updates the trashed record; after a restore the upsert updates it.
#[tokio::test]
async fn a_trashed_record_keeps_its_external_id() {
    let (_app, owner) = TestApp::with_user("trash-extid").await;
    let contact = owner
        .create(
            "/api/v1/contacts",
            json!({"name": "Ada", "external_id": "crm-1"}),
        )
        .await;
    let id = crate::helpers::id_of(&contact);
    owner
        .delete(&format!("/api/v1/contacts/{id}"))
        .await
        .no_content();
    let put = |body: Value| {
        owner
            .req(
                axum::http::Method::PUT,
                "/api/v1/contacts/by-external-id/crm-1",
            )
            .json(body)
            .send()
    };
    let refused = put(json!({"name": "Eve"})).await;
    let problem = refused.problem(409, "contacts_external_id_taken");
    assert!(
        problem["detail"].as_str().unwrap().contains("trash"),
        "{problem}"
    );
    owner
        .post(
            "/api/v1/contacts",
            json!({"name": "Eve", "external_id": "crm-1"}),
        )
        .await
        .problem(409, "contacts_external_id_taken");
    assert_eq!(
        trash_ids(&owner, "&type=contact").await,
        [id],
        "still in the trash"
    );

    owner.post(&restore("contact", id), json!({})).await.ok(200);
    let updated = put(json!({"phone": "+1 555"})).await;
    assert_eq!(updated.ok(200)["id"], json!(id));
}
