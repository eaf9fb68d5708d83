use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_lists, assert_record, assert_updated, at, id_of, ids, list_ids,
    page_items, today_plus, Neighbours, TestApp, TestUser, SALES,
};

const TASKS: &str = "/api/v1/tasks";
const TASK_FIELDS: &str =
    "id organization_id deal_id title description due_date is_done created_at updated_at version";

/// A new task's body: on `deal`, due tomorrow.
fn due_tomorrow(deal: Uuid, title: &str) -> Value {
    json!({"deal_id": deal, "title": title, "due_date": today_plus(1)})
}

#[tokio::test]
async fn tasks_create_get_update_delete() {
    let (_, ann) = TestApp::with_user("ann").await;
    let org = ann.org_id;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "100").await;
    let due = today_plus(3);
    let body = json!({"deal_id": deal, "title": " Call back ", "description": "Ask about the budget", "due_date": due});
    let task = ann.create("/api/v1/tasks", body).await;
    assert_record(
        &task,
        TASK_FIELDS,
        json!({"organization_id": org, "deal_id": deal, "title": "Call back",
               "description": "Ask about the budget", "due_date": due, "is_done": false}),
    );
    let path = at(TASKS, id_of(&task));
    assert_eq!(ann.read(&path).await, task);
    // The description is optional.
    let body = due_tomorrow(deal, "Bare");
    let bare = ann.create("/api/v1/tasks", body).await;
    assert_eq!(bare["description"], json!(null));

    // PATCH is partial; description may be cleared.
    let body = json!({"is_done": true, "description": null});
    let updated = ann.patch(&path, body).await.ok(200).clone();
    let want = json!({"is_done": true, "description": null, "title": "Call back", "due_date": due});
    assert_record(&updated, TASK_FIELDS, want);
    assert_updated(&task, &updated);
    let body = json!({"title": "Call back again", "due_date": today_plus(0), "is_done": false});
    let updated = ann.patch(&path, body.clone()).await.ok(200).clone();
    assert_record(&updated, TASK_FIELDS, body);
    assert_eq!(ann.read(&path).await, updated);

    // Invalid patches change nothing.
    let cases = vec![
        (json!({"due_date": "2024-13-45"}), 400, "validation_failed"),
        (json!({"due_date": "tomorrow"}), 400, "validation_failed"),
        (json!({"due_date": null}), 400, "value_required"),
        (json!({"title": ""}), 400, "tasks_title_invalid"),
        (json!({"title": null}), 400, "value_required"),
        (json!({"is_done": "yes"}), 400, "validation_failed"),
        (json!({"is_done": null}), 400, "value_required"),
        (json!({"deal_id": deal}), 400, "validation_failed"),
        (
            json!({"due_date": today_plus(-1)}),
            400,
            "tasks_due_date_past",
        ),
    ];
    ann.refused_patches(&path, cases).await;
    for body in [
        json!({"title": "No deal", "due_date": today_plus(1)}),
        json!({"deal_id": deal, "due_date": today_plus(1)}),
        json!({"deal_id": deal, "title": "No date"}),
        json!({"deal_id": deal, "title": "Bad date", "due_date": "2024-02-30"}),
        json!({"deal_id": deal, "title": "Done already", "due_date": today_plus(1), "is_done": true}),
    ] {
        ann.post("/api/v1/tasks", body)
            .await
            .problem(400, "validation_failed");
    }
    ann.post("/api/v1/tasks", due_tomorrow(deal, "  "))
        .await
        .problem(400, "tasks_title_invalid");
    assert_eq!(list_ids(&ann, TASKS, "", TASK_FIELDS).await.len(), 2);

    // Delete.
    ann.delete_for_good(&path, json!({"is_done": true}), "task_not_found")
        .await;
    assert_eq!(
        list_ids(&ann, TASKS, "", TASK_FIELDS).await,
        vec![id_of(&bare)]
    );
}

