use axum::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_fields, assert_timestamp, id_of, ids, page_items, Neighbours,
    TestApp,
};

const ACTIVITY_FIELDS: &str = "id organization_id deal_id author_id type payload created_at";

fn activities_path(deal: Uuid) -> String {
    format!("/api/v1/deals/{deal}/activities")
}

#[tokio::test]
async fn comments_are_added_and_listed_newest_first() {
    let (app, owner) = TestApp::with_user("owner").await;
    let mia = app.member_of(&owner, "mia", "member").await;
    let org = owner.org_id;
    let contact = owner.contact("Client").await;
    let deal = owner.deal(contact, "Owner's deal", "100").await;

    // Any member may comment on any deal.
    let res = mia
        .post(
            &activities_path(deal),
            json!({"type": "comment", "payload": {"text": "Called, they want a discount"}}),
        )
        .await;
    let first = res.ok(201).clone();
    assert_fields(&first, ACTIVITY_FIELDS);
    assert_eq!(first["organization_id"], org.to_string());
    assert_eq!(first["deal_id"], deal.to_string());
    assert_eq!(first["author_id"], mia.id.to_string());
    assert_eq!(first["type"], "comment");
    assert_eq!(
        first["payload"],
        json!({"text": "Called, they want a discount"})
    );
    assert_timestamp(&first["created_at"]);

    let mut comments = vec![id_of(&first)];
    for i in 2..=5 {
        let user = if i % 2 == 0 { &owner } else { &mia };
        let c = user
            .in_org(org)
            .comment(deal, &format!("Comment {i}"))
            .await;
        assert_eq!(c["author_id"], user.id.to_string());
        comments.push(id_of(&c));
    }
    comments.reverse(); // newest first

    // Default paging: page 1 of 20; newest first, the creation event last.
    let body = mia.read(&activities_path(deal)).await;
    let items = page_items(&body, 1, 20, 6);
    for item in &items {
        assert_fields(item, ACTIVITY_FIELDS);
    }
    assert_eq!(ids(&items[..5]), comments);
    assert_eq!(items[0]["payload"]["text"], "Comment 5");
    assert_eq!(items[4], first);
    assert_eq!(items[5]["type"], "system");
    let times: Vec<&str> = items
        .iter()
        .map(|a| a["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    // Pages.
    let body = mia
        .read(&format!("{}?page_size=2", activities_path(deal)))
        .await;
    assert_eq!(ids(&page_items(&body, 1, 2, 6)), comments[..2]);
    let body = mia
        .read(&format!("{}?page=2&page_size=2", activities_path(deal)))
        .await;
    assert_eq!(ids(&page_items(&body, 2, 2, 6)), comments[2..4]);
    let body = mia
        .read(&format!("{}?page=3&page_size=2", activities_path(deal)))
        .await;
    let last = page_items(&body, 3, 2, 6);
    assert_eq!(id_of(&last[0]), comments[4]);
    assert_eq!(last[1]["type"], "system");
    let body = mia
        .read(&format!("{}?page=4&page_size=2", activities_path(deal)))
        .await;
    assert!(page_items(&body, 4, 2, 6).is_empty());

    // Timelines are per deal.
    let other = owner.deal(contact, "Other", "1").await;
    let body = owner.read(&activities_path(other)).await;
    let items = page_items(&body, 1, 20, 1);
    assert_eq!(items[0]["type"], "system");
    assert_eq!(items[0]["deal_id"], other.to_string());
}

#[tokio::test]
async fn only_comments_with_text_can_be_created_r9() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "100").await;
    let before = ann.timeline(deal).await;

    for t in ["status_changed", "stage_changed", "task_created", "system"] {
        let p = ann
            .post(
                &activities_path(deal),
                json!({"type": t, "payload": {"text": "forged", "from": "new", "to": "won"}}),
            )
            .await;
        assert_eq!(p.field(400, "activity_type_forbidden"), "type");
    }
    for payload in [
        json!({"text": ""}),
        json!({"text": "   "}),
        json!({"text": null}),
        json!({"text": 42}),
        json!({"text": ["a"]}),
        json!({"note": "no text"}),
        json!({}),
        json!("just a string"),
        json!(null),
    ] {
        let p = ann
            .post(
                &activities_path(deal),
                json!({"type": "comment", "payload": payload}),
            )
            .await;
        assert_eq!(
            p.problem(400, "comment_text_required")["errors"][0]["field"],
            "payload.text",
            "{payload}"
        );
    }
    for body in [
        json!({"type": "bogus", "payload": {"text": "x"}}),
        json!({"type": "COMMENT", "payload": {"text": "x"}}),
        json!({"payload": {"text": "x"}}),
        json!({"type": "comment"}),
        // The author is always the caller: it cannot be given.
        json!({"type": "comment", "payload": {"text": "x"}, "author_id": Uuid::new_v4()}),
        json!({"type": "comment", "payload": {"text": "x"}, "created_at": "2000-01-01T00:00:00Z"}),
    ] {
        ann.post(&activities_path(deal), body)
            .await
            .problem(400, "validation_failed");
    }
    ann.req(Method::POST, &activities_path(deal))
        .raw("application/json", "{\"type\": \"comment\", ")
        .await
        .problem(400, "malformed_json");
    // Nothing was written.
    assert_eq!(ann.timeline(deal).await, before);
    // A comment with text is fine, kept as written.
    let c = ann.comment(deal, " spaced ").await;
    assert_eq!(c["payload"], json!({"text": " spaced "}));
    assert_eq!(ann.timeline(deal).await.len(), before.len() + 1);
}

/// (Tokens, the organization header, membership and malformed or unknown
/// ids in the path: tenancy_probes.rs checks them for every operation.)
#[tokio::test]
async fn activities_reject_bad_query_values() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "100").await;
    let bad = "page_size=500 page_size=0 page=0 page=-1 order=asc type=comment";
    assert_bad_queries(&ann, &activities_path(deal), bad).await;
}

#[tokio::test]
async fn activities_of_another_organization_are_404_r8() {
    // Ann is a member of Bob's organization too.
    let n = Neighbours::new("admin", "Bob's", "100").await;
    let (ann, bob, bobs_deal) = (n.ann, n.bob, n.bobs_deal);
    bob.comment(bobs_deal, "private note").await;
    let bobs_timeline = bob.timeline(bobs_deal).await;

    // Acting in her own organization, Ann cannot read or write Bob's timeline.
    ann.get(&activities_path(bobs_deal))
        .await
        .problem(404, "deal_not_found");
    let res = ann
        .post(
            &activities_path(bobs_deal),
            json!({"type": "comment", "payload": {"text": "hi from elsewhere"}}),
        )
        .await;
    assert_eq!(res.status, 404, "{}", res.body);
    assert_eq!(
        res.headers["content-type"], "application/problem+json",
        "{}",
        res.body
    );
    assert!(!res.body.to_string().contains("private note"));
    assert_eq!(bob.timeline(bobs_deal).await, bobs_timeline);
    // Acting in Bob's organization she can.
    let c = ann.in_org(bob.org_id).comment(bobs_deal, "hello").await;
    assert_eq!(c["author_id"], ann.id.to_string());
    assert_eq!(c["organization_id"], bob.org_id.to_string());
}
