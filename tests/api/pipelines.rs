//! /pipelines and their stages (SPEC §9) over HTTP: every endpoint and
//! error, the role matrix of pipeline management, deals in pipelines (R5 by
//! position, pipeline_changed, the list filters), the funnel and summary of
//! one pipeline, and reorders racing deal moves.

use std::{sync::Arc, time::Duration};

use axum::http::header;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::helpers::{id_of, notices, notified, TestApp, TestUser, SALES};

const PIPELINES: &str = "/api/v1/pipelines";
const PIPELINE_FIELDS: [&str; 7] = [
    "created_at",
    "id",
    "name",
    "position",
    "stages",
    "updated_at",
    "version",
];

/// The pipeline's stages as `key:position:probability`, in order.
fn stages(pipeline: &Value) -> Vec<String> {
    pipeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}",
                s["key"].as_str().unwrap(),
                s["position"],
                s["probability"]
            )
        })
        .collect()
}

fn renewals() -> Value {
    json!({"name": "Renewals", "stages": [
        {"key": "due", "name": "Due", "probability": 40},
        {"key": "quoted", "name": "Quoted", "probability": 70},
        {"key": "renewed", "name": "Renewed", "probability": 100}]})
}

async fn sales(user: &TestUser) -> Uuid {
    id_of(&user.read(PIPELINES).await["items"][0])
}