#[tokio::test]
async fn due_dates_cannot_be_in_the_past_r4() {
    let (app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "100").await;
    // Today (UTC) is allowed.
    let today = ann
        .create(
            "/api/v1/tasks",
            json!({"deal_id": deal, "title": "Today", "due_date": today_plus(0)}),
        )
        .await;
    assert_eq!(today["due_date"], today_plus(0));
    // Yesterday and earlier are not; nothing is written, not even on the timeline.
    for date in [today_plus(-1), "2000-01-01".to_owned()] {
        let p = ann
            .post(
                "/api/v1/tasks",
                json!({"deal_id": deal, "title": "Late", "due_date": date}),
            )
            .await;
        assert_eq!(p.field(400, "tasks_due_date_past"), "due_date");
    }
    assert_eq!(
        list_ids(&ann, TASKS, "", TASK_FIELDS).await,
        vec![id_of(&today)]
    );
    assert_eq!(ann.timeline_types(deal).await, ["task_created", "system"]);
    // When changed, too.
    let id = id_of(&today);
    ann.patch(&at(TASKS, id), json!({"due_date": today_plus(-1)}))
        .await
        .problem(400, "tasks_due_date_past");
    assert_eq!(ann.read(&at(TASKS, id)).await, today);
    let res = ann
        .patch(&at(TASKS, id), json!({"due_date": today_plus(30)}))
        .await;
    assert_eq!(res.ok(200)["due_date"], today_plus(30));
    let res = ann
        .patch(&at(TASKS, id), json!({"due_date": today_plus(0)}))
        .await;
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
    let res = ann
        .patch(&at(TASKS, id), json!({"is_done": true, "title": "Finally"}))
        .await;
    let body = res.ok(200);
    assert_eq!(body["is_done"], true);
    assert_eq!(body["due_date"], today_plus(-3));
    ann.patch(&at(TASKS, id), json!({"due_date": today_plus(-2)}))
        .await
        .problem(400, "tasks_due_date_past");
    assert_eq!(ann.read(&at(TASKS, id)).await["due_date"], today_plus(-3));
}

#[tokio::test]
async fn task_creation_is_on_the_timeline_r7() {
    let (_, _, [manager, mia, _]) = TestApp::with_team(SALES).await;
    let contact = mia.contact("Client").await;
    let deal = mia.deal(contact, "Deal", "100").await;
    let first = mia.create("/api/v1/tasks", json!({"deal_id": deal, "title": "Send offer", "description": "PDF", "due_date": today_plus(2)}))
        .await;
    let second = manager
        .create(
            "/api/v1/tasks",
            json!({"deal_id": deal, "title": "Check in", "due_date": today_plus(9)}),
        )
        .await;
    let timeline = mia.timeline(deal).await;
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
    mia.patch(&at(TASKS, id_of(&first)), json!({"is_done": true}))
        .await
        .ok(200);
    let res = mia.delete(&at(TASKS, id_of(&second))).await;
    assert_eq!(res.status, 204);
    assert_eq!(mia.timeline(deal).await, timeline);
}

