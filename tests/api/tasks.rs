use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_fields, assert_timestamp, id_of, ids, page_items, today_plus, TestApp, TestResponse,
    TestUser,
};

const TASK_FIELDS: [&str; 9] = [
    "id",
    "organization_id",
    "deal_id",
    "title",
    "description",
    "due_date",
    "is_done",
    "created_at",
    "updated_at",
];

fn task_path(id: Uuid) -> String {
    format!("/api/v1/tasks/{id}")
}

async fn patch_task(
    app: &TestApp,
    user: &TestUser,
    org: Uuid,
    id: Uuid,
    body: Value,
) -> TestResponse {
    app.patch(&task_path(id))
        .token(&user.access_token)
        .org(org)
        .json(body)
        .send()
        .await
}

async fn post_task(app: &TestApp, user: &TestUser, org: Uuid, body: Value) -> TestResponse {
    app.post("/api/v1/tasks")
        .token(&user.access_token)
        .org(org)
        .json(body)
        .send()
        .await
}

/// The task list's ids for a query string (one page that holds them all).
async fn list_ids(app: &TestApp, user: &TestUser, org: Uuid, query: &str) -> Vec<Uuid> {
    let body = app.read(user, org, &format!("/api/v1/tasks?{query}")).await;
    let items = body["items"].as_array().unwrap().clone();
    assert_eq!(body["total"], json!(items.len()), "total for {query}");
    for item in &items {
        assert_fields(item, &TASK_FIELDS);
    }
    ids(&items)
}

#[tokio::test]
async fn tasks_create_get_update_delete() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let org = ann.org_id;
    let contact = app.contact(&ann, org, "Client").await;
    let deal = app.deal(&ann, org, contact, "Deal", "100").await;
    let due = today_plus(3);
    let res = post_task(
        &app,
        &ann,
        org,
        json!({"deal_id": deal, "title": " Call back ", "description": "Ask about the budget", "due_date": due}),
    )
    .await;
    let task = res.ok(201).clone();
    assert_fields(&task, &TASK_FIELDS);
    assert_eq!(task["organization_id"], org.to_string());
    assert_eq!(task["deal_id"], deal.to_string());
    assert_eq!(task["title"], "Call back");
    assert_eq!(task["description"], "Ask about the budget");
    assert_eq!(task["due_date"], due);
    assert_eq!(task["is_done"], false);
    assert_timestamp(&task["created_at"]);
    assert_timestamp(&task["updated_at"]);
    let id = id_of(&task);
    let path = task_path(id);
    assert_eq!(app.read(&ann, org, &path).await, task);
    // The description is optional.
    let bare = app
        .create_task(
            &ann,
            org,
            json!({"deal_id": deal, "title": "Bare", "due_date": today_plus(1)}),
        )
        .await;
    assert_eq!(bare["description"], json!(null));

    // PATCH is partial; description may be cleared.
    let res = patch_task(
        &app,
        &ann,
        org,
        id,
        json!({"is_done": true, "description": null}),
    )
    .await;
    let updated = res.ok(200).clone();
    assert_fields(&updated, &TASK_FIELDS);
    assert_eq!(updated["is_done"], true);
    assert_eq!(updated["description"], json!(null));
    assert_eq!(updated["title"], "Call back");
    assert_eq!(updated["due_date"], due);
    assert_eq!(updated["created_at"], task["created_at"]);
    assert_ne!(updated["updated_at"], task["updated_at"]);
    let res = patch_task(
        &app,
        &ann,
        org,
        id,
        json!({"title": "Call back again", "due_date": today_plus(0), "is_done": false}),
    )
    .await;
    let updated = res.ok(200).clone();
    assert_eq!(updated["title"], "Call back again");
    assert_eq!(updated["due_date"], today_plus(0));
    assert_eq!(updated["is_done"], false);
    assert_eq!(app.read(&ann, org, &path).await, updated);

    // Invalid patches change nothing.
    for (body, code) in [
        (json!({"due_date": "2024-13-45"}), "validation_failed"),
        (json!({"due_date": "tomorrow"}), "validation_failed"),
        (json!({"due_date": null}), "value_required"),
        (json!({"title": ""}), "tasks_title_invalid"),
        (json!({"title": null}), "value_required"),
        (json!({"is_done": "yes"}), "validation_failed"),
        (json!({"is_done": null}), "value_required"),
        (json!({"deal_id": deal}), "validation_failed"),
        (json!({"due_date": today_plus(-1)}), "tasks_due_date_past"),
    ] {
        patch_task(&app, &ann, org, id, body)
            .await
            .problem(400, code);
    }
    assert_eq!(app.read(&ann, org, &path).await, updated);
    for body in [
        json!({"title": "No deal", "due_date": today_plus(1)}),
        json!({"deal_id": deal, "due_date": today_plus(1)}),
        json!({"deal_id": deal, "title": "No date"}),
        json!({"deal_id": deal, "title": "Bad date", "due_date": "2024-02-30"}),
        json!({"deal_id": deal, "title": "Done already", "due_date": today_plus(1), "is_done": true}),
    ] {
        post_task(&app, &ann, org, body)
            .await
            .problem(400, "validation_failed");
    }
    post_task(
        &app,
        &ann,
        org,
        json!({"deal_id": deal, "title": "  ", "due_date": today_plus(1)}),
    )
    .await
    .problem(400, "tasks_title_invalid");
    assert_eq!(list_ids(&app, &ann, org, "").await.len(), 2);

    // Delete.
    let res = app
        .delete(&path)
        .token(&ann.access_token)
        .org(org)
        .send()
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(res.body, json!(null));
    app.get(&path)
        .token(&ann.access_token)
        .org(org)
        .send()
        .await
        .problem(404, "task_not_found");
    patch_task(&app, &ann, org, id, json!({"is_done": true}))
        .await
        .problem(404, "task_not_found");
    app.delete(&path)
        .token(&ann.access_token)
        .org(org)
        .send()
        .await
        .problem(404, "task_not_found");
    assert_eq!(list_ids(&app, &ann, org, "").await, vec![id_of(&bare)]);
}

