use axum::http::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_fields, assert_lists, assert_record, assert_timestamp,
    assert_updated, at, id_of, ids, list_ids, page_items, Neighbours, TestApp, TestUser, SALES,
};

const DEALS: &str = "/api/v1/deals";
const DEAL_FIELDS: &str =
    "id organization_id contact_id owner_id title amount currency status pipeline_id stage expected_close_date closed_at external_id created_at updated_at";

/// The deal list's ids for a query string.
async fn listed(user: &TestUser, query: &str) -> Vec<Uuid> {
    list_ids(user, DEALS, query, DEAL_FIELDS).await
}

#[tokio::test]
async fn deals_create_get_update_delete() {
    let (_, ann) = TestApp::with_user("ann").await;
    let org = ann.org_id;
    let contact = ann.contact("Client").await;
    let body =
        json!({"contact_id": contact, "title": " Big deal ", "amount": 10000, "currency": "EUR"});
    let deal = ann.create("/api/v1/deals", body).await;
    assert_record(
        &deal,
        DEAL_FIELDS,
        json!({"organization_id": org, "contact_id": contact, "owner_id": ann.id,
               "title": "Big deal", "amount": "10000.00", "currency": "EUR",
               "status": "new", "stage": "qualification"}),
    );
    let id = id_of(&deal);
    let path = at(DEALS, id);
    assert_eq!(ann.read(&path).await, deal);

    // A new deal's timeline holds its creation.
    let timeline = ann.timeline(id).await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["type"], "system");
    assert_eq!(timeline[0]["deal_id"], id.to_string());

    // PATCH is partial.
    let body = json!({"title": "Bigger deal", "amount": "12000.5", "currency": "USD"});
    let updated = ann.patch(&path, body).await.ok(200).clone();
    assert_record(
        &updated,
        DEAL_FIELDS,
        json!({"title": "Bigger deal", "amount": "12000.50", "currency": "USD",
               "status": "new", "stage": "qualification"}),
    );
    assert_updated(&deal, &updated);
    // null means "not given".
    let res = ann
        .patch(&path, json!({"title": null, "amount": null}))
        .await;
    assert_eq!(res.ok(200)["title"], "Bigger deal");
    assert_eq!(res.body["amount"], "12000.50");
    // Neither title nor amount changes are on the timeline.
    assert_eq!(ann.timeline_types(id).await, ["system"]);

    // Invalid patches change nothing.
    let cases = vec![
        (json!({"title": " "}), 400, "deals_title_invalid"),
        (json!({"status": "pending"}), 400, "validation_failed"),
        (json!({"stage": "closedish"}), 400, "stage_not_in_pipeline"),
        (
            json!({"organization_id": Uuid::new_v4()}),
            400,
            "validation_failed",
        ),
        (json!({"contact_id": "nope"}), 400, "validation_failed"),
        (
            json!({"contact_id": Uuid::new_v4()}),
            404,
            "deals_contact_id_not_found",
        ),
    ];
    ann.refused_patches(&path, cases).await;

    // Delete takes the timeline and tasks along.
    let task = ann.task(id, "Follow up", 1).await;
    ann.delete_for_good(&path, json!({"title": "ghost"}), "deal_not_found")
        .await;
    ann.get(&format!("{path}/activities"))
        .await
        .problem(404, "deal_not_found");
    ann.get(&format!("/api/v1/tasks/{task}"))
        .await
        .problem(404, "task_not_found");
    assert!(listed(&ann, "").await.is_empty());
    // The contact stays.
    ann.read(&format!("/api/v1/contacts/{contact}")).await;
}

