use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_bad_queries, id_of, notices, notified, TestApp, TestUser};

/// A deal of `user` on `contact`, then patched with `patch` (unless empty).
async fn deal(user: &TestUser, contact: Uuid, amount: &str, currency: &str, patch: Value) -> Uuid {
    let body =
        json!({"contact_id": contact, "title": "Deal", "amount": amount, "currency": currency});
    let id = id_of(&user.create("/api/v1/deals", body).await);
    if patch != json!({}) {
        user.patch(&format!("/api/v1/deals/{id}"), patch)
            .await
            .ok(200);
    }
    id
}

/// GET as `user`; asserts 200 and returns the body and the X-Cache header.
async fn get(user: &TestUser, path: &str) -> (Value, String) {
    let res = user.get(path).await;
    let cache = res.headers["x-cache"].to_str().unwrap().to_owned();
    (res.ok(200).clone(), cache)
}

/// new: 100 EUR + 50.50 EUR + 10 USD; in_progress: none; won: 500 USD, 300 USD,
/// 99.99 EUR; lost: 0 GBP. Stages: see each deal.
async fn known_dataset(owner: &TestUser) {
    let c = owner.contact("Client").await;
    for (amount, currency, patch) in [
        ("100", "EUR", json!({})),
        ("50.50", "EUR", json!({"stage": "proposal"})),
        ("10", "USD", json!({"stage": "negotiation"})),
        ("500", "USD", json!({"status": "won", "stage": "closed"})),
        ("300", "USD", json!({"status": "won", "stage": "closed"})),
        (
            "99.99",
            "EUR",
            json!({"status": "won", "stage": "negotiation"}),
        ),
        ("0", "GBP", json!({"status": "lost"})),
    ] {
        deal(owner, c, amount, currency, patch).await;
    }
}

#[tokio::test]
async fn summary_on_a_known_dataset() {
    let (app, owner) = TestApp::with_user("owner").await;
    known_dataset(&owner).await;
    // One deal is old: outside a 30-day window.
    app.sql()
        .await
        .execute(
            "UPDATE crm.deals SET created_at = now() - interval '40 days' WHERE currency = 'GBP'",
            &[],
        )
        .await
        .unwrap();
    let (body, cache) = get(&owner, "/api/v1/analytics/deals/summary").await;
    assert_eq!(cache, "miss");
    assert_eq!(
        body,
        json!({
            "days": 30,
            "by_status": [
                {"status": "new", "count": 3, "amounts": [
                    {"currency": "EUR", "total": "150.50"}, {"currency": "USD", "total": "10.00"}]},
                {"status": "in_progress", "count": 0, "amounts": []},
                {"status": "won", "count": 3, "amounts": [
                    {"currency": "EUR", "total": "99.99"}, {"currency": "USD", "total": "800.00"}]},
                {"status": "lost", "count": 1, "amounts": [{"currency": "GBP", "total": "0.00"}]}
            ],
            "won_average": [{"currency": "EUR", "average": "99.99"}, {"currency": "USD", "average": "400.00"}],
            "new_deals": 6,
            "pipeline_id": null
        })
    );
    let (body, _) = get(&owner, "/api/v1/analytics/deals/summary?days=50").await;
    assert_eq!(body["days"], 50);
    assert_eq!(body["new_deals"], 7);
}

#[tokio::test]
async fn funnel_on_a_known_dataset() {
    let (_, owner) = TestApp::with_user("owner").await;
    known_dataset(&owner).await;
    let (body, _) = get(&owner, "/api/v1/analytics/deals/funnel").await;
    // The default: the organization's first (and only) pipeline, the deals'.
    let deals = owner.read("/api/v1/deals").await;
    let sales = deals["items"][0]["pipeline_id"].clone();
    // qualification: new 100 EUR, lost 0 GBP; proposal: 1; negotiation: 2; closed: 2.
    // reached: 7, 5, 4, 2.
    assert_eq!(
        body,
        json!({"pipeline_id": sales, "stages": [
            {"stage": "qualification", "count": 2, "by_status": {"new": 1, "in_progress": 0, "won": 0, "lost": 1}, "conversion_pct": null},
            {"stage": "proposal", "count": 1, "by_status": {"new": 1, "in_progress": 0, "won": 0, "lost": 0}, "conversion_pct": 71.43},
            {"stage": "negotiation", "count": 2, "by_status": {"new": 1, "in_progress": 0, "won": 1, "lost": 0}, "conversion_pct": 80.0},
            {"stage": "closed", "count": 2, "by_status": {"new": 0, "in_progress": 0, "won": 2, "lost": 0}, "conversion_pct": 50.0}
        ]})
    );
}