#[tokio::test]
async fn due_dates_cannot_be_in_the_past_r4() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let org = ann.org_id;
    let contact = app.contact(&ann, org, "Client").await;
    let deal = app.deal(&ann, org, contact, "Deal", "100").await;
    // Today (UTC) is allowed.
    let today = app
        .create_task(
            &ann,
            org,
            json!({"deal_id": deal, "title": "Today", "due_date": today_plus(0)}),
        )
        .await;
    assert_eq!(today["due_date"], today_plus(0));
    // Yesterday and earlier are not; nothing is written, not even on the timeline.
    for date in [today_plus(-1), "2000-01-01".to_owned()] {
        let p = post_task(
            &app,
            &ann,
            org,
            json!({"deal_id": deal, "title": "Late", "due_date": date}),
        )
        .await;
        assert_eq!(
            p.problem(400, "tasks_due_date_past")["errors"][0]["field"],
            "due_date"
        );
    }
    assert_eq!(list_ids(&app, &ann, org, "").await, vec![id_of(&today)]);
    assert_eq!(
        app.timeline_types(&ann, org, deal).await,
        ["task_created", "system"]
    );
    // When changed, too.
    let id = id_of(&today);
    patch_task(&app, &ann, org, id, json!({"due_date": today_plus(-1)}))
        .await
        .problem(400, "tasks_due_date_past");
    assert_eq!(app.read(&ann, org, &task_path(id)).await, today);
    let res = patch_task(&app, &ann, org, id, json!({"due_date": today_plus(30)})).await;
    assert_eq!(res.ok(200)["due_date"], today_plus(30));
    let res = patch_task(&app, &ann, org, id, json!({"due_date": today_plus(0)})).await;
    assert_eq!(res.ok(200)["due_date"], today_plus(0));

    // A task that has become overdue can still be changed otherwise (the rule
    // is about setting a date). Make it overdue behind the API's back.
    let db = app.sql().await;
    db.batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    db.execute(
        "UPDATE crm.tasks SET due_date = (now() AT TIME ZONE 'UTC')::date - 3 WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let res = patch_task(
        &app,
        &ann,
        org,
        id,
        json!({"is_done": true, "title": "Finally"}),
    )
    .await;
    let body = res.ok(200);
    assert_eq!(body["is_done"], true);
    assert_eq!(body["due_date"], today_plus(-3));
    patch_task(&app, &ann, org, id, json!({"due_date": today_plus(-2)}))
        .await
        .problem(400, "tasks_due_date_past");
    assert_eq!(
        app.read(&ann, org, &task_path(id)).await["due_date"],
        today_plus(-3)
    );
}

