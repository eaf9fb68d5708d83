//! Record history (SPEC §13, README "Events and record history"):
//! `GET /contacts|deals|tasks/{id}/history`, the record's events newest
//! first, paginated; and the events that writes over HTTP (and in psql)
//! produce, read back through it or the test's SQL connection.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_timestamp, TestApp, TestUser};

fn history(kind: &str, id: Uuid) -> String {
    format!("/api/v1/{kind}/{id}/history")
}

/// The `type` of each event of a history page, in order.
fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event of a record, following `next_cursor` from the first page.
async fn all_events(user: &TestUser, path: &str, page_size: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut page = user.read(&format!("{path}?page_size={page_size}")).await;
    loop {
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= page_size);
        events.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            None => return events,
            Some(cursor) => {
                assert_eq!(items.len(), page_size, "only the last page is short");
                page = user
                    .read(&format!("{path}?page_size={page_size}&cursor={cursor}"))
                    .await;
            }
        }
    }
}

#[tokio::test]
async fn a_deals_history_says_who_changed_what_when_and_from_which_value() {
    let app = TestApp::spawn().await;
    let owner = app.user("hist-owner").await;
    let manager = app.member_of(&owner, "hist-manager", "manager").await;
    let member = app.member_of(&owner, "hist-member", "member").await;
    let contact = owner.contact("Ada").await;
    let deal = owner.deal(contact, "First", "100.00").await;
    let path = format!("/api/v1/deals/{deal}");

    manager
        .patch(&path, json!({"title": "Second", "stage": "proposal"}))
        .await
        .ok(200);
    owner
        .patch(&path, json!({"amount": "250.00"}))
        .await
        .ok(200);
    let now = owner.read(&path).await;

    // Every role reads it, a member too.
    let page = member.read(&history("deals", deal)).await;
    assert_eq!(
        types(&page),
        ["deal.updated", "deal.updated", "deal.created"]
    );
    assert_eq!(page["total"], 3);
    assert_eq!(page["total_exact"], true);
    assert_eq!(page["page"], 1);
    assert!(page["next_cursor"].is_null());
    let [newest, older, created] = page["items"].as_array().unwrap().as_slice() else {
        panic!("three events: {page}");
    };
    assert_eq!(newest["actor_id"], json!(owner.id));
    assert_eq!(newest["resource_id"], json!(deal));
    assert_eq!(newest["data"]["object"], now, "the deal as GET shows it");
    assert_eq!(newest["data"]["previous"], json!({"amount": "100.00"}));
    assert_timestamp(&newest["occurred_at"]);
    assert!(newest["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert_eq!(older["actor_id"], json!(manager.id), "the manager's change");
    assert_eq!(
        older["data"]["previous"],
        json!({"title": "First", "stage": "qualification"}),
        "the old values of the fields that changed, and only those"
    );
    assert_eq!(older["data"]["object"]["title"], "Second");
    assert_eq!(created["data"]["previous"], Value::Null);
    assert_eq!(created["data"]["object"]["version"], 1);
    assert_eq!(created["actor_id"], json!(owner.id));

    // The comment and the automatic timeline rows are activity.created.
    owner.comment(deal, "hello").await;
    let activity_events: i64 = app
        .value(
            "SELECT count(*) FROM crm.events e JOIN crm.activities a ON a.id = e.resource_id \
             WHERE a.deal_id = $1 AND e.type = 'activity.created'",
            &[&deal],
        )
        .await;
    let activities: i64 = app
        .value(
            "SELECT count(*) FROM crm.activities WHERE deal_id = $1",
            &[&deal],
        )
        .await;
    assert_eq!(activity_events, activities);
    assert!(activities >= 3, "deal_created, stage_changed, the comment");
}

#[tokio::test]
async fn a_history_pages_by_offset_and_by_cursor() {
    let (_app, owner) = TestApp::with_user("hist-pages").await;
    let contact = owner.contact("Paged").await;
    let path = format!("/api/v1/contacts/{contact}");
    for i in 1..=6 {
        owner
            .patch(&path, json!({"phone": format!("+1 555 {i}")}))
            .await
            .ok(200);
    }
    let all = all_events(&owner, &history("contacts", contact), 2).await;
    assert_eq!(all.len(), 7, "created and six updates, each once");
    let phones: Vec<&Value> = all.iter().map(|e| &e["data"]["object"]["phone"]).collect();
    assert_eq!(
        phones,
        ["+1 555 6", "+1 555 5", "+1 555 4", "+1 555 3", "+1 555 2", "+1 555 1"]
            .iter()
            .map(|p| json!(p))
            .chain([Value::Null])
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(all[0]["data"]["previous"], json!({"phone": "+1 555 5"}));

    let page2 = owner
        .read(&format!(
            "{}?page=2&page_size=2",
            history("contacts", contact)
        ))
        .await;
    assert_eq!(page2["items"].as_array().unwrap(), &all[2..4]);
    assert_eq!(page2["total"], 7);

    // The paging rules of every list.
    let first = owner
        .read(&format!("{}?page_size=2", history("contacts", contact)))
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    owner
        .get(&format!(
            "{}?page=1&cursor={cursor}",
            history("contacts", contact)
        ))
        .await
        .problem(400, "cursor_with_page");
    owner
        .get(&format!(
            "{}?cursor={cursor}x",
            history("contacts", contact)
        ))
        .await
        .problem(400, "invalid_cursor");
    let other = owner.contact("Other").await;
    owner
        .get(&format!("{}?cursor={cursor}", history("contacts", other)))
        .await
        .problem(400, "invalid_cursor");
    owner
        .get(&format!(
            "{}?page=101&page_size=100",
            history("contacts", contact)
        ))
        .await
        .problem(400, "page_too_deep");
    owner
        .get(&format!("{}?sort=asc", history("contacts", contact)))
        .await
        .problem(400, "invalid_query_parameter");
}

#[tokio::test]
async fn delete_restore_and_erase_over_http_write_the_expected_events() {
    let (app, owner) = TestApp::with_user("hist-trash").await;
    let contact = owner.contact("Bea").await;
    let deal = owner.deal(contact, "Trashed", "10.00").await;
    let task = owner.task(deal, "Call", 2).await;
    let deal_before = owner.read(&format!("/api/v1/deals/{deal}")).await;

    owner
        .delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    // A record in the trash still has its history.
    let page = owner.read(&history("deals", deal)).await;
    assert_eq!(types(&page), ["deal.deleted", "deal.created"]);
    assert_eq!(
        page["items"][0]["data"],
        json!({"object": deal_before, "previous": null}),
        "deal.deleted shows the deal as it was"
    );
    let page = owner.read(&history("tasks", task)).await;
    assert_eq!(
        types(&page),
        ["task.deleted", "task.created"],
        "the task trashed with its deal has its own event"
    );

    owner
        .post(&format!("/api/v1/trash/deal/{deal}/restore"), json!({}))
        .await
        .ok(200);
    assert_eq!(
        types(&owner.read(&history("deals", deal)).await),
        ["deal.restored", "deal.deleted", "deal.created"]
    );
    assert_eq!(
        types(&owner.read(&history("tasks", task)).await),
        ["task.restored", "task.deleted", "task.created"]
    );

    owner
        .delete(&format!("/api/v1/deals/{deal}"))
        .await
        .no_content();
    let events = |id: Uuid| {
        let app = &app;
        async move {
            app.value::<i64>(
                "SELECT count(*) FROM crm.events WHERE resource_id = $1",
                &[&id],
            )
            .await
        }
    };
    let (deal_events, task_events) = (events(deal).await, events(task).await);
    owner
        .delete(&format!("/api/v1/trash/deal/{deal}"))
        .await
        .no_content();
    assert_eq!(
        (events(deal).await, events(task).await),
        (deal_events, task_events),
        "erasing what is in the trash writes no event"
    );
    owner
        .get(&history("deals", deal))
        .await
        .problem(404, "deal_not_found");
    owner
        .get(&history("tasks", task))
        .await
        .problem(404, "task_not_found");

    owner
        .delete(&format!("/api/v1/contacts/{contact}"))
        .await
        .no_content();
    owner
        .post(
            &format!("/api/v1/trash/contact/{contact}/restore"),
            json!({}),
        )
        .await
        .ok(200);
    assert_eq!(
        types(&owner.read(&history("contacts", contact)).await),
        ["contact.restored", "contact.deleted", "contact.created"]
    );
}

#[tokio::test]
async fn a_missing_or_foreign_record_has_no_history() {
    let app = TestApp::spawn().await;
    let owner = app.user("hist-404").await;
    let stranger = app.user("hist-stranger").await;
    let contact = owner.contact("Mine").await;
    let deal = owner.deal(contact, "Mine", "1.00").await;
    let task = owner.task(deal, "Mine", 1).await;
    for (kind, id, code) in [
        ("contacts", contact, "contact_not_found"),
        ("deals", deal, "deal_not_found"),
        ("tasks", task, "task_not_found"),
    ] {
        stranger.get(&history(kind, id)).await.problem(404, code);
        owner
            .get(&history(kind, Uuid::new_v4()))
            .await
            .problem(404, code);
        owner
            .get(&format!("/api/v1/{kind}/not-a-uuid/history"))
            .await
            .problem(400, "invalid_path_parameter");
        assert_eq!(owner.read(&history(kind, id)).await["total"], 1);
    }
}

#[tokio::test]
async fn a_dbas_change_in_psql_under_act_as_is_in_the_history() {
    let (app, owner) = TestApp::with_user("hist-dba").await;
    let contact = owner.contact("Psql").await;
    let sql = app.sql().await;
    sql.batch_execute(&format!(
        "BEGIN; SELECT app.act_as('{}', '{}'); \
         UPDATE crm.contacts SET email = 'psql@example.com' WHERE id = '{contact}'; COMMIT;",
        owner.id, owner.org_id
    ))
    .await
    .unwrap();
    let page = owner.read(&history("contacts", contact)).await;
    assert_eq!(types(&page), ["contact.updated", "contact.created"]);
    assert_eq!(page["items"][0]["actor_id"], json!(owner.id));
    assert_eq!(page["items"][0]["data"]["previous"], json!({"email": null}));

    // A rolled-back change leaves nothing.
    sql.batch_execute(&format!(
        "BEGIN; SELECT app.act_as('{}', '{}'); \
         UPDATE crm.contacts SET email = 'undone@example.com' WHERE id = '{contact}'; ROLLBACK;",
        owner.id, owner.org_id
    ))
    .await
    .unwrap();
    assert_eq!(owner.read(&history("contacts", contact)).await["total"], 2);
}

#[tokio::test]
async fn a_stage_change_over_http_is_one_pipeline_updated() {
    let (app, owner) = TestApp::with_user("hist-pipeline").await;
    let pipelines = owner.read("/api/v1/pipelines").await;
    let pipeline = pipelines["items"][0]["id"].as_str().unwrap().to_owned();
    let before = owner.read(&format!("/api/v1/pipelines/{pipeline}")).await;
    // Inserted at position 1: every other stage is renumbered, in several
    // statements of one transaction.
    owner
        .post(
            &format!("/api/v1/pipelines/{pipeline}/stages"),
            json!({"key": "intro", "name": "Intro", "probability": 5, "position": 1}),
        )
        .await
        .ok(201);
    let after = owner.read(&format!("/api/v1/pipelines/{pipeline}")).await;
    let pipeline: Uuid = pipeline.parse().unwrap();
    let rows = app
        .sql()
        .await
        .query(
            "SELECT type, actor_id, data FROM crm.events WHERE resource_id = $1 ORDER BY tx, seq",
            &[&pipeline],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<Uuid>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("pipeline.created".to_owned(), Some(owner.id)),
            ("pipeline.updated".to_owned(), Some(owner.id))
        ],
        "the default pipeline's creation when the user registered, then one event for the stage"
    );
    let data: Value = rows[1].get::<_, postgres_types::Json<Value>>(2).0;
    assert_eq!(
        data["object"], after,
        "the pipeline as GET shows it after the change"
    );
    assert_eq!(data["previous"], json!({"stages": before["stages"]}));
}

#[tokio::test]
async fn member_changes_are_member_events() {
    let app = TestApp::spawn().await;
    let owner = app.user("hist-members").await;
    let member = app.member_of(&owner, "hist-joiner", "member").await;
    let path = format!(
        "/api/v1/organizations/{}/members/{}",
        owner.org_id, member.id
    );
    owner.patch(&path, json!({"role": "admin"})).await.ok(200);
    owner.delete(&path).await.no_content();
    let rows = app
        .sql()
        .await
        .query(
            "SELECT type, data FROM crm.events \
             WHERE organization_id = $1 AND resource_type = 'member' AND resource_id = $2 ORDER BY tx, seq",
            &[&owner.org_id, &member.id],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, ["member.added", "member.updated", "member.removed"]);
    let updated: Value = rows[1].get::<_, postgres_types::Json<Value>>(1).0;
    assert_eq!(updated["previous"], json!({"role": "member"}));
    assert_eq!(updated["object"]["role"], "admin");
    assert_eq!(updated["object"]["email"], json!(member.email));
}