#[tokio::test]
async fn empty_organization_has_all_statuses_and_null_conversions() {
    let (_, owner) = TestApp::with_user("owner").await;
    let (summary, _) = get(&owner, "/api/v1/analytics/deals/summary").await;
    let statuses: Vec<&str> = summary["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["new", "in_progress", "won", "lost"]);
    assert!(summary["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["count"] == 0 && s["amounts"] == json!([])));
    assert_eq!(summary["won_average"], json!([]));
    assert_eq!(summary["new_deals"], 0);
    let (funnel, _) = get(&owner, "/api/v1/analytics/deals/funnel").await;
    let stages = funnel["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    assert!(stages
        .iter()
        .all(|s| s["conversion_pct"].is_null() && s["count"] == 0));
}

#[tokio::test]
async fn the_cache_hits_and_api_writes_to_deals_invalidate_it() {
    let (app, owner) = TestApp::with_user("owner").await;
    let mut notices = notices(&app).await;
    let org = owner.org_id;
    let c = owner.contact("Client").await;
    let d = deal(&owner, c, "100", "EUR", json!({})).await;
    notified(&mut notices, org, "deal").await;
    let path = "/api/v1/analytics/deals/summary";
    assert_eq!(get(&owner, path).await.1, "miss");
    let (first, cache) = get(&owner, path).await;
    assert_eq!(cache, "hit");
    assert_eq!(first["by_status"][0]["count"], 1);
    // A write behind the API's back (psql) is not hidden either: its event
    // notifies every instance's cache at commit (tests/api/instances.rs
    // times it across instances).
    app.sql()
        .await
        .execute("DELETE FROM crm.deals", &[])
        .await
        .unwrap();
    notified(&mut notices, org, "deal").await;
    let (after, cache) = get(&owner, path).await;
    assert_eq!(
        (cache.as_str(), after["by_status"][0]["count"].clone()),
        ("miss", json!(0))
    );
    // Writes through the API are never hidden: create, update, delete.
    let d2 = deal(&owner, c, "5", "EUR", json!({})).await;
    let (after, cache) = get(&owner, path).await;
    assert_eq!(
        (cache.as_str(), after["by_status"][0]["count"].clone()),
        ("miss", json!(1))
    );
    get(&owner, path).await;
    owner
        .patch(&format!("/api/v1/deals/{d2}"), json!({"status": "won"}))
        .await
        .ok(200);
    let (after, cache) = get(&owner, path).await;
    assert_eq!(
        (cache.as_str(), after["by_status"][2]["count"].clone()),
        ("miss", json!(1))
    );
    owner.delete(&format!("/api/v1/deals/{d2}")).await;
    let (after, cache) = get(&owner, path).await;
    assert_eq!(
        (cache.as_str(), after["by_status"][2]["count"].clone()),
        ("miss", json!(0))
    );
    notified(&mut notices, org, "deal").await;
    // The funnel is cached and invalidated the same way.
    let funnel = "/api/v1/analytics/deals/funnel";
    assert_eq!(get(&owner, funnel).await.1, "miss");
    assert_eq!(get(&owner, funnel).await.1, "hit");
    deal(&owner, c, "7", "EUR", json!({})).await;
    let (after, cache) = get(&owner, funnel).await;
    assert_eq!(
        (cache.as_str(), after["stages"][0]["count"].clone()),
        ("miss", json!(1))
    );
    let _ = d;
}

#[tokio::test]
async fn analytics_are_per_organization_and_the_cache_never_crosses_them() {
    let (app, ann) = TestApp::with_user("ann").await;
    let mut notices = notices(&app).await;
    let bob = app.user("bob").await;
    let c = ann.contact("Client").await;
    deal(&ann, c, "100", "EUR", json!({})).await;
    notified(&mut notices, ann.org_id, "deal").await;
    let path = "/api/v1/analytics/deals/summary";
    get(&ann, path).await;
    assert_eq!(get(&ann, path).await.1, "hit");
    let (bobs, cache) = get(&bob, path).await;
    assert_eq!(cache, "miss");
    assert_eq!(bobs["by_status"][0]["count"], 0);
    // Bob asking for Ann's organization: 404, from the cache's point of view too.
    bob.in_org(ann.org_id)
        .get(path)
        .await
        .problem(404, "organization_not_found");
    // A removed member loses access at once, cached or not.
    let carl = app.member_of(&ann, "carl", "member").await;
    notified(&mut notices, ann.org_id, "member").await;
    let as_carl = |p: &'static str| carl.get(p);
    as_carl(path).await.ok(200);
    assert_eq!(as_carl(path).await.headers["x-cache"], "hit");
    let res = ann
        .no_org()
        .delete(&format!(
            "/api/v1/organizations/{}/members/{}",
            ann.org_id, carl.id
        ))
        .await;
    assert_eq!(res.status, 204);
    as_carl(path).await.problem(404, "organization_not_found");
}

/// (Tokens, the organization header and membership: tenancy_probes.rs checks
/// them for every operation.)
#[tokio::test]
async fn analytics_validate_their_query() {
    let (_, owner) = TestApp::with_user("owner").await;
    let summary = "/api/v1/analytics/deals/summary";
    assert_bad_queries(&owner, summary, "days=0 days=3651 days=abc window=3").await;
    let (body, _) = get(&owner, &format!("{summary}?days=3650")).await;
    assert_eq!(body["days"], 3650);
    assert_bad_queries(&owner, "/api/v1/analytics/deals/funnel", "x=1").await;
}