#[tokio::test]
async fn task_creation_is_on_the_timeline_r7() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let manager = app.member_of(&owner, "manager", "manager").await;
    let mia = app.member_of(&owner, "mia", "member").await;
    let org = owner.org_id;
    let contact = app.contact(&mia, org, "Client").await;
    let deal = app.deal(&mia, org, contact, "Deal", "100").await;
    let first = app
        .create_task(
            &mia,
            org,
            json!({"deal_id": deal, "title": "Send offer", "description": "PDF", "due_date": today_plus(2)}),
        )
        .await;
    let second = app
        .create_task(
            &manager,
            org,
            json!({"deal_id": deal, "title": "Check in", "due_date": today_plus(9)}),
        )
        .await;
    let timeline = app.timeline(&mia, org, deal).await;
    assert_eq!(timeline.len(), 3);
    let created = |a: &Value, task: &Value, author: &TestUser| {
        assert_eq!(a["type"], "task_created");
        assert_eq!(
            a["payload"],
            json!({"task_id": task["id"], "title": task["title"], "due_date": task["due_date"]})
        );
        assert_eq!(a["author_id"], author.id.to_string());
        assert_eq!(a["deal_id"], deal.to_string());
    };
    created(&timeline[0], &second, &manager);
    created(&timeline[1], &first, &mia);
    assert_eq!(timeline[2]["type"], "system");
    // Updating or deleting a task adds nothing.
    patch_task(&app, &mia, org, id_of(&first), json!({"is_done": true}))
        .await
        .ok(200);
    let res = app
        .delete(&task_path(id_of(&second)))
        .token(&mia.access_token)
        .org(org)
        .send()
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(app.timeline(&mia, org, deal).await, timeline);
}