#[tokio::test]
async fn a_new_organization_has_sales_and_pipelines_are_managed_over_http() {
    let (app, owner) = TestApp::with_registered("owner").await;
    // Registration made "Sales"; POST /organizations does too.
    let list = owner.read(PIPELINES).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let sales = &list["items"][0];
    let mut fields: Vec<&str> = sales
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, PIPELINE_FIELDS);
    assert_eq!(
        (&sales["name"], &sales["position"]),
        (&json!("Sales"), &json!(1))
    );
    assert_eq!(
        stages(sales),
        [
            "qualification:1:10",
            "proposal:2:30",
            "negotiation:3:60",
            "closed:4:100"
        ]
    );
    assert_eq!(sales["stages"][0]["name"], "Qualification");
    let second = owner
        .no_org()
        .create("/api/v1/organizations", json!({"name": "Second"}))
        .await;
    let in_second = owner.in_org(id_of(&second)).read(PIPELINES).await;
    assert_eq!(in_second["items"][0]["name"], "Sales");
    assert_ne!(in_second["items"][0]["id"], sales["id"]);

    // Create: 201, Location, last position, stages in the order given.
    let res = owner.post(PIPELINES, renewals()).await;
    let created = res.ok(201).clone();
    let id = id_of(&created);
    let path = format!("{PIPELINES}/{id}");
    assert_eq!(res.headers[header::LOCATION], path.as_str());
    assert_eq!(created["position"], 2);
    assert_eq!(
        stages(&created),
        ["due:1:40", "quoted:2:70", "renewed:3:100"]
    );
    assert_eq!(owner.read(&path).await, created);
    let list = owner.read(PIPELINES).await;
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["Sales", "Renewals"]);

    // PATCH: rename and move first; the other shifts.
    let moved = owner
        .patch(&path, json!({"name": "Renewals 2027", "position": 1}))
        .await
        .ok(200)
        .clone();
    assert_eq!(
        (&moved["name"], &moved["position"]),
        (&json!("Renewals 2027"), &json!(1))
    );
    assert_eq!(owner.read(PIPELINES).await["items"][1]["position"], 2);
    let same = owner
        .patch(&path, json!({"name": null}))
        .await
        .ok(200)
        .clone();
    assert_eq!(same["name"], "Renewals 2027", "null means not given");

    // Stages: insert at a position, move, change, delete; positions stay 1..n.
    let stages_path = format!("{path}/stages");
    let res = owner
        .post(
            &stages_path,
            json!({"key": "call", "name": "Call", "probability": 20, "position": 1}),
        )
        .await;
    let after = res.ok(201).clone();
    assert_eq!(
        res.headers[header::LOCATION],
        path.as_str(),
        "a stage's writes answer with its pipeline"
    );
    assert_eq!(
        stages(&after),
        ["call:1:20", "due:2:40", "quoted:3:70", "renewed:4:100"]
    );
    let appended = owner
        .post(
            &stages_path,
            json!({"key": "lost_cause", "name": "Lost cause", "probability": 0}),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(stages(&appended).last().unwrap(), "lost_cause:5:0");
    let patched = owner
        .patch(
            &format!("{stages_path}/call"),
            json!({"position": 4, "probability": 25, "name": "First call"}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(
        stages(&patched),
        [
            "due:1:40",
            "quoted:2:70",
            "renewed:3:100",
            "call:4:25",
            "lost_cause:5:0"
        ]
    );
    assert_eq!(patched["stages"][3]["name"], "First call");
    owner
        .delete(&format!("{stages_path}/quoted"))
        .await
        .no_content();
    let now = owner.read(&path).await;
    assert_eq!(
        stages(&now),
        ["due:1:40", "renewed:2:100", "call:3:25", "lost_cause:4:0"]
    );
    assert_ne!(
        now["updated_at"], created["updated_at"],
        "stage changes move the pipeline's updated_at"
    );

    // Delete the pipeline: 204, then 404; Sales is first again.
    owner.delete(&path).await.no_content();
    owner.get(&path).await.problem(404, "pipeline_not_found");
    owner
        .patch(&path, json!({"name": "x"}))
        .await
        .problem(404, "pipeline_not_found");
    owner.delete(&path).await.problem(404, "pipeline_not_found");
    owner
        .post(
            &stages_path,
            json!({"key": "x", "name": "X", "probability": 1}),
        )
        .await
        .problem(404, "pipeline_not_found");
    let left = owner.read(PIPELINES).await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["position"], 1);
    drop(app);
}

#[tokio::test]
async fn bad_pipeline_input_is_400_with_the_field_and_conflicts_are_409() {
    let (_, owner) = TestApp::with_user("owner").await;
    let sales = sales(&owner).await;
    let created = owner.create(PIPELINES, renewals()).await;
    let renewals_path = format!("{PIPELINES}/{}", id_of(&created));
    let stage = |s: &str| {
        json!({"key": "ok", "name": "Ok", "probability": 10})
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .chain(
                serde_json::from_str::<Value>(s)
                    .unwrap()
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .collect::<serde_json::Map<_, _>>()
    };
    let new = |stages: Value| json!({"name": "New", "stages": stages});
    let cases: Vec<(String, Value, u16, &str, &str)> = vec![
        (
            PIPELINES.into(),
            new(json!([])),
            400,
            "stages_required",
            "stages",
        ),
        (
            PIPELINES.into(),
            new(json!([
                stage(r#"{"key": "a"}"#),
                stage(r#"{"key": "b"}"#),
                stage(r#"{"key": "a"}"#)
            ])),
            400,
            "stage_key_duplicate",
            "stages[2].key",
        ),
        (
            PIPELINES.into(),
            new(json!([stage("{}"), stage(r#"{"key": "Bad key"}"#)])),
            400,
            "pipeline_stages_key_invalid",
            "stages[1].key",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"key": "9lives"}"#)])),
            400,
            "pipeline_stages_key_invalid",
            "stages[0].key",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(&format!(
                r#"{{"key": "a{}"}}"#,
                "b".repeat(40)
            ))])),
            400,
            "pipeline_stages_key_invalid",
            "stages[0].key",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"probability": 101}"#)])),
            400,
            "pipeline_stages_probability_invalid",
            "stages[0].probability",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"probability": -1}"#)])),
            400,
            "pipeline_stages_probability_invalid",
            "stages[0].probability",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"name": "\t"}"#)])),
            400,
            "pipeline_stages_name_invalid",
            "stages[0].name",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"probability": 10.5}"#)])),
            400,
            "validation_failed",
            "stages[0].probability",
        ),
        (
            PIPELINES.into(),
            new(json!([stage(r#"{"colour": "red"}"#)])),
            400,
            "validation_failed",
            "stages[0].colour",
        ),
        (
            PIPELINES.into(),
            json!({"name": "New"}),
            400,
            "validation_failed",
            "body",
        ),
        (
            PIPELINES.into(),
            json!({"name": " ", "stages": [stage("{}")]}),
            400,
            "pipelines_name_invalid",
            "name",
        ),
        (
            PIPELINES.into(),
            json!({"name": "sALES", "stages": [stage("{}")]}),
            409,
            "pipelines_name_taken",
            "name",
        ),
        (
            renewals_path.clone(),
            json!({"position": 3}),
            400,
            "position_out_of_range",
            "position",
        ),
        (
            renewals_path.clone(),
            json!({"position": 0}),
            400,
            "position_out_of_range",
            "position",
        ),
        (
            renewals_path.clone(),
            json!({"name": "Sales"}),
            409,
            "pipelines_name_taken",
            "name",
        ),
        (
            format!("{renewals_path}/stages"),
            stage(r#"{"position": 5}"#).into(),
            400,
            "position_out_of_range",
            "position",
        ),
        (
            format!("{renewals_path}/stages"),
            stage(r#"{"key": "quoted"}"#).into(),
            409,
            "pipeline_stages_key_taken",
            "key",
        ),
        (
            format!("{renewals_path}/stages"),
            stage(r#"{"key": "has-dash"}"#).into(),
            400,
            "pipeline_stages_key_invalid",
            "key",
        ),
        (
            format!("{renewals_path}/stages"),
            stage(r#"{"probability": 1000}"#).into(),
            400,
            "pipeline_stages_probability_invalid",
            "probability",
        ),
        (
            format!("{renewals_path}/stages/due"),
            json!({"position": 4}),
            400,
            "position_out_of_range",
            "position",
        ),
        (
            format!("{renewals_path}/stages/due"),
            json!({"probability": 101}),
            400,
            "pipeline_stages_probability_invalid",
            "probability",
        ),
        (
            format!("{renewals_path}/stages/due"),
            json!({"key": "overdue"}),
            400,
            "validation_failed",
            "key",
        ),
    ];
    let before = owner.read(PIPELINES).await;
    for (path, body, status, code, field) in cases {
        let res = if path == PIPELINES || path.ends_with("/stages") {
            owner.post(&path, body.clone()).await
        } else {
            owner.patch(&path, body.clone()).await
        };
        assert_eq!(
            (
                res.status.as_u16(),
                res.body["code"].as_str(),
                res.body["errors"][0]["field"].as_str()
            ),
            (status, Some(code), Some(field)),
            "{path} {body}: {}",
            res.body
        );
        res.problem(status, code);
    }
    assert_eq!(
        owner.read(PIPELINES).await,
        before,
        "no bad request changed anything"
    );

    // The 409s of deletes, and 404 for unknown stages.
    let contact = owner.contact("Client").await;
    owner.deal(contact, "In Sales", "10").await;
    let sales_path = format!("{PIPELINES}/{sales}");
    owner
        .delete(&format!("{sales_path}/stages/qualification"))
        .await
        .problem(409, "stage_has_deals");
    owner
        .delete(&sales_path)
        .await
        .problem(409, "pipeline_has_deals");
    owner
        .delete(&format!("{sales_path}/stages/nope"))
        .await
        .problem(404, "stage_not_found");
    owner
        .patch(&format!("{sales_path}/stages/nope"), json!({"name": "x"}))
        .await
        .problem(404, "stage_not_found");
    let solo = owner
        .create(
            PIPELINES,
            json!({"name": "Solo", "stages": [{"key": "only", "name": "Only", "probability": 50}]}),
        )
        .await;
    let solo_path = format!("{PIPELINES}/{}", id_of(&solo));
    owner
        .delete(&format!("{solo_path}/stages/only"))
        .await
        .problem(409, "last_stage");
    owner.delete(&solo_path).await.no_content();
    owner.delete(&renewals_path).await.no_content();
    owner
        .delete(&sales_path)
        .await
        .problem(409, "last_pipeline");
    // An empty stage of Sales can go; the deal's stage cannot.
    owner
        .delete(&format!("{sales_path}/stages/proposal"))
        .await
        .no_content();
    assert_eq!(
        stages(&owner.read(&sales_path).await),
        ["qualification:1:10", "negotiation:2:60", "closed:3:100"]
    );
}

#[tokio::test]
async fn owners_and_admins_manage_pipelines_everyone_reads_them() {
    let (app, owner, [manager, mia, _]) = TestApp::with_team(SALES).await;
    let admin = app.member_of(&owner, "adam", "admin").await;
    let sales = sales(&owner).await;
    let stages_path = format!("{PIPELINES}/{sales}/stages");
    for (user, may) in [
        (&owner, true),
        (&admin, true),
        (&manager, false),
        (&mia, false),
    ] {
        assert_eq!(
            user.read(PIPELINES).await["items"][0]["id"],
            sales.to_string()
        );
        user.read(&format!("{PIPELINES}/{sales}")).await;
        let name = format!("By {}", user.email);
        let answers = [
            user.post(
                PIPELINES,
                json!({"name": name, "stages": [{"key": "a", "name": "A", "probability": 1}]}),
            )
            .await,
            user.patch(
                &format!("{PIPELINES}/{sales}"),
                json!({"name": format!("Sales {name}")}),
            )
            .await,
            user.post(
                &stages_path,
                json!({"key": "demo", "name": "Demo", "probability": 20, "position": 2}),
            )
            .await,
            user.patch(&format!("{stages_path}/demo"), json!({"probability": 25}))
                .await,
            user.delete(&format!("{stages_path}/demo")).await,
        ];
        for res in answers {
            if may {
                assert!(
                    res.status.is_success(),
                    "{}: {} {}",
                    user.email,
                    res.status,
                    res.body
                );
            } else {
                res.problem(403, "role_forbidden");
            }
        }
        if may {
            // Its own pipeline again, to delete.
            let mine = user.read(PIPELINES).await["items"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            user.delete(&format!("{PIPELINES}/{}", id_of(&mine)))
                .await
                .no_content();
        } else {
            user.delete(&format!("{PIPELINES}/{sales}"))
                .await
                .problem(403, "role_forbidden");
            // The demo stage the owner may add is still refused to them.
            owner
                .post(
                    &stages_path,
                    json!({"key": "demo", "name": "Demo", "probability": 20}),
                )
                .await
                .ok(201);
            user.delete(&format!("{stages_path}/demo"))
                .await
                .problem(403, "role_forbidden");
            user.patch(&format!("{stages_path}/demo"), json!({"position": 1}))
                .await
                .problem(403, "role_forbidden");
            owner
                .delete(&format!("{stages_path}/demo"))
                .await
                .no_content();
        }
    }
    let list = owner.read(PIPELINES).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(stages(&list["items"][0]).len(), 4);
}

#[tokio::test]
async fn deals_live_in_pipelines_r5_goes_by_position_and_moves_are_on_the_timeline() {
    let (app, owner, [manager, mia, max]) = TestApp::with_team(SALES).await;
    let sales = sales(&owner).await;
    let ren = id_of(&owner.create(PIPELINES, renewals()).await);
    let contact = mia.contact("Client").await;

    // Create: default pipeline and stage, or the ones asked for.
    let body = |extra: Value| {
        let mut b =
            json!({"contact_id": contact, "title": "Deal", "amount": "100", "currency": "EUR"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let d = mia.create("/api/v1/deals", body(json!({}))).await;
    assert_eq!(
        (d["pipeline_id"].as_str(), d["stage"].as_str()),
        (Some(sales.to_string().as_str()), Some("qualification"))
    );
    let d = mia
        .create("/api/v1/deals", body(json!({"pipeline_id": ren})))
        .await;
    assert_eq!(
        (d["pipeline_id"].as_str(), d["stage"].as_str()),
        (Some(ren.to_string().as_str()), Some("due"))
    );
    let in_quoted = mia
        .create(
            "/api/v1/deals",
            body(json!({"pipeline_id": ren, "stage": "quoted"})),
        )
        .await;
    assert_eq!(in_quoted["stage"], "quoted");
    let in_proposal = id_of(
        &mia.create("/api/v1/deals", body(json!({"stage": "proposal"})))
            .await,
    );
    assert_eq!(
        mia.post("/api/v1/deals", body(json!({"stage": "quoted"})))
            .await
            .field(400, "stage_not_in_pipeline"),
        "stage"
    );
    assert_eq!(
        mia.post(
            "/api/v1/deals",
            body(json!({"pipeline_id": Uuid::new_v4()}))
        )
        .await
        .field(404, "pipeline_not_found"),
        "pipeline_id"
    );
    let stranger = app.user("stranger").await;
    let foreign = sales_of(&stranger).await;
    mia.post("/api/v1/deals", body(json!({"pipeline_id": foreign})))
        .await
        .problem(404, "pipeline_not_found");

    // R5 within Renewals (due, quoted, renewed), then after a reorder.
    let path = format!("/api/v1/deals/{}", id_of(&in_quoted));
    mia.patch(&path, json!({"stage": "due"}))
        .await
        .field(403, "stage_rollback_forbidden");
    manager
        .patch(&path, json!({"stage": "due"}))
        .await
        .problem(403, "stage_rollback_forbidden");
    assert_eq!(
        mia.patch(&path, json!({"stage": "renewed"})).await.ok(200)["stage"],
        "renewed"
    );
    owner
        .patch(
            &format!("{PIPELINES}/{ren}/stages/renewed"),
            json!({"position": 1}),
        )
        .await
        .ok(200);
    // Now renewed, due, quoted: renewed → quoted is forward, quoted → renewed back.
    assert_eq!(
        mia.patch(&path, json!({"stage": "quoted"})).await.ok(200)["stage"],
        "quoted"
    );
    mia.patch(&path, json!({"stage": "renewed"}))
        .await
        .problem(403, "stage_rollback_forbidden");
    mia.patch(&path, json!({"stage": "due"}))
        .await
        .problem(403, "stage_rollback_forbidden");
    // R5 answers before the hand-off of the deal to someone else, as it did.
    mia.patch(&path, json!({"stage": "due", "owner_id": max.id}))
        .await
        .problem(403, "stage_rollback_forbidden");
    mia.patch(&path, json!({"stage": "quoted", "owner_id": max.id}))
        .await
        .field(403, "role_forbidden");
    mia.patch(&path, json!({"stage": "negotiation"}))
        .await
        .field(400, "stage_not_in_pipeline");

    // Another pipeline: free for whoever may update the deal; the first stage
    // unless a stage is given; one pipeline_changed activity.
    let moved = mia
        .patch(&path, json!({"pipeline_id": sales}))
        .await
        .ok(200)
        .clone();
    assert_eq!(
        (moved["pipeline_id"].as_str(), moved["stage"].as_str()),
        (Some(sales.to_string().as_str()), Some("qualification"))
    );
    let timeline = mia.timeline(id_of(&in_quoted)).await;
    assert_eq!(timeline[0]["type"], "pipeline_changed");
    assert_eq!(
        timeline[0]["payload"],
        json!({"from": {"pipeline_id": ren, "stage": "quoted"}, "to": {"pipeline_id": sales, "stage": "qualification"}})
    );
    assert_eq!(timeline[0]["author_id"], mia.id.to_string());
    assert_eq!(
        timeline[1]["type"], "stage_changed",
        "the pipeline move wrote no stage_changed"
    );
    let back = mia
        .patch(&path, json!({"pipeline_id": ren, "stage": "due"}))
        .await
        .ok(200)
        .clone();
    assert_eq!(back["stage"], "due");
    max.patch(&path, json!({"pipeline_id": sales}))
        .await
        .problem(403, "role_forbidden");
    mia.patch(&path, json!({"pipeline_id": foreign}))
        .await
        .field(404, "pipeline_not_found");
    let created = mia
        .timeline(id_of(&in_quoted))
        .await
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        created["payload"],
        json!({"event": "deal_created", "status": "new", "pipeline_id": ren, "stage": "quoted"})
    );

    // The list: pipeline_id and stage (repeatable) together.
    let total = |q: &str| {
        let mia = mia.clone();
        let q = q.to_owned();
        async move { mia.read(&format!("/api/v1/deals?{q}")).await["total"].clone() }
    };
    assert_eq!(total(&format!("pipeline_id={sales}")).await, 2);
    assert_eq!(total(&format!("pipeline_id={ren}")).await, 2);
    assert_eq!(total("stage=due").await, 2);
    assert_eq!(total("stage=due&stage=proposal").await, 3);
    assert_eq!(
        total(&format!("pipeline_id={ren}&stage=due&stage=quoted")).await,
        2
    );
    assert_eq!(total(&format!("pipeline_id={foreign}")).await, 0);
    mia.get(&format!("/api/v1/deals?pipeline_id={ren}&stage=proposal"))
        .await
        .field(400, "stage_not_in_pipeline");
    let _ = in_proposal;
}

async fn sales_of(user: &TestUser) -> Uuid {
    sales(user).await
}

#[tokio::test]
async fn the_funnel_and_summary_of_one_pipeline_are_cached_per_pipeline() {
    let (app, owner) = TestApp::with_user("owner").await;
    let mut notices = notices(&app).await;
    let sales = sales(&owner).await;
    let ren = id_of(&owner.create(PIPELINES, renewals()).await);
    let contact = owner.contact("Client").await;
    for (pipeline, stage, status, amount) in [
        (sales, "proposal", "in_progress", "10"),
        (ren, "due", "new", "20"),
        (ren, "renewed", "won", "30"),
        (ren, "renewed", "won", "40"),
    ] {
        let d = owner
            .create(
                "/api/v1/deals",
                json!({"contact_id": contact, "title": "D", "amount": amount, "currency": "EUR",
                                            "pipeline_id": pipeline, "stage": stage}),
            )
            .await;
        owner
            .patch(
                &format!("/api/v1/deals/{}", id_of(&d)),
                json!({"status": status}),
            )
            .await
            .ok(200);
    }
    let funnel = |q: String| {
        let owner = owner.clone();
        async move {
            let res = owner
                .get(&format!("/api/v1/analytics/deals/funnel{q}"))
                .await;
            let cache = res.headers["x-cache"].to_str().unwrap().to_owned();
            (res.ok(200).clone(), cache)
        }
    };
    notified(&mut notices, owner.org_id, "deal").await;
    let (default, _) = funnel(String::new()).await;
    assert_eq!(
        default["pipeline_id"],
        sales.to_string(),
        "the first pipeline by default"
    );
    let (f, cache) = funnel(format!("?pipeline_id={ren}")).await;
    assert_eq!(cache, "miss", "another pipeline is another cache entry");
    let brief: Vec<(String, i64, Value)> = f["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["count"].as_i64().unwrap(),
                s["conversion_pct"].clone(),
            )
        })
        .collect();
    // reached: due 3, quoted 2, renewed 2.
    assert_eq!(
        brief,
        [
            ("due".into(), 1, Value::Null),
            ("quoted".into(), 0, json!(66.67)),
            ("renewed".into(), 2, json!(100.0))
        ]
    );
    assert_eq!(funnel(format!("?pipeline_id={ren}")).await.1, "hit");
    // A reorder changes the funnel at once (the write drops the cache).
    owner
        .patch(
            &format!("{PIPELINES}/{ren}/stages/renewed"),
            json!({"position": 1}),
        )
        .await
        .ok(200);
    let (f, cache) = funnel(format!("?pipeline_id={ren}")).await;
    assert_eq!(cache, "miss");
    assert_eq!(f["stages"][0]["stage"], "renewed");
    assert_eq!(f["stages"][0]["count"], 2);
    owner
        .get(&format!(
            "/api/v1/analytics/deals/funnel?pipeline_id={}",
            Uuid::new_v4()
        ))
        .await
        .problem(404, "pipeline_not_found");
    owner
        .get("/api/v1/analytics/deals/funnel?pipeline_id=sales")
        .await
        .problem(400, "invalid_query_parameter");

    let summary = owner
        .read(&format!(
            "/api/v1/analytics/deals/summary?pipeline_id={ren}"
        ))
        .await;
    assert_eq!(summary["pipeline_id"], ren.to_string());
    assert_eq!(summary["new_deals"], 3);
    assert_eq!(
        summary["by_status"][2],
        json!({"status": "won", "count": 2, "amounts": [{"currency": "EUR", "total": "70.00"}]})
    );
    assert_eq!(
        summary["won_average"],
        json!([{"currency": "EUR", "average": "35.00"}])
    );
    let all = owner.read("/api/v1/analytics/deals/summary").await;
    assert_eq!(
        (all["pipeline_id"].clone(), all["new_deals"].clone()),
        (Value::Null, json!(4))
    );
    let of_sales = owner
        .read(&format!(
            "/api/v1/analytics/deals/summary?pipeline_id={sales}&days=7"
        ))
        .await;
    assert_eq!(
        (of_sales["days"].clone(), of_sales["new_deals"].clone()),
        (json!(7), json!(1))
    );
    owner
        .get(&format!(
            "/api/v1/analytics/deals/summary?pipeline_id={}",
            Uuid::new_v4()
        ))
        .await
        .problem(404, "pipeline_not_found");
}

/// 20 requests at once: an admin reorders a pipeline's stages, adds and
/// removes an empty one, while members move deals between its stages and
/// to and from another pipeline. Whatever the interleaving: no 5xx, the
/// positions of every pipeline are 1..n, and every deal is in a stage of its
/// own pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reorders_while_deals_move_keep_positions_and_deals_consistent() {
    let app = TestApp::spawn_with(|c| {
        c.pool.wait_timeout = Duration::from_secs(60);
        c.pool.statement_timeout = Duration::from_secs(60);
        c.request_timeout = Duration::from_secs(120);
    })
    .await;
    let owner = app.user("owner").await;
    let admin = app.member_of(&owner, "adam", "admin").await;
    let movers = app
        .members(&owner, [("mia", "member"), ("max", "member")])
        .await;
    let sales = sales(&owner).await;
    let ren = id_of(&owner.create(PIPELINES, renewals()).await);
    let mut deals = Vec::new();
    for (i, mover) in movers.iter().enumerate() {
        let contact = mover.contact("Client").await;
        for j in 0..3 {
            let d = mover
                .create(
                    "/api/v1/deals",
                    json!({"contact_id": contact, "title": format!("D{i}{j}"), "amount": "10",
                                                "currency": "EUR", "pipeline_id": ren}),
                )
                .await;
            deals.push((mover.clone(), id_of(&d)));
        }
    }
    const N: usize = 20;
    const KEYS: [&str; 3] = ["due", "quoted", "renewed"];
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let barrier = barrier.clone();
        let req = match i % 4 {
            // Reorders.
            0 => admin.patch(
                &format!("{PIPELINES}/{ren}/stages/{}", KEYS[i % 3]),
                json!({"position": 1 + (i / 4) % 3}),
            ),
            // An empty stage added or removed.
            1 if i % 8 == 1 => admin.post(
                &format!("{PIPELINES}/{ren}/stages"),
                json!({"key": format!("extra{i}"), "name": "Extra", "probability": 5, "position": 1 + i % 3}),
            ),
            1 => admin.delete(&format!("{PIPELINES}/{ren}/stages/extra{}", i - 4)),
            // Stage moves inside Renewals (forward or refused as backwards).
            2 => {
                let (mover, deal) = &deals[i % deals.len()];
                mover.patch(&format!("/api/v1/deals/{deal}"), json!({"stage": KEYS[(i / 2) % 3]}))
            }
            // Moves between the pipelines.
            _ => {
                let (mover, deal) = &deals[(i + 1) % deals.len()];
                let to = if i % 8 == 3 { sales } else { ren };
                mover.patch(&format!("/api/v1/deals/{deal}"), json!({"pipeline_id": to}))
            }
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            req.await
        }));
    }
    for task in tasks {
        let res = task.await.unwrap();
        let code = res.body["code"].as_str().unwrap_or("");
        assert!(
            res.status.is_success()
                || matches!(
                    (res.status.as_u16(), code),
                    (403, "stage_rollback_forbidden")
                        | (404, "stage_not_found")
                        | (409, "stage_has_deals")
                        | (400, "stage_not_in_pipeline")
                ),
            "{} {}",
            res.status,
            res.body
        );
    }
    let positions: Vec<String> = app
        .column(
            "SELECT p.name || ': ' || string_agg(s.position::text, ',' ORDER BY s.position)
               FROM crm.pipelines p JOIN crm.pipeline_stages s ON s.pipeline_id = p.id
              WHERE p.organization_id = $1 GROUP BY p.name
             HAVING min(s.position) <> 1 OR max(s.position) <> count(*) OR count(DISTINCT s.position) <> count(*)",
            &[&owner.org_id],
        )
        .await;
    assert!(positions.is_empty(), "positions not 1..n: {positions:?}");
    let misplaced: i64 = app
        .value(
            "SELECT count(*) FROM crm.deals d WHERE d.organization_id = $1
                AND NOT EXISTS (SELECT 1 FROM crm.pipeline_stages s WHERE s.organization_id = d.organization_id
                                   AND s.pipeline_id = d.pipeline_id AND s.key = d.stage)",
            &[&owner.org_id],
        )
        .await;
    assert_eq!(misplaced, 0, "a deal is in a stage its pipeline lacks");
    // Every move left exactly one timeline row (pipeline_changed or stage_changed).
    let moves: i64 = app
        .value(
            "SELECT count(*) FROM crm.activities WHERE organization_id = $1 AND type IN ('pipeline_changed', 'stage_changed')",
            &[&owner.org_id],
        )
        .await;
    assert!(moves > 0);
}
