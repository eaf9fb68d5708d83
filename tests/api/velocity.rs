//! SPEC §10 over HTTP: GET /deals/{id}/stage-history, expected_close_date and
//! closed_at on deals, GET /analytics/deals/velocity and /forecast (numbers on
//! small data sets, parameters, 400s, 404s, the cache).

use chrono::{Datelike, Months, NaiveDate, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_timestamp, id_of, notices, notified, TestApp, TestUser,
};

async fn exec(app: &TestApp, sql: &str, id: Uuid) {
    app.sql()
        .await
        .execute(sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A deal that moved from qualification to proposal: its qualification stay
/// is made an hour long, an hour ago (one statement, so one now()).
const HOUR_IN_QUALIFICATION: &str = "UPDATE crm.deal_stage_history \
    SET entered_at = now() - CASE stage WHEN 'qualification' THEN interval '2 hours' ELSE interval '1 hour' END, \
        left_at = CASE stage WHEN 'qualification' THEN now() - interval '1 hour' END \
    WHERE deal_id = $1";

/// GET as `user`; asserts 200 and returns the body and the X-Cache header.
async fn get(user: &TestUser, path: &str) -> (Value, String) {
    let res = user.get(path).await;
    let cache = res.headers["x-cache"].to_str().unwrap().to_owned();
    (res.ok(200).clone(), cache)
}

async fn sales_pipeline(user: &TestUser) -> Uuid {
    let pipelines = user.read("/api/v1/pipelines").await;
    pipelines["items"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn stage_history_records_every_stay_oldest_first() {
    let (app, owner) = TestApp::with_user("owner").await;
    let member = app.member_of(&owner, "mia", "member").await;
    let c = owner.contact("Client").await;
    let deal = owner.deal(c, "Deal", "100").await;
    let path = format!("/api/v1/deals/{deal}/stage-history");
    let first = owner.read(&path).await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "a new deal has one stay: {first}");
    assert_eq!(items[0]["stage"], "qualification");
    assert_eq!(items[0]["left_at"], Value::Null);
    assert_eq!(items[0]["entered_by"], json!(owner.id));
    assert_timestamp(&items[0]["entered_at"]);

    owner
        .patch(
            &format!("/api/v1/deals/{deal}"),
            json!({"stage": "proposal"}),
        )
        .await
        .ok(200);
    // Known times: qualification lasted an hour, proposal began an hour ago.
    exec(&app, HOUR_IN_QUALIFICATION, deal).await;
    let history = member.read(&path).await;
    let items = history["items"].as_array().unwrap();
    let stages: Vec<&str> = items.iter().map(|i| i["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["qualification", "proposal"], "oldest first");
    assert_eq!(items[0]["duration_seconds"], 3600);
    assert_eq!(items[0]["left_at"], items[1]["entered_at"]);
    let current = items[1]["duration_seconds"].as_i64().unwrap();
    assert!(
        (3600..3700).contains(&current),
        "the current stay lasts up to now: {current}"
    );
    assert_eq!(items[1]["left_at"], Value::Null);
    let mut keys: Vec<&String> = items[1].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "duration_seconds",
            "entered_at",
            "entered_by",
            "left_at",
            "pipeline_id",
            "stage"
        ]
    );

    // Another organization's deal, and one that does not exist: 404.
    let other = app.user("other").await;
    other.get(&path).await.problem(404, "deal_not_found");
    owner
        .get(&format!("/api/v1/deals/{}/stage-history", Uuid::new_v4()))
        .await
        .problem(404, "deal_not_found");
}

#[tokio::test]
async fn deals_carry_expected_close_date_and_a_database_kept_closed_at() {
    let (_, owner) = TestApp::with_user("owner").await;
    let c = owner.contact("Client").await;
    let body = json!({"contact_id": c, "title": "Dated", "amount": "10", "currency": "EUR",
                      "expected_close_date": "2031-05-17"});
    let deal = owner.create("/api/v1/deals", body).await;
    assert_eq!(deal["expected_close_date"], "2031-05-17");
    assert_eq!(deal["closed_at"], Value::Null);
    let path = format!("/api/v1/deals/{}", id_of(&deal));
    let kept = owner.patch(&path, json!({"title": "Renamed"})).await;
    assert_eq!(kept.ok(200)["expected_close_date"], "2031-05-17");
    let moved = owner
        .patch(&path, json!({"expected_close_date": "2030-01-31"}))
        .await;
    assert_eq!(moved.ok(200)["expected_close_date"], "2030-01-31");
    let cleared = owner
        .patch(&path, json!({"expected_close_date": null}))
        .await;
    assert_eq!(cleared.ok(200)["expected_close_date"], Value::Null);
    owner
        .patch(&path, json!({"expected_close_date": "2030-02-30"}))
        .await
        .problem(400, "validation_failed");

    let won = owner.patch(&path, json!({"status": "won"})).await;
    let closed_at = won.ok(200)["closed_at"].clone();
    assert_timestamp(&closed_at);
    assert_eq!(owner.read(&path).await["closed_at"], closed_at);
    let reopened = owner.patch(&path, json!({"status": "in_progress"})).await;
    assert_eq!(reopened.ok(200)["closed_at"], Value::Null);
    // closed_at is the database's: not a request field.
    owner
        .patch(&path, json!({"closed_at": "2020-01-01T00:00:00Z"}))
        .await
        .problem(400, "validation_failed");
}

/// Velocity on a known data set, parameters, and the cache.
#[tokio::test]
async fn velocity_counts_stays_and_closes_in_the_window() {
    let (app, owner) = TestApp::with_user("owner").await;
    let mut notices = notices(&app).await;
    let c = owner.contact("Client").await;
    // A: qualification for an hour, then in proposal for the last hour.
    let a = owner.deal(c, "A", "100").await;
    owner
        .patch(&format!("/api/v1/deals/{a}"), json!({"stage": "proposal"}))
        .await
        .ok(200);
    exec(&app, HOUR_IN_QUALIFICATION, a).await;
    // B: created 3 days ago, a day in qualification, won a day ago (a 2-day cycle).
    let b = owner.deal(c, "B", "50").await;
    owner
        .patch(
            &format!("/api/v1/deals/{b}"),
            json!({"status": "won", "stage": "closed"}),
        )
        .await
        .ok(200);
    exec(&app, "UPDATE crm.deals SET created_at = now() - interval '3 days', closed_at = now() - interval '1 day' WHERE id = $1", b).await;
    exec(&app, "UPDATE crm.deal_stage_history SET entered_at = now() - CASE stage WHEN 'qualification' THEN interval '3 days' ELSE interval '2 days' END, left_at = CASE stage WHEN 'qualification' THEN now() - interval '2 days' END WHERE deal_id = $1", b).await;
    let sales = sales_pipeline(&owner).await;

    // qualification: 3600 s and 86400 s: avg 45000; each alone in its bucket,
    // so median 3600 + 0.5 × 82800 = 45000 and p90 3600 + 0.9 × 82800 = 78120.
    notified(&mut notices, owner.org_id, "deal").await;
    let (body, cache) = get(&owner, "/api/v1/analytics/deals/velocity").await;
    assert_eq!(cache, "miss");
    let stage = |key: &str, completed: i64, avg: Value, median: Value, p90: Value, current: i64| {
        json!({"stage": key, "stays_completed": completed, "avg_seconds": avg, "median_seconds": median,
               "p90_seconds": p90, "current": current, "stuck": 0})
    };
    assert_eq!(
        body,
        json!({
            "pipeline_id": sales, "days": 90, "stuck_after_days": 30,
            "stages": [
                stage("qualification", 2, json!(45000), json!(45000), json!(78120), 0),
                stage("proposal", 0, Value::Null, Value::Null, Value::Null, 1),
                stage("negotiation", 0, Value::Null, Value::Null, Value::Null, 0),
                stage("closed", 0, Value::Null, Value::Null, Value::Null, 0),
            ],
            "won": 1, "lost": 0, "win_rate_pct": 100.0, "avg_cycle_days": 2.0
        })
    );
    assert_eq!(
        get(&owner, "/api/v1/analytics/deals/velocity").await.1,
        "hit"
    );
    // A one-day window: only A's stay ended in it (B's ended two days ago, and
    // B closed a day ago, just before the window).
    let (day, cache) = get(
        &owner,
        &format!("/api/v1/analytics/deals/velocity?days=1&stuck_after_days=1&pipeline_id={sales}"),
    )
    .await;
    assert_eq!(cache, "miss", "the parameters are part of the cache key");
    assert_eq!(day["stages"][0]["stays_completed"], 1);
    assert_eq!(day["stages"][0]["avg_seconds"], 3600);
    assert_eq!(
        (day["days"].clone(), day["stuck_after_days"].clone()),
        (json!(1), json!(1))
    );

    // A deal write through the API is never hidden by the cache.
    owner
        .patch(&format!("/api/v1/deals/{a}"), json!({"status": "lost"}))
        .await
        .ok(200);
    let (after, cache) = get(&owner, "/api/v1/analytics/deals/velocity").await;
    assert_eq!(cache, "miss");
    assert_eq!(
        (
            after["lost"].clone(),
            after["win_rate_pct"].clone(),
            after["stages"][1]["current"].clone()
        ),
        (json!(1), json!(50.0), json!(0))
    );

    assert_bad_queries(
        &owner,
        "/api/v1/analytics/deals/velocity",
        "days=0 days=3651 days=abc stuck_after_days=0 stuck_after_days=3651 pipeline_id=nope unknown=1",
    )
    .await;
    let res = owner
        .get("/api/v1/analytics/deals/velocity?stuck_after_days=0")
        .await;
    assert_eq!(
        res.field(400, "invalid_query_parameter"),
        "stuck_after_days"
    );
    let other = app.user("other").await;
    let theirs = sales_pipeline(&other).await;
    owner
        .get(&format!(
            "/api/v1/analytics/deals/velocity?pipeline_id={theirs}"
        ))
        .await
        .problem(404, "pipeline_not_found");
}

/// A deal of (amount, currency, stage) expected to close on `date`.
async fn dated(
    user: &TestUser,
    contact: Uuid,
    what: (&str, &str, &str),
    date: Option<NaiveDate>,
) -> Uuid {
    let (amount, currency, stage) = what;
    let body = json!({"contact_id": contact, "title": "Forecast", "amount": amount, "currency": currency,
                      "stage": stage, "expected_close_date": date});
    id_of(&user.create("/api/v1/deals", body).await)
}

fn month(d: NaiveDate) -> String {
    d.format("%Y-%m").to_string()
}

#[tokio::test]
async fn forecast_sums_open_deals_by_expected_month() {
    let (app, owner) = TestApp::with_user("owner").await;
    let mut notices = notices(&app).await;
    let c = owner.contact("Client").await;
    let today = Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    let next = first + Months::new(1);
    let before = first.pred_opt().unwrap();
    // qualification 10 %, proposal 30 %, negotiation 60 %.
    let this_month = dated(&owner, c, ("100", "EUR", "qualification"), Some(today)).await;
    dated(&owner, c, ("200", "USD", "proposal"), Some(next)).await;
    dated(&owner, c, ("50", "EUR", "negotiation"), None).await;
    dated(&owner, c, ("70", "EUR", "qualification"), Some(before)).await;
    let won = dated(&owner, c, ("999", "EUR", "qualification"), Some(today)).await;
    owner
        .patch(&format!("/api/v1/deals/{won}"), json!({"status": "won"}))
        .await
        .ok(200);

    let amounts = |currency: &str, total: &str, weighted: &str| json!([{"currency": currency, "total": total, "weighted": weighted}]);
    notified(&mut notices, owner.org_id, "deal").await;
    let (body, cache) = get(&owner, "/api/v1/analytics/deals/forecast?months=2").await;
    assert_eq!(cache, "miss");
    assert_eq!(
        body,
        json!({
            "pipeline_id": null,
            "months": [
                {"month": month(first), "amounts": amounts("EUR", "100.00", "10.00")},
                {"month": month(next), "amounts": amounts("USD", "200.00", "60.00")}
            ],
            "overdue": amounts("EUR", "70.00", "7.00"),
            "unscheduled": amounts("EUR", "50.00", "30.00")
        })
    );
    let (six, _) = get(&owner, "/api/v1/analytics/deals/forecast").await;
    let months: Vec<&str> = six["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["month"].as_str().unwrap())
        .collect();
    assert_eq!(months.len(), 6, "six months by default");
    assert_eq!(months[5], month(first + Months::new(5)));
    assert_eq!(
        six["months"][2]["amounts"],
        json!([]),
        "an empty month is listed"
    );
    assert_eq!(
        get(&owner, "/api/v1/analytics/deals/forecast").await.1,
        "hit"
    );

    // Through the API: a date cleared, a probability changed — never hidden.
    owner
        .patch(
            &format!("/api/v1/deals/{this_month}"),
            json!({"expected_close_date": null}),
        )
        .await
        .ok(200);
    let (after, cache) = get(&owner, "/api/v1/analytics/deals/forecast?months=2").await;
    assert_eq!(cache, "miss");
    assert_eq!(after["months"][0]["amounts"], json!([]));
    assert_eq!(
        after["unscheduled"],
        amounts("EUR", "150.00", "40.00"),
        "50 × 60 % + 100 × 10 %"
    );
    let sales = sales_pipeline(&owner).await;
    owner
        .patch(
            &format!("/api/v1/pipelines/{sales}/stages/qualification"),
            json!({"probability": 50}),
        )
        .await
        .ok(200);
    let (after, cache) = get(
        &owner,
        &format!("/api/v1/analytics/deals/forecast?months=2&pipeline_id={sales}"),
    )
    .await;
    assert_eq!(cache, "miss");
    assert_eq!(after["pipeline_id"], json!(sales));
    assert_eq!(after["unscheduled"], amounts("EUR", "150.00", "80.00"));
    assert_eq!(after["overdue"], amounts("EUR", "70.00", "35.00"));

    assert_bad_queries(
        &owner,
        "/api/v1/analytics/deals/forecast",
        "months=0 months=25 months=x pipeline_id=1 days=3",
    )
    .await;
    let res = owner
        .get("/api/v1/analytics/deals/forecast?months=25")
        .await;
    assert_eq!(res.field(400, "invalid_query_parameter"), "months");
    let other = app.user("other").await;
    let theirs = sales_pipeline(&other).await;
    owner
        .get(&format!(
            "/api/v1/analytics/deals/forecast?pipeline_id={theirs}"
        ))
        .await
        .problem(404, "pipeline_not_found");
}