#[tokio::test]
async fn tasks_list_filters_and_pages() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let mia = app.member_of(&ann, "mia", "member").await;
    let org = ann.org_id;
    let contact = app.contact(&ann, org, "Client").await;
    let a = app.deal(&ann, org, contact, "A", "100").await;
    let b = app.deal(&ann, org, contact, "B", "100").await;
    let t1 = app.task(&ann, org, a, "A +1", 1).await;
    let t2 = app.task(&ann, org, a, "A +3", 3).await;
    let t3 = app.task(&ann, org, a, "A +5", 5).await;
    let t4 = app.task(&ann, org, b, "B +3", 3).await;
    let t5 = app.task(&ann, org, b, "B +10", 10).await;
    patch_task(&app, &ann, org, t3, json!({"is_done": true}))
        .await
        .ok(200);
    patch_task(&app, &ann, org, t4, json!({"is_done": true}))
        .await
        .ok(200);
    // Soonest due first, ties (t2, t4) by id.
    let (lo, hi) = if t2 < t4 { (t2, t4) } else { (t4, t2) };

    let body = app.read(&mia, org, "/api/v1/tasks").await;
    assert_eq!(ids(&page_items(&body, 1, 20, 5)), vec![t1, lo, hi, t3, t5]);
    let q = |query: String| {
        let app = &app;
        let ann = &ann;
        async move { list_ids(app, ann, org, &query).await }
    };
    assert_eq!(q(format!("deal_id={a}")).await, vec![t1, t2, t3]);
    assert_eq!(q(format!("deal_id={b}")).await, vec![t4, t5]);
    assert_eq!(
        q(format!("deal_id={}", Uuid::new_v4())).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(q("only_open=true".into()).await, vec![t1, t2, t5]);
    assert_eq!(q("only_open=false".into()).await, vec![t1, lo, hi, t3, t5]);
    assert_eq!(q(format!("only_open=true&deal_id={b}")).await, vec![t5]);
    // Both bounds are inclusive.
    assert_eq!(
        q(format!("due_before={}", today_plus(3))).await,
        vec![t1, lo, hi]
    );
    assert_eq!(q(format!("due_before={}", today_plus(2))).await, vec![t1]);
    assert_eq!(
        q(format!("due_after={}", today_plus(3))).await,
        vec![lo, hi, t3, t5]
    );
    assert_eq!(
        q(format!("due_after={}", today_plus(4))).await,
        vec![t3, t5]
    );
    assert_eq!(
        q(format!(
            "due_after={}&due_before={}",
            today_plus(3),
            today_plus(5)
        ))
        .await,
        vec![lo, hi, t3]
    );
    assert_eq!(
        q(format!(
            "due_after={}&due_before={}",
            today_plus(5),
            today_plus(3)
        ))
        .await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        q(format!(
            "due_after={}&due_before={}&only_open=true&deal_id={a}",
            today_plus(1),
            today_plus(5)
        ))
        .await,
        vec![t1, t2]
    );
    // Paging.
    let body = app
        .read(&ann, org, "/api/v1/tasks?page=2&page_size=2")
        .await;
    assert_eq!(ids(&page_items(&body, 2, 2, 5)), vec![hi, t3]);
    let body = app
        .read(&ann, org, "/api/v1/tasks?page=3&page_size=2")
        .await;
    assert_eq!(ids(&page_items(&body, 3, 2, 5)), vec![t5]);
    let body = app
        .read(&ann, org, "/api/v1/tasks?page=4&page_size=2")
        .await;
    assert!(page_items(&body, 4, 2, 5).is_empty());
    let body = app
        .read(&ann, org, "/api/v1/tasks?only_open=true&page_size=1&page=2")
        .await;
    assert_eq!(ids(&page_items(&body, 2, 1, 3)), vec![t2]);
}

#[tokio::test]
async fn tasks_reject_bad_query_values_and_headers() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let org = ann.org_id;
    let contact = app.contact(&ann, org, "Client").await;
    let deal = app.deal(&ann, org, contact, "Deal", "100").await;
    let task = app.task(&ann, org, deal, "Task", 1).await;
    for query in [
        "page_size=500",
        "page_size=0",
        "page=0",
        "due_before=2024-13-45",
        "due_after=2024-02-30",
        "due_before=01/02/2030",
        "due_after=tomorrow",
        "only_open=yes",
        "only_open=1",
        "deal_id=not-a-uuid",
        "owner_id=not-a-uuid",
        "order_by=due_date",
        "is_done=true",
    ] {
        app.get(&format!("/api/v1/tasks?{query}"))
            .token(&ann.access_token)
            .org(org)
            .send()
            .await
            .problem(400, "invalid_query_parameter");
    }
    app.get("/api/v1/tasks/not-a-uuid")
        .token(&ann.access_token)
        .org(org)
        .send()
        .await
        .problem(400, "invalid_path_parameter");
    app.patch("/api/v1/tasks/not-a-uuid")
        .token(&ann.access_token)
        .org(org)
        .json(json!({"is_done": true}))
        .send()
        .await
        .problem(400, "invalid_path_parameter");
    app.delete("/api/v1/tasks/not-a-uuid")
        .token(&ann.access_token)
        .org(org)
        .send()
        .await
        .problem(400, "invalid_path_parameter");
    app.get(&task_path(Uuid::new_v4()))
        .token(&ann.access_token)
        .org(org)
        .send()
        .await
        .problem(404, "task_not_found");
    let path = task_path(task);
    for p in ["/api/v1/tasks", path.as_str()] {
        app.get(p)
            .org(org)
            .send()
            .await
            .problem(401, "unauthenticated");
        app.get(p)
            .token(&ann.access_token)
            .send()
            .await
            .problem(400, "organization_header_missing");
        app.get(p)
            .token(&ann.access_token)
            .header("X-Organization-Id", "not-a-uuid")
            .send()
            .await
            .problem(400, "organization_header_invalid");
    }
    let eve = app.register("eve").await;
    let before = app.read(&ann, org, &path).await;
    for res in [
        app.get("/api/v1/tasks")
            .token(&eve.access_token)
            .org(org)
            .send()
            .await,
        app.get(&path)
            .token(&eve.access_token)
            .org(org)
            .send()
            .await,
        patch_task(&app, &eve, org, task, json!({"is_done": true})).await,
        app.delete(&path)
            .token(&eve.access_token)
            .org(org)
            .send()
            .await,
        post_task(
            &app,
            &eve,
            org,
            json!({"deal_id": deal, "title": "Planted", "due_date": today_plus(1)}),
        )
        .await,
    ] {
        res.problem(404, "organization_not_found");
    }
    assert_eq!(app.read(&ann, org, &path).await, before);
    assert_eq!(list_ids(&app, &ann, org, "").await, vec![task]);
}

