//! Through PgBouncer 1.18 in transaction mode (started by scripts/test), with
//! `DB_POOLER=transaction`: every call is one unnamed statement, so the
//! scenario and a short concurrent load run with zero errors even though
//! consecutive statements land on different server connections.

use serde_json::json;

use crate::helpers::{add_member, id_of, today_plus, TestApp};

#[tokio::test]
async fn the_scenario_runs_through_a_transaction_mode_pooler() {
    let app = TestApp::spawn_behind_pooler().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    add_member(&ann, &bob, "member").await;
    let bob = bob.in_org(ann.org_id);

    let contact = bob.contact("Grace").await;
    let deal = bob.deal(contact, "Big one", "1200.50").await;
    // Enums (single and arrays), numerics, dates, booleans, jsonb and text.
    let listed = bob
        .read("/api/v1/deals?status=new&status=in_progress&stage=qualification&min_amount=100")
        .await;
    assert_eq!(id_of(&listed["items"][0]), deal);
    let moved = bob
        .patch(
            &format!("/api/v1/deals/{deal}"),
            json!({"stage": "proposal", "status": "in_progress"}),
        )
        .await;
    assert_eq!(moved.ok(200)["stage"], "proposal");
    bob.comment(deal, "Called them").await;
    let types = bob.timeline_types(deal).await;
    assert!(
        types.contains(&"comment".to_owned()) && types.contains(&"stage_changed".to_owned()),
        "{types:?}"
    );
    let task = bob.task(deal, "Send the offer", 3).await;
    let open = bob
        .read(&format!(
            "/api/v1/tasks?only_open=true&due_before={}",
            today_plus(10)
        ))
        .await;
    assert_eq!(id_of(&open["items"][0]), task);
    let found = bob.read("/api/v1/contacts?search=grac").await;
    assert_eq!(id_of(&found["items"][0]), contact);
    ann.patch(
        &format!("/api/v1/organizations/{}/members/{}", ann.org_id, bob.id),
        json!({"role": "manager"}),
    )
    .await
    .ok(200);
    let summary = ann.read("/api/v1/analytics/deals/summary?days=7").await;
    assert_eq!(summary["new_deals"], 1);
    // Rules still hold: a member may not move a stage back... (bob is a manager now: R5 refuses too).
    bob.patch(
        &format!("/api/v1/deals/{deal}"),
        json!({"stage": "qualification"}),
    )
    .await
    .problem(403, "stage_rollback_forbidden");
    bob.delete(&format!("/api/v1/tasks/{task}"))
        .await
        .no_content();
}

#[tokio::test]
async fn a_short_concurrent_load_through_the_pooler_has_no_errors() {
    let app = TestApp::spawn_behind_pooler().await;
    let ann = app.register("load").await;
    let contact = ann.contact("C").await;
    let deals: Vec<_> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(ann.deal(contact, &format!("D{i}"), "10").await);
        }
        ids
    };
    let mut workers = Vec::new();
    for w in 0..16 {
        let ann = ann.clone();
        let deals = deals.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..12 {
                let deal = deals[(w + i) % deals.len()];
                let res = match i % 3 {
                    0 => ann.get(&format!("/api/v1/deals/{deal}")).await,
                    1 => ann.get("/api/v1/deals?status=new&order_by=amount").await,
                    _ => {
                        ann.patch(
                            &format!("/api/v1/deals/{deal}"),
                            json!({"title": format!("T{w}-{i}")}),
                        )
                        .await
                    }
                };
                statuses.push(res.status.as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    assert_eq!(all.len(), 192);
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
}

#[tokio::test]
async fn csv_export_and_import_run_through_the_pooler() {
    let app = TestApp::spawn_behind_pooler().await;
    let ann = app.register("csv").await;
    let contact = ann.contact("Grace").await;
    for i in 0..3 {
        ann.deal(contact, &format!("D{i}"), "10").await;
    }
    // Several rounds: each export and import is one transaction on one
    // server connection, and leaves no prepared statement behind on it.
    for round in 0..4 {
        let res = ann
            .req(axum::http::Method::POST, "/api/v1/contacts/import")
            .raw(
                "text/csv",
                format!("name,external_id\r\nR{round},k-{round}\r\nShared,shared\r\n"),
            )
            .await;
        let expected = if round == 0 {
            json!({"created": 2, "updated": 0})
        } else {
            json!({"created": 1, "updated": 1})
        };
        assert_eq!(res.ok(200), &expected);
        let deals = ann
            .get("/api/v1/deals/export?status=new&order_by=title")
            .await;
        assert_eq!(deals.status, 200, "{}", deals.body);
        let csv = deals.body.as_str().unwrap();
        assert_eq!(csv.matches("\r\n").count(), 4, "{csv}");
        let contacts = ann.get("/api/v1/contacts/export?search=grace").await;
        assert_eq!(contacts.body.as_str().unwrap().matches("\r\n").count(), 2);
        // A refused file and a refused filter leave the connection usable.
        ann.req(axum::http::Method::POST, "/api/v1/contacts/import")
            .raw("text/csv", "name,email\r\nX,bad\r\n")
            .await
            .problem(400, "import_invalid");
        ann.get("/api/v1/deals/export?stage=nowhere")
            .await
            .problem(400, "stage_not_in_pipeline");
    }
    assert_eq!(
        ann.read("/api/v1/contacts").await["total"],
        json!(1 + 1 + 4),
        "Grace, Shared and R0..R3"
    );
}