#[tokio::test]
async fn tasks_list_filters_and_pages() {
    let (app, ann) = TestApp::with_user("ann").await;
    let mia = app.member_of(&ann, "mia", "member").await;
    let contact = ann.contact("Client").await;
    let a = ann.deal(contact, "A", "100").await;
    let b = ann.deal(contact, "B", "100").await;
    let t1 = ann.task(a, "A +1", 1).await;
    let t2 = ann.task(a, "A +3", 3).await;
    let t3 = ann.task(a, "A +5", 5).await;
    let t4 = ann.task(b, "B +3", 3).await;
    let t5 = ann.task(b, "B +10", 10).await;
    ann.patch(&at(TASKS, t3), json!({"is_done": true}))
        .await
        .ok(200);
    ann.patch(&at(TASKS, t4), json!({"is_done": true}))
        .await
        .ok(200);
    // Soonest due first, ties (t2, t4) by id.
    let (lo, hi) = if t2 < t4 { (t2, t4) } else { (t4, t2) };

    let body = mia.read("/api/v1/tasks").await;
    assert_eq!(ids(&page_items(&body, 1, 20, 5)), vec![t1, lo, hi, t3, t5]);
    let day = today_plus;
    let cases = vec![
        (format!("deal_id={a}"), vec![t1, t2, t3]),
        (format!("deal_id={b}"), vec![t4, t5]),
        (format!("deal_id={}", Uuid::new_v4()), vec![]),
        ("only_open=true".into(), vec![t1, t2, t5]),
        ("only_open=false".into(), vec![t1, lo, hi, t3, t5]),
        (format!("only_open=true&deal_id={b}"), vec![t5]),
        // Both bounds are inclusive.
        (format!("due_before={}", day(3)), vec![t1, lo, hi]),
        (format!("due_before={}", day(2)), vec![t1]),
        (format!("due_after={}", day(3)), vec![lo, hi, t3, t5]),
        (format!("due_after={}", day(4)), vec![t3, t5]),
        (
            format!("due_after={}&due_before={}", day(3), day(5)),
            vec![lo, hi, t3],
        ),
        (
            format!("due_after={}&due_before={}", day(5), day(3)),
            vec![],
        ),
        (
            format!(
                "due_after={}&due_before={}&only_open=true&deal_id={a}",
                day(1),
                day(5)
            ),
            vec![t1, t2],
        ),
    ];
    assert_lists(&ann, TASKS, TASK_FIELDS, cases).await;
    // Paging.
    for (query, page, size, total, want) in [
        ("page=2&page_size=2", 2, 2, 5, vec![hi, t3]),
        ("page=3&page_size=2", 3, 2, 5, vec![t5]),
        ("page=4&page_size=2", 4, 2, 5, vec![]),
        ("only_open=true&page_size=1&page=2", 2, 1, 3, vec![t2]),
    ] {
        let body = ann.read(&format!("{TASKS}?{query}")).await;
        assert_eq!(ids(&page_items(&body, page, size, total)), want, "{query}");
    }
}

/// (Tokens, the organization header, membership and malformed or unknown
/// ids in the path: tenancy_probes.rs checks them for every operation.)
#[tokio::test]
async fn tasks_reject_bad_query_values() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "100").await;
    ann.task(deal, "Task", 1).await;
    let bad = "page_size=500 page_size=0 page=0 due_before=2024-13-45 due_after=2024-02-30 \
               due_before=01/02/2030 due_after=tomorrow only_open=yes only_open=1 \
               deal_id=not-a-uuid owner_id=not-a-uuid order_by=due_date is_done=true";
    assert_bad_queries(&ann, "/api/v1/tasks", bad).await;
}