#[tokio::test]
async fn tasks_follow_the_role_table_r3() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let manager = app.member_of(&owner, "manager", "manager").await;
    let mia = app.member_of(&owner, "mia", "member").await;
    let max = app.member_of(&owner, "max", "member").await;
    let org = owner.org_id;
    let contact = app.contact(&owner, org, "Client").await;
    let mias_deal = app.deal(&mia, org, contact, "Mia's", "100").await;
    let maxs_deal = app.deal(&max, org, contact, "Max's", "100").await;

    // A member adds tasks to their own deals only (R3).
    let mias_task = app.task(&mia, org, mias_deal, "Mine", 1).await;
    let p = post_task(
        &app,
        &mia,
        org,
        json!({"deal_id": maxs_deal, "title": "Meddling", "due_date": today_plus(1)}),
    )
    .await;
    assert_eq!(
        p.problem(403, "deal_not_owned")["errors"][0]["field"],
        "deal_id"
    );
    assert_eq!(
        list_ids(&app, &owner, org, &format!("deal_id={maxs_deal}")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(app.timeline_types(&owner, org, maxs_deal).await, ["system"]);
    // A manager adds them anywhere.
    let maxs_task = app
        .task(&manager, org, maxs_deal, "From the manager", 2)
        .await;
    let owners_task = app.task(&owner, org, maxs_deal, "From the owner", 3).await;

    // Everyone reads every task.
    app.read(&mia, org, &task_path(maxs_task)).await;
    assert_eq!(list_ids(&app, &mia, org, "").await.len(), 3);

    // A task belongs to its deal's owner: Mia may not change or delete Max's.
    let before = app.read(&owner, org, &task_path(maxs_task)).await;
    for body in [
        json!({"is_done": true}),
        json!({"title": "Renamed"}),
        json!({"due_date": today_plus(7)}),
    ] {
        patch_task(&app, &mia, org, maxs_task, body)
            .await
            .problem(403, "role_forbidden");
    }
    app.delete(&task_path(maxs_task))
        .token(&mia.access_token)
        .org(org)
        .send()
        .await
        .problem(403, "role_forbidden");
    assert_eq!(app.read(&owner, org, &task_path(maxs_task)).await, before);
    // Max may, though the manager created it.
    let res = patch_task(&app, &max, org, maxs_task, json!({"is_done": true})).await;
    assert_eq!(res.ok(200)["is_done"], true);
    // And Mia her own.
    let res = patch_task(&app, &mia, org, mias_task, json!({"title": "Still mine"})).await;
    assert_eq!(res.ok(200)["title"], "Still mine");
    // A manager may change and delete other members' tasks.
    let res = patch_task(&app, &manager, org, mias_task, json!({"is_done": true})).await;
    assert_eq!(res.ok(200)["is_done"], true);
    let res = app
        .delete(&task_path(owners_task))
        .token(&manager.access_token)
        .org(org)
        .send()
        .await;
    assert_eq!(res.status, 204);

    // Reassigning the deal hands its tasks over.
    app.patch(&format!("/api/v1/deals/{maxs_deal}"))
        .token(&manager.access_token)
        .org(org)
        .json(json!({"owner_id": mia.id}))
        .send()
        .await
        .ok(200);
    let res = patch_task(&app, &mia, org, maxs_task, json!({"is_done": false})).await;
    assert_eq!(res.ok(200)["is_done"], false);
    patch_task(&app, &max, org, maxs_task, json!({"is_done": true}))
        .await
        .problem(403, "role_forbidden");
    let res = app
        .delete(&task_path(maxs_task))
        .token(&mia.access_token)
        .org(org)
        .send()
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(list_ids(&app, &owner, org, "").await, vec![mias_task]);
    // A member deleting her own deal takes its tasks along.
    let res = app
        .delete(&format!("/api/v1/deals/{mias_deal}"))
        .token(&mia.access_token)
        .org(org)
        .send()
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    app.get(&task_path(mias_task))
        .token(&mia.access_token)
        .org(org)
        .send()
        .await
        .problem(404, "task_not_found");
    assert_eq!(list_ids(&app, &owner, org, "").await, Vec::<Uuid>::new());
}

#[tokio::test]
async fn tasks_of_another_organization_are_404_r8() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    // Ann is a member of Bob's organization too.
    app.post(&format!("/api/v1/organizations/{}/members", bob.org_id))
        .token(&bob.access_token)
        .json(json!({"email": ann.email, "role": "member"}))
        .send()
        .await
        .ok(201);
    let bobs_contact = app.contact(&bob, bob.org_id, "Bob's client").await;
    let bobs_deal = app
        .deal(&bob, bob.org_id, bobs_contact, "Bob's", "100")
        .await;
    let bobs_task = app.task(&bob, bob.org_id, bobs_deal, "Bob's task", 2).await;
    let anns_contact = app.contact(&ann, ann.org_id, "Ann's client").await;
    let anns_deal = app
        .deal(&ann, ann.org_id, anns_contact, "Ann's", "100")
        .await;
    let bobs_before = app.read(&bob, bob.org_id, &task_path(bobs_task)).await;
    let bobs_timeline = app.timeline(&bob, bob.org_id, bobs_deal).await;

    // A body naming another organization's deal.
    let p = post_task(
        &app,
        &ann,
        ann.org_id,
        json!({"deal_id": bobs_deal, "title": "Sneaky", "due_date": today_plus(1)}),
    )
    .await;
    assert_eq!(
        p.problem(404, "tasks_deal_id_not_found")["errors"][0]["field"],
        "deal_id"
    );
    // Another organization's task by id.
    app.get(&task_path(bobs_task))
        .token(&ann.access_token)
        .org(ann.org_id)
        .send()
        .await
        .problem(404, "task_not_found");
    patch_task(&app, &ann, ann.org_id, bobs_task, json!({"is_done": true}))
        .await
        .problem(404, "task_not_found");
    app.delete(&task_path(bobs_task))
        .token(&ann.access_token)
        .org(ann.org_id)
        .send()
        .await
        .problem(404, "task_not_found");
    assert_eq!(
        list_ids(&app, &ann, ann.org_id, &format!("deal_id={bobs_deal}")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        list_ids(&app, &ann, ann.org_id, "").await,
        Vec::<Uuid>::new()
    );
    // Bob's side is untouched; Ann's has no stray task either.
    assert_eq!(
        app.read(&bob, bob.org_id, &task_path(bobs_task)).await,
        bobs_before
    );
    assert_eq!(
        app.timeline(&bob, bob.org_id, bobs_deal).await,
        bobs_timeline
    );
    assert_eq!(
        app.timeline_types(&ann, ann.org_id, anns_deal).await,
        ["system"]
    );
}