#[tokio::test]
async fn deal_amounts_are_exact_and_validated() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let raw = |amount: &str, currency: &str| {
        format!(
            r#"{{"contact_id": "{contact}", "title": "Deal", "amount": {amount}, "currency": "{currency}"}}"#
        )
    };
    let mut created = 0;
    for (amount, want) in [
        ("10000", "10000.00"),
        (r#""10000""#, "10000.00"),
        ("0.1", "0.10"),
        ("0", "0.00"),
        ("12345678901.23", "12345678901.23"),
        (r#""12345678901.23""#, "12345678901.23"),
        ("999999999999.99", "999999999999.99"),
        (r#""0.07""#, "0.07"),
        ("1.50", "1.50"),
        ("1e2", "100.00"),
    ] {
        let res = ann
            .req(Method::POST, "/api/v1/deals")
            .raw("application/json", raw(amount, "EUR"))
            .await;
        assert_eq!(res.ok(201)["amount"], want, "amount {amount}");
        created += 1;
        // And it reads back the same.
        let got = ann.read(&at(DEALS, id_of(&res.body))).await;
        assert_eq!(got["amount"], want);
    }
    for (amount, currency, code) in [
        ("1.005", "EUR", "validation_failed"),
        (r#""1.005""#, "EUR", "validation_failed"),
        ("12345678901.234", "EUR", "validation_failed"),
        (r#""abc""#, "EUR", "validation_failed"),
        (r#""""#, "EUR", "validation_failed"),
        ("true", "EUR", "validation_failed"),
        ("null", "EUR", "validation_failed"),
        ("[1]", "EUR", "validation_failed"),
        ("-5", "EUR", "deals_amount_negative"),
        (r#""-0.01""#, "EUR", "deals_amount_negative"),
        ("10", "eur", "deals_currency_invalid"),
        ("10", "EU", "deals_currency_invalid"),
        ("10", "E1R", "deals_currency_invalid"),
    ] {
        let res = ann
            .req(Method::POST, "/api/v1/deals")
            .raw("application/json", raw(amount, currency))
            .await;
        let p = res.problem(400, code);
        let field = if code == "deals_currency_invalid" {
            "currency"
        } else {
            "amount"
        };
        assert_eq!(p["errors"][0]["field"], field, "{amount} {currency}: {p}");
    }
    // Missing fields.
    for body in [
        json!({"title": "Deal", "amount": 1, "currency": "EUR"}),
        json!({"contact_id": contact, "amount": 1, "currency": "EUR"}),
        json!({"contact_id": contact, "title": "Deal", "currency": "EUR"}),
        json!({"contact_id": contact, "title": "Deal", "amount": 1}),
        json!({"contact_id": contact, "title": "Deal", "amount": 1, "currency": "EUR", "status": "won"}),
    ] {
        ann.post("/api/v1/deals", body)
            .await
            .problem(400, "validation_failed");
    }
    let body = ann.read("/api/v1/deals?page_size=100").await;
    page_items(&body, 1, 100, created);

    // The same rules on PATCH, and a rejected PATCH changes nothing.
    let id = id_of(&body["items"][0]);
    let path = at(DEALS, id);
    let res = ann.patch(&at(DEALS, id), json!({"amount": 0.5})).await;
    assert_eq!(res.ok(200)["amount"], "0.50");
    let res = ann.patch(&at(DEALS, id), json!({"amount": "77.7"})).await;
    assert_eq!(res.ok(200)["amount"], "77.70");
    let before = ann.read(&path).await;
    for (body, code) in [
        (json!({"amount": "0.001"}), "validation_failed"),
        (json!({"amount": -1}), "deals_amount_negative"),
        (json!({"amount": "x"}), "validation_failed"),
        (json!({"currency": "usd"}), "deals_currency_invalid"),
    ] {
        ann.patch(&at(DEALS, id), body).await.problem(400, code);
    }
    assert_eq!(ann.read(&path).await, before);
}

/// Out-of-range amounts and over-long currencies are validation errors like
/// any other: 400 naming the field (SPEC §7), never a bare "invalid_value".
#[tokio::test]
async fn deal_amount_overflow_and_long_currency_name_their_field() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (amount, currency, field) in [
        (json!("1000000000000"), "EUR", "amount"),
        (json!(1e20), "EUR", "amount"),
        (json!(1), "EURO", "currency"),
    ] {
        let res = ann.post("/api/v1/deals", json!({"contact_id": contact, "title": "Huge", "amount": amount, "currency": currency})).await;
        let case = format!("amount {amount}, currency {currency}");
        got.push((
            case.clone(),
            res.status.as_u16(),
            res.body["errors"][0]["field"].clone(),
        ));
        want.push((case, 400, json!(field)));
    }
    assert_eq!(got, want);
    let body = ann.read("/api/v1/deals").await;
    assert!(page_items(&body, 1, 20, 0).is_empty());
}

struct Pipeline {
    ann: TestUser,
    mo: TestUser,
    mia: TestUser,
    c1: Uuid,
    c2: Uuid,
    d: [Uuid; 5],
}

/// Five deals:
/// d1 ann/c1 "alpha" 100 new/qualification;
/// d2 ann/c1 "bravo" 250.50 in_progress/proposal;
/// d3 mia/c2 "charlie" 1000 won/closed;
/// d4 mia/c2 "delta" 0 lost/closed;
/// d5 mia (created by the manager)/c1 "echo" 250.50 new/negotiation.
/// Created d1..d5, then updated d2, d3, d4, d5, d1 (in that order).
async fn pipeline() -> Pipeline {
    let (app, ann) = TestApp::with_user("ann").await;
    let [mo, mia] = app
        .members(&ann, [("mo", "manager"), ("mia", "member")])
        .await;
    let org = ann.org_id;
    let c1 = ann.contact("First client").await;
    let c2 = mia.contact("Second client").await;
    let d1 = ann.deal(c1, "alpha", "100").await;
    let d2 = ann.deal(c1, "bravo", "250.50").await;
    let d3 = mia.deal(c2, "charlie", "1000").await;
    let d4 = mia.deal(c2, "delta", "0").await;
    let d5 = id_of(
        &mo.create("/api/v1/deals", json!({"contact_id": c1, "title": "echo", "amount": 250.5, "currency": "EUR", "owner_id": mia.id}))
        .await,
    );
    for (user, id, body) in [
        (
            &ann,
            d2,
            json!({"status": "in_progress", "stage": "proposal"}),
        ),
        (&mia, d3, json!({"status": "won", "stage": "closed"})),
        (&mia, d4, json!({"status": "lost", "stage": "closed"})),
        (&mia, d5, json!({"stage": "negotiation"})),
        (&ann, d1, json!({"title": "alpha"})),
    ] {
        user.in_org(org).patch(&at(DEALS, id), body).await.ok(200);
    }
    Pipeline {
        ann,
        mo,
        mia,
        c1,
        c2,
        d: [d1, d2, d3, d4, d5],
    }
}

#[tokio::test]
async fn deals_list_filters() {
    let Pipeline {
        ann,
        mo,
        mia,
        c1,
        c2,
        d,
    } = pipeline().await;
    let [d1, d2, d3, d4, d5] = d;
    // Default: newest first, envelope with page 1, page_size 20.
    let body = ann.read("/api/v1/deals").await;
    assert_eq!(ids(&page_items(&body, 1, 20, 5)), vec![d5, d4, d3, d2, d1]);
    let d5_item = &body["items"][0];
    assert_eq!(d5_item["owner_id"], mia.id.to_string());
    assert_eq!(d5_item["amount"], "250.50");
    assert_eq!(d5_item["stage"], "negotiation");

    let none = Vec::<Uuid>::new();
    let cases = [
        ("status=new", vec![d5, d1]),
        ("status=new&status=won", vec![d5, d3, d1]),
        ("status=won&status=new", vec![d5, d3, d1]),
        ("status=in_progress", vec![d2]),
        ("status=lost", vec![d4]),
        (
            "status=new&status=in_progress&status=won&status=lost",
            vec![d5, d4, d3, d2, d1],
        ),
        ("stage=qualification", vec![d1]),
        ("stage=proposal", vec![d2]),
        ("stage=negotiation", vec![d5]),
        ("stage=closed", vec![d4, d3]),
        ("stage=closed&status=won", vec![d3]),
        // Amount bounds are inclusive.
        ("min_amount=250.50", vec![d5, d3, d2]),
        ("min_amount=250.51", vec![d3]),
        ("max_amount=250.5", vec![d5, d4, d2, d1]),
        ("max_amount=0", vec![d4]),
        ("min_amount=100&max_amount=250.50", vec![d5, d2, d1]),
        ("min_amount=2000", none.clone()),
    ];
    let mut cases: Vec<(String, Vec<Uuid>)> = cases.map(|(q, ids)| (q.to_owned(), ids)).into();
    // Owner and contact, and combined.
    cases.extend([
        (format!("owner_id={}", mia.id), vec![d5, d4, d3]),
        (format!("contact_id={c1}"), vec![d5, d2, d1]),
        (format!("contact_id={c2}"), vec![d4, d3]),
        (format!("contact_id={}", Uuid::new_v4()), none),
        (
            format!("owner_id={}&status=new&status=lost&min_amount=1", mia.id),
            vec![d5],
        ),
    ]);
    assert_lists(&ann, DEALS, DEAL_FIELDS, cases).await;
    let by_ann = vec![(format!("owner_id={}", ann.id), vec![d2, d1])];
    assert_lists(&mo, DEALS, DEAL_FIELDS, by_ann).await;
    let body = ann
        .read(&format!(
            "/api/v1/deals?contact_id={c1}&max_amount=250.50&order_by=amount&order=asc&page_size=2"
        ))
        .await;
    let items = page_items(&body, 1, 2, 3);
    assert_eq!(items[0]["id"], d1.to_string());
    assert_eq!(items[1]["amount"], "250.50");
    // Paged filters keep the full total.
    let body = ann
        .read("/api/v1/deals?status=new&status=won&page=2&page_size=2")
        .await;
    assert_eq!(ids(&page_items(&body, 2, 2, 3)), vec![d1]);
    // The deepest offset page is an empty page; deeper ones are refused
    // (tests/api/cursors.rs checks the bound on every list).
    let body = ann.read("/api/v1/deals?page=100&page_size=100").await;
    assert!(page_items(&body, 100, 100, 5).is_empty());
}

#[tokio::test]
async fn deals_list_sorts_with_ties_broken_by_id() {
    let Pipeline {
        ann,
        d: [d1, d2, d3, d4, d5],
        ..
    } = pipeline().await;
    // d2 and d5 share an amount (250.50): ties go by id.
    let (lo, hi) = if d2 < d5 { (d2, d5) } else { (d5, d2) };

    let cases = [
        ("order_by=created_at", vec![d5, d4, d3, d2, d1]),
        ("order=desc", vec![d5, d4, d3, d2, d1]),
        ("order_by=created_at&order=asc", vec![d1, d2, d3, d4, d5]),
        ("order=asc", vec![d1, d2, d3, d4, d5]),
        ("order_by=updated_at&order=asc", vec![d2, d3, d4, d5, d1]),
        ("order_by=updated_at", vec![d1, d5, d4, d3, d2]),
        ("order_by=amount&order=asc", vec![d4, d1, lo, hi, d3]),
        ("order_by=amount&order=desc", vec![d3, hi, lo, d1, d4]),
        ("order_by=amount", vec![d3, hi, lo, d1, d4]),
        ("order_by=title&order=asc", vec![d1, d2, d3, d4, d5]),
        ("order_by=title&order=desc", vec![d5, d4, d3, d2, d1]),
    ];
    let cases = cases.map(|(q, ids)| (q.to_owned(), ids)).into();
    assert_lists(&ann, DEALS, DEAL_FIELDS, cases).await;
    // Paging through a sort with ties gives every deal exactly once, in order.
    for (query, whole) in [
        ("order_by=amount&order=asc", vec![d4, d1, lo, hi, d3]),
        ("order_by=amount&order=desc", vec![d3, hi, lo, d1, d4]),
    ] {
        let mut paged = Vec::new();
        for page in 1..=3 {
            let body = ann
                .read(&format!("/api/v1/deals?{query}&page={page}&page_size=2"))
                .await;
            let items = page_items(&body, page, 2, 5);
            paged.extend(ids(&items));
        }
        assert_eq!(paged, whole, "{query}");
    }
    // Many equal amounts: ties are in id order, in the sort's direction.
    let contact = ann.contact("Tied").await;
    let mut tied = Vec::new();
    for i in 0..6 {
        tied.push(ann.deal(contact, &format!("tie {i}"), "42").await);
    }
    tied.sort();
    let mut rev = tied.clone();
    rev.reverse();
    let cases = vec![
        (
            format!("contact_id={contact}&order_by=amount&order=asc"),
            tied,
        ),
        (
            format!("contact_id={contact}&order_by=amount&order=desc"),
            rev,
        ),
    ];
    assert_lists(&ann, DEALS, DEAL_FIELDS, cases).await;
}

/// (Tokens, the organization header, membership and malformed or unknown
/// ids in the path: tenancy_probes.rs checks them for every operation.)
#[tokio::test]
async fn deals_reject_bad_query_values() {
    let Pipeline { ann, .. } = pipeline().await;
    let bad = "page_size=500 page_size=101 page_size=0 page=0 page=x order_by=password \
               order_by=amount%3Bdrop%20table%20deals order_by= order=sideways \
               order=ASC%20NULLS%20FIRST status=pending status=new&status=pending status=NEW \
               min_amount=abc max_amount=1.234 owner_id=not-a-uuid pipeline_id=sales \
               contact_id=123 colour=blue search=alpha";
    assert_bad_queries(&ann, "/api/v1/deals", bad).await;
    // A stage is a key of the organization's stages, which the database knows.
    for query in [
        "stage=closedish",
        "stage=proposal&stage=closedish",
        "stage=Proposal",
    ] {
        let res = ann.get(&format!("/api/v1/deals?{query}")).await;
        assert_eq!(res.field(400, "stage_not_in_pipeline"), "stage", "{query}");
    }
}

#[tokio::test]
async fn deals_follow_the_role_table() {
    let (app, owner, [manager, mia, max]) = TestApp::with_team(SALES).await;
    let stranger = app.user("stranger").await;
    let contact = owner.contact("Shared client").await;
    let new_deal = |owner_id: Option<Uuid>| {
        let mut body =
            json!({"contact_id": contact, "title": "Deal", "amount": "10", "currency": "EUR"});
        if let Some(o) = owner_id {
            body["owner_id"] = json!(o);
        }
        body
    };

    // Members create deals owned by themselves, even on others' contacts.
    let mias = mia.create("/api/v1/deals", new_deal(None)).await;
    assert_eq!(mias["owner_id"], mia.id.to_string());
    let mias = id_of(&mias);
    let explicit = mia.create("/api/v1/deals", new_deal(Some(mia.id))).await;
    assert_eq!(explicit["owner_id"], mia.id.to_string());
    // Not for someone else; a manager may.
    let p = mia.post("/api/v1/deals", new_deal(Some(max.id))).await;
    assert_eq!(p.field(403, "role_forbidden"), "owner_id");
    let maxs = manager
        .create("/api/v1/deals", new_deal(Some(max.id)))
        .await;
    assert_eq!(maxs["owner_id"], max.id.to_string());
    let maxs = id_of(&maxs);
    owner
        .post("/api/v1/deals", new_deal(Some(stranger.id)))
        .await
        .problem(404, "deals_owner_id_not_member");
    assert_eq!(listed(&owner, "").await.len(), 3);

    // Everyone reads every deal.
    mia.read(&at(DEALS, maxs)).await;
    assert_eq!(listed(&mia, "").await.len(), 3);

    // owner_id filter: a member only by themselves.
    let own = listed(&mia, &format!("owner_id={}", mia.id)).await;
    assert_eq!(own.len(), 2);
    assert!(own.contains(&mias));
    mia.get(&format!("/api/v1/deals?owner_id={}", max.id))
        .await
        .problem(403, "role_forbidden");
    assert_eq!(
        listed(&manager, &format!("owner_id={}", max.id)).await,
        vec![maxs]
    );

    // A member may not touch another member's deal.
    let before = owner.read(&at(DEALS, maxs)).await;
    let patches = vec![
        json!({"title": "Mine now"}),
        json!({"status": "in_progress"}),
        json!({"stage": "proposal"}),
        json!({"owner_id": mia.id}),
    ];
    mia.forbidden(&at(DEALS, maxs), patches).await;
    assert_eq!(owner.read(&at(DEALS, maxs)).await, before);
    assert_eq!(owner.timeline_types(maxs).await, ["system"]);
    // Nor give their own away.
    mia.patch(&at(DEALS, mias), json!({"owner_id": max.id}))
        .await
        .problem(403, "role_forbidden");
    assert_eq!(
        owner.read(&at(DEALS, mias)).await["owner_id"],
        mia.id.to_string()
    );
    // Their own they may change and delete.
    let res = mia
        .patch(
            &at(DEALS, mias),
            json!({"title": "Mia's big one", "status": "in_progress"}),
        )
        .await;
    assert_eq!(res.ok(200)["title"], "Mia's big one");
    assert_eq!(res.body["status"], "in_progress");
    let res = mia.delete(&at(DEALS, id_of(&explicit))).await;
    assert_eq!(res.status, 204);

    // A manager may change, reassign and delete other members' deals.
    let res = manager
        .patch(
            &at(DEALS, maxs),
            json!({"owner_id": mia.id, "title": "Reassigned"}),
        )
        .await;
    assert_eq!(res.ok(200)["owner_id"], mia.id.to_string());
    manager
        .patch(&at(DEALS, maxs), json!({"owner_id": stranger.id}))
        .await
        .problem(404, "deals_owner_id_not_member");
    assert_eq!(
        owner.read(&at(DEALS, maxs)).await["owner_id"],
        mia.id.to_string()
    );
    // Now Mia's, so Mia may change it, and Max may not.
    mia.patch(&at(DEALS, maxs), json!({"title": "Mine"}))
        .await
        .ok(200);
    max.patch(&at(DEALS, maxs), json!({"title": "Back"}))
        .await
        .problem(403, "role_forbidden");
    let res = manager.delete(&at(DEALS, mias)).await;
    assert_eq!(res.status, 204);
    assert_eq!(listed(&owner, "").await, vec![maxs]);
}

#[tokio::test]
async fn won_requires_an_amount_r1() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let free = ann.deal(contact, "Free", "0").await;
    let path = at(DEALS, free);
    let refused = |body: Value| (body, 400, "deal_won_requires_amount");
    let answers = ann
        .refused_patches(
            &path,
            vec![
                refused(json!({"status": "won"})),
                // Also when it comes with a stage change: nothing of it is kept.
                refused(json!({"status": "won", "stage": "closed"})),
            ],
        )
        .await;
    assert_eq!(answers[0].body["errors"][0]["field"], "status");
    assert_eq!(ann.timeline_types(free).await, ["system"]);
    // Other statuses are fine at 0.
    let res = ann.patch(&path, json!({"status": "lost"})).await;
    assert_eq!(res.ok(200)["status"], "lost");
    // Won together with an amount is fine.
    let res = ann
        .patch(&path, json!({"status": "won", "amount": "0.01"}))
        .await;
    assert_eq!(res.ok(200)["status"], "won");
    assert_eq!(res.body["amount"], "0.01");
    // Lowering a won deal's amount to 0 is not.
    let answers = ann
        .refused_patches(
            &path,
            vec![
                refused(json!({"amount": 0})),
                refused(json!({"amount": "0.00", "title": "Free again"})),
            ],
        )
        .await;
    assert_eq!(answers[0].body["errors"][0]["field"], "amount");
    // Lowering to something above 0 is allowed.
    let res = ann.patch(&path, json!({"amount": "5"})).await;
    assert_eq!(res.ok(200)["amount"], "5.00");
    assert_eq!(
        ann.timeline_types(free).await,
        ["status_changed", "status_changed", "system"]
    );
}

#[tokio::test]
async fn stage_moves_backwards_only_for_owner_and_admin_r5() {
    let who = [
        ("admin", "admin"),
        ("manager", "manager"),
        ("mia", "member"),
    ];
    let (_, owner, [admin, manager, mia]) = TestApp::with_team(who).await;
    let contact = mia.contact("Client").await;
    let deal = mia.deal(contact, "Deal", "100").await;
    let path = at(DEALS, deal);
    let stage = |user: &TestUser, to: &str| user.patch(&path, json!({"stage": to}));

    // Forward, skipping a stage: free for a member on their own deal.
    let res = stage(&mia, "negotiation").await;
    assert_eq!(res.ok(200)["stage"], "negotiation");
    // Backwards: not for a member, nor a manager.
    let before = owner.read(&path).await;
    for user in [&mia, &manager] {
        for to in ["proposal", "qualification"] {
            let p = stage(user, to).await;
            assert_eq!(p.field(403, "stage_rollback_forbidden"), "stage");
        }
    }
    // Not even with another change riding along.
    manager
        .patch(
            &at(DEALS, deal),
            json!({"stage": "proposal", "status": "in_progress"}),
        )
        .await
        .problem(403, "stage_rollback_forbidden");
    assert_eq!(owner.read(&path).await, before);
    assert_eq!(
        owner.timeline_types(deal).await,
        ["stage_changed", "system"]
    );
    // Owner and admin may.
    assert_eq!(stage(&admin, "proposal").await.ok(200)["stage"], "proposal");
    assert_eq!(
        stage(&owner, "qualification").await.ok(200)["stage"],
        "qualification"
    );
    // Forward again: the manager on someone else's deal, then the member to the end.
    assert_eq!(
        stage(&manager, "proposal").await.ok(200)["stage"],
        "proposal"
    );
    assert_eq!(stage(&mia, "closed").await.ok(200)["stage"], "closed");
    // The same stage is not a move.
    assert_eq!(stage(&mia, "closed").await.ok(200)["stage"], "closed");
    // And from closed, even the smallest step back is refused to a member.
    stage(&mia, "negotiation")
        .await
        .problem(403, "stage_rollback_forbidden");

    let timeline = owner.timeline(deal).await;
    let moves: Vec<(String, String, String, String)> = timeline
        .iter()
        .filter(|a| a["type"] == "stage_changed")
        .map(|a| {
            (
                a["payload"]["from"].as_str().unwrap().to_owned(),
                a["payload"]["to"].as_str().unwrap().to_owned(),
                a["author_id"].as_str().unwrap().to_owned(),
                a["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let m = |from: &str, to: &str, who: &TestUser| {
        (
            from.to_owned(),
            to.to_owned(),
            who.id.to_string(),
            "stage_changed".to_owned(),
        )
    };
    assert_eq!(
        moves,
        vec![
            m("proposal", "closed", &mia),
            m("qualification", "proposal", &manager),
            m("proposal", "qualification", &owner),
            m("negotiation", "proposal", &admin),
            m("qualification", "negotiation", &mia),
        ]
    );
    assert_eq!(timeline.len(), 6);
    assert_eq!(owner.read(&path).await["stage"], "closed");
}

#[tokio::test]
async fn status_and_stage_changes_are_on_the_timeline_r6() {
    let (_, owner, [manager, mia, _]) = TestApp::with_team(SALES).await;
    let org = owner.org_id;
    let contact = mia.contact("Client").await;
    let deal = mia.deal(contact, "Deal", "100").await;

    for (user, body) in [
        (&mia, json!({"status": "in_progress"})),
        (
            &mia,
            json!({"status": "in_progress", "title": "Same status"}),
        ),
        (&manager, json!({"status": "lost"})),
        (&owner, json!({"status": "new", "stage": "proposal"})),
        (&mia, json!({"title": "Only a title", "amount": 200})),
        (
            &mia,
            json!({"status": "won", "stage": "closed", "amount": 300}),
        ),
    ] {
        user.in_org(org).patch(&at(DEALS, deal), body).await.ok(200);
    }
    // A rejected change writes nothing.
    mia.patch(
        &at(DEALS, deal),
        json!({"status": "lost", "stage": "negotiation"}),
    )
    .await
    .problem(403, "stage_rollback_forbidden");
    mia.patch(&at(DEALS, deal), json!({"status": "lost", "amount": "-1"}))
        .await
        .problem(400, "deals_amount_negative");

    let timeline = mia.timeline(deal).await;
    let got: Vec<(String, Value, String)> = timeline
        .iter()
        .map(|a| {
            assert_fields(
                a,
                &[
                    "id",
                    "organization_id",
                    "deal_id",
                    "author_id",
                    "type",
                    "payload",
                    "created_at",
                ],
            );
            assert_eq!(a["deal_id"], deal.to_string());
            assert_eq!(a["organization_id"], org.to_string());
            assert_timestamp(&a["created_at"]);
            (
                a["type"].as_str().unwrap().to_owned(),
                a["payload"].clone(),
                a["author_id"].as_str().unwrap_or("null").to_owned(),
            )
        })
        .collect();
    let row = |t: &str, from: &str, to: &str, who: &TestUser| {
        (
            t.to_owned(),
            json!({"from": from, "to": to}),
            who.id.to_string(),
        )
    };
    // Newest first; in one request, the status change is written before the stage change.
    assert_eq!(
        got[..6],
        [
            row("stage_changed", "proposal", "closed", &mia),
            row("status_changed", "new", "won", &mia),
            row("stage_changed", "qualification", "proposal", &owner),
            row("status_changed", "lost", "new", &owner),
            row("status_changed", "in_progress", "lost", &manager),
            row("status_changed", "new", "in_progress", &mia),
        ]
    );
    assert_eq!(got.len(), 7);
    assert_eq!(got[6].0, "system");
    let deal_now = mia.read(&at(DEALS, deal)).await;
    assert_eq!(
        (&deal_now["status"], &deal_now["stage"], &deal_now["amount"]),
        (&json!("won"), &json!("closed"), &json!("300.00"))
    );
}

#[tokio::test]
async fn deals_of_another_organization_are_404_r8() {
    // Ann is also an admin in Bob's organization, so the only thing keeping
    // her out of Bob's data below is the organization she acts in.
    let Neighbours {
        ann,
        bob,
        bobs_contact,
        bobs_deal,
        ..
    } = Neighbours::new("admin", "Bob's deal", "500").await;
    let anns_contact = ann.contact("Ann's client").await;
    let anns_deal = ann.deal(anns_contact, "Ann's deal", "10").await;
    let bobs_before = bob.read(&at(DEALS, bobs_deal)).await;
    let anns_before = ann.read(&at(DEALS, anns_deal)).await;

    // A body naming another organization's contact: 404.
    let p = ann
        .post(
            "/api/v1/deals",
            json!({"contact_id": bobs_contact, "title": "Sneaky", "amount": 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(p.field(404, "deals_contact_id_not_found"), "contact_id");
    ann.patch(&at(DEALS, anns_deal), json!({"contact_id": bobs_contact}))
        .await
        .problem(404, "deals_contact_id_not_found");
    // Another organization's deal by id: 404.
    let patch = json!({"status": "lost", "stage": "closed"});
    ann.not_found(&at(DEALS, bobs_deal), patch, "deal_not_found")
        .await;
    // Lists never show it.
    assert_eq!(
        listed(&ann, &format!("contact_id={bobs_contact}")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(listed(&ann, "").await, vec![anns_deal]);
    // Nothing changed on either side.
    assert_eq!(bob.read(&at(DEALS, bobs_deal)).await, bobs_before);
    assert_eq!(bob.timeline_types(bobs_deal).await, ["system"]);
    assert_eq!(ann.read(&at(DEALS, anns_deal)).await, anns_before);
    assert_eq!(listed(&bob, "").await, vec![bobs_deal]);
}

#[tokio::test]
async fn very_large_totals_are_estimated_and_say_so() {
    let (app, owner) = TestApp::with_user("owner").await;
    let res = owner
        .post("/api/v1/contacts", serde_json::json!({"name": "Client"}))
        .await;
    let contact: uuid::Uuid = res.ok(201)["id"].as_str().unwrap().parse().unwrap();
    app.sql()
        .await
        .execute(
            "INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
             SELECT $1, $2, $3, 'Deal ' || n, n, 'EUR' FROM generate_series(1, 1050) n",
            &[&owner.org_id, &contact, &owner.id],
        )
        .await
        .unwrap();
    let list = |q: &str| owner.get(&format!("/api/v1/deals?{q}"));
    // Over 1,000 matches: the planner's estimate, never below the exact floor.
    let res = list("page_size=5").await;
    let body = res.ok(200);
    assert_eq!(body["total_exact"], false);
    assert!(body["total"].as_i64().unwrap() > 1_000, "{}", body["total"]);
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    // Up to 1,000: exact.
    let res = list("min_amount=50&max_amount=949").await;
    let body = res.ok(200);
    assert_eq!(
        (body["total"].as_i64(), body["total_exact"].as_bool()),
        (Some(900), Some(true))
    );
}