#[tokio::test]
async fn tasks_follow_the_role_table_r3() {
    let (_, owner, [manager, mia, max]) = TestApp::with_team(SALES).await;
    let contact = owner.contact("Client").await;
    let mias_deal = mia.deal(contact, "Mia's", "100").await;
    let maxs_deal = max.deal(contact, "Max's", "100").await;

    // A member adds tasks to their own deals only (R3).
    let mias_task = mia.task(mias_deal, "Mine", 1).await;
    let p = mia
        .post("/api/v1/tasks", due_tomorrow(maxs_deal, "Meddling"))
        .await;
    assert_eq!(p.field(403, "deal_not_owned"), "deal_id");
    assert_eq!(
        list_ids(&owner, TASKS, &format!("deal_id={maxs_deal}"), TASK_FIELDS).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(owner.timeline_types(maxs_deal).await, ["system"]);
    // A manager adds them anywhere.
    let maxs_task = manager.task(maxs_deal, "From the manager", 2).await;
    let owners_task = owner.task(maxs_deal, "From the owner", 3).await;

    // Everyone reads every task.
    mia.read(&at(TASKS, maxs_task)).await;
    assert_eq!(list_ids(&mia, TASKS, "", TASK_FIELDS).await.len(), 3);

    // A task belongs to its deal's owner: Mia may not change or delete Max's.
    let before = owner.read(&at(TASKS, maxs_task)).await;
    let patches = vec![
        json!({"is_done": true}),
        json!({"title": "Renamed"}),
        json!({"due_date": today_plus(7)}),
    ];
    mia.forbidden(&at(TASKS, maxs_task), patches).await;
    assert_eq!(owner.read(&at(TASKS, maxs_task)).await, before);
    // Max may, though the manager created it.
    let res = max
        .patch(&at(TASKS, maxs_task), json!({"is_done": true}))
        .await;
    assert_eq!(res.ok(200)["is_done"], true);
    // And Mia her own.
    let res = mia
        .patch(&at(TASKS, mias_task), json!({"title": "Still mine"}))
        .await;
    assert_eq!(res.ok(200)["title"], "Still mine");
    // A manager may change and delete other members' tasks.
    let res = manager
        .patch(&at(TASKS, mias_task), json!({"is_done": true}))
        .await;
    assert_eq!(res.ok(200)["is_done"], true);
    let res = manager.delete(&at(TASKS, owners_task)).await;
    assert_eq!(res.status, 204);

    // Reassigning the deal hands its tasks over.
    manager
        .patch(
            &format!("/api/v1/deals/{maxs_deal}"),
            json!({"owner_id": mia.id}),
        )
        .await
        .ok(200);
    let res = mia
        .patch(&at(TASKS, maxs_task), json!({"is_done": false}))
        .await;
    assert_eq!(res.ok(200)["is_done"], false);
    max.patch(&at(TASKS, maxs_task), json!({"is_done": true}))
        .await
        .problem(403, "role_forbidden");
    let res = mia.delete(&at(TASKS, maxs_task)).await;
    assert_eq!(res.status, 204);
    assert_eq!(
        list_ids(&owner, TASKS, "", TASK_FIELDS).await,
        vec![mias_task]
    );
    // A member deleting her own deal takes its tasks along.
    let res = mia.delete(&format!("/api/v1/deals/{mias_deal}")).await;
    assert_eq!(res.status, 204, "{}", res.body);
    mia.get(&at(TASKS, mias_task))
        .await
        .problem(404, "task_not_found");
    assert_eq!(
        list_ids(&owner, TASKS, "", TASK_FIELDS).await,
        Vec::<Uuid>::new()
    );
}

#[tokio::test]
async fn tasks_of_another_organization_are_404_r8() {
    // Ann is a member of Bob's organization too.
    let n = Neighbours::new("member", "Bob's", "100").await;
    let (ann, bob, bobs_deal) = (n.ann, n.bob, n.bobs_deal);
    let bobs_task = bob.task(bobs_deal, "Bob's task", 2).await;
    let anns_contact = ann.contact("Ann's client").await;
    let anns_deal = ann.deal(anns_contact, "Ann's", "100").await;
    let bobs_before = bob.read(&at(TASKS, bobs_task)).await;
    let bobs_timeline = bob.timeline(bobs_deal).await;

    // A body naming another organization's deal.
    let p = ann
        .post("/api/v1/tasks", due_tomorrow(bobs_deal, "Sneaky"))
        .await;
    assert_eq!(p.field(404, "tasks_deal_id_not_found"), "deal_id");
    // Another organization's task by id.
    let patch = json!({"is_done": true});
    ann.not_found(&at(TASKS, bobs_task), patch, "task_not_found")
        .await;
    assert_eq!(
        list_ids(&ann, TASKS, &format!("deal_id={bobs_deal}"), TASK_FIELDS).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        list_ids(&ann, TASKS, "", TASK_FIELDS).await,
        Vec::<Uuid>::new()
    );
    // Bob's side is untouched; Ann's has no stray task either.
    assert_eq!(bob.read(&at(TASKS, bobs_task)).await, bobs_before);
    assert_eq!(bob.timeline(bobs_deal).await, bobs_timeline);
    assert_eq!(ann.timeline_types(anns_deal).await, ["system"]);
}
