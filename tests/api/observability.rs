//! Observability: X-Request-Id on every answer, GET /metrics, and one
//! structured log line per request.

use std::{
    io,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use axum::http::Method;
use minicrm::ops::config::Config;
use serde_json::{json, Value};
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

use crate::helpers::{locked_deal, TestApp, TestResponse};

/// The response's X-Request-Id.
#[track_caller]
fn request_id(res: &TestResponse) -> String {
    res.headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on a {} answer", res.status))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a generated request id: a UUID v4.
#[track_caller]
fn assert_generated(id: &str) {
    let uuid: Uuid = id
        .parse()
        .unwrap_or_else(|e| panic!("{id:?} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 4, "{id}");
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let (app, ann) = TestApp::with_user("ann").await;
    let answers = [
        app.get("/healthz").send().await,
        ann.no_org().get("/api/v1/users/me").await,
        app.get("/api/v1/users/me").send().await,
        app.get("/api/v1/nope").send().await,
        app.req(axum::http::Method::PUT, "/api/v1/users/me")
            .send()
            .await,
        app.post("/api/v1/auth/login")
            .raw("application/json", format!("\"{}\"", "a".repeat(100_000)))
            .send()
            .await,
        app.get("/metrics").send().await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 401, 404, 405, 413, 200]);
    let mut ids: Vec<String> = answers.iter().map(request_id).collect();
    for id in &ids {
        assert_generated(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), answers.len(), "request ids repeat: {ids:?}");
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_echoed_and_any_other_replaced() {
    let app = TestApp::spawn().await;
    let longest = "a".repeat(64);
    let too_long = "a".repeat(65);
    for sane in [
        "abc-123_X.y",
        "7f9c2d4e-1b3a-4c5d-8e6f-0a1b2c3d4e5f",
        longest.as_str(),
        "0",
    ] {
        let with_id = |path: &str| app.get(path).header("X-Request-Id", sane);
        assert_eq!(request_id(&with_id("/healthz").await), sane);
        // On a problem too.
        let res = with_id("/api/v1/users/me").await;
        res.problem(401, "unauthenticated");
        assert_eq!(request_id(&res), sane);
    }
    for insane in [
        too_long.as_str(),
        "",
        "has space",
        "quote\"d",
        "semi;colon",
        "slash/../etc",
        "<script>alert(1)</script>",
        "new\tline",
    ] {
        let res = app.get("/api/v1/nope").header("X-Request-Id", insane).await;
        res.problem(404, "route_not_found");
        let id = request_id(&res);
        assert_ne!(id, insane);
        assert_generated(&id);
    }
}

#[tokio::test]
async fn timeout_answers_carry_a_request_id() {
    let (app, ann) = TestApp::with_user("ann").await;
    // A second server on the same database, with short timeouts (setting up
    // through it would not fit in those).
    let impatient = |tune: fn(&mut Config)| {
        let mut config = Config::for_database(app.db_url.clone());
        tune(&mut config);
        TestApp::with_config(config)
    };
    let patch = |app: &TestApp, deal: Uuid| {
        let path = format!("/api/v1/deals/{deal}");
        ann.via(app)
            .req(Method::PATCH, &path)
            .json(json!({"status": "in_progress"}))
    };

    // The request timeout (the whole request took too long).
    let fast = impatient(|c| c.request_timeout = Duration::from_millis(300));
    let (deal, lock) = locked_deal(&app, &ann).await;
    let res = patch(&fast, deal)
        .header("X-Request-Id", "slow-1")
        .send()
        .await;
    res.problem(503, "request_timeout");
    assert_eq!(request_id(&res), "slow-1");
    lock.batch_execute("ROLLBACK").await.unwrap();

    // The statement timeout (the database gave up): also a database error.
    let fast = impatient(|c| c.pool.statement_timeout = Duration::from_millis(300));
    let (deal, lock) = locked_deal(&app, &ann).await;
    let res = patch(&fast, deal).send().await;
    res.problem(503, "statement_timeout");
    assert_generated(&request_id(&res));
    lock.batch_execute("ROLLBACK").await.unwrap();
    let metrics = scrape(&fast).await;
    assert_eq!(
        sample(&metrics, "minicrm_db_errors_total{kind=\"timeout\"}"),
        1
    );
    assert_eq!(
        sample(
            &metrics,
            "minicrm_http_requests_total{method=\"PATCH\",route=\"/api/v1/deals/{id}\",status=\"503\"}"
        ),
        1
    );
}

/// GET /metrics; asserts the Prometheus text format and returns the text.
async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics").send().await;
    res.ok(200);
    let content_type = res.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    res.body.as_str().expect("a text body").to_owned()
}

/// The value of the sample named exactly `series` (name and labels), or 0
/// when the series is absent.
#[track_caller]
fn sample(metrics: &str, series: &str) -> u64 {
    let values: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    match values[..] {
        [] => 0,
        [v] => v
            .parse()
            .unwrap_or_else(|e| panic!("{series} {v}: {e}\n{metrics}")),
        _ => panic!("{series} appears more than once:\n{metrics}"),
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let (app, ann) = TestApp::with_registered("ann").await;
    for _ in 0..2 {
        ann.no_org().get("/api/v1/users/me").await.ok(200);
    }
    app.get("/api/v1/users/me")
        .send()
        .await
        .problem(401, "unauthenticated");
    let raw = format!("/api/v1/nope/{}", Uuid::new_v4());
    app.get(&raw).send().await.problem(404, "route_not_found");
    ann.get("/api/v1/deals/not-a-uuid")
        .await
        .problem(400, "invalid_path_parameter");
    // A unique violation in the database: a database error of kind constraint.
    app.post_json("/api/v1/auth/register", json!({"email": "ANN@example.com", "password": "correct horse", "name": "Ann", "organization_name": "Again"}))
        .await
        .problem(409, "users_email_taken");
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    ann.get(&format!("/api/v1/deals/{deal}")).await.ok(200);

    let metrics = scrape(&app).await;
    let requests = |route: &str, method: &str, status: u16| {
        sample(
            &metrics,
            &format!(
                "minicrm_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/api/v1/auth/register", "POST", 201), 1);
    assert_eq!(requests("/api/v1/auth/register", "POST", 409), 1);
    assert_eq!(requests("/api/v1/users/me", "GET", 200), 2);
    assert_eq!(requests("/api/v1/users/me", "GET", 401), 1);
    assert_eq!(requests("unmatched", "GET", 404), 1);
    // Routes are the matched templates, never the raw paths.
    assert_eq!(requests("/api/v1/deals/{id}", "GET", 400), 1);
    assert_eq!(requests("/api/v1/deals/{id}", "GET", 200), 1);
    assert_eq!(requests("/api/v1/contacts", "POST", 201), 1);
    assert!(!metrics.contains("not-a-uuid") && !metrics.contains(&raw));
    assert!(!metrics.contains(&deal.to_string()));
    // This scrape is counted once it is answered.
    assert_eq!(requests("/metrics", "GET", 200), 0);
    assert_eq!(
        sample(
            &scrape(&app).await,
            "minicrm_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
        ),
        1
    );

    // The duration histogram: cumulative buckets, +Inf equal to the count.
    let me = "route=\"/api/v1/users/me\"";
    assert_eq!(
        sample(
            &metrics,
            &format!("minicrm_http_request_duration_seconds_count{{{me}}}")
        ),
        3
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("minicrm_http_request_duration_seconds_bucket{{{me},le=\"+Inf\"}}")
        ),
        3
    );
    let buckets: Vec<u64> = metrics
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "minicrm_http_request_duration_seconds_bucket{{{me},"
            ))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 13, "{metrics}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(metrics.lines().any(|l| l.starts_with(&format!(
        "minicrm_http_request_duration_seconds_sum{{{me}}} "
    ))));
    assert!(metrics.contains("# TYPE minicrm_http_request_duration_seconds histogram"));
    assert!(metrics.contains("# TYPE minicrm_http_requests_total counter"));

    // Pool gauges (the test pool holds at most 4 connections).
    for gauge in [
        "minicrm_db_pool_size",
        "minicrm_db_pool_available",
        "minicrm_db_pool_waiting",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {gauge} gauge\n")),
            "{gauge} missing:\n{metrics}"
        );
    }
    let size = sample(&metrics, "minicrm_db_pool_size");
    assert!((1..=4).contains(&size), "pool size {size}");
    assert!(sample(&metrics, "minicrm_db_pool_available") <= size);
    assert_eq!(sample(&metrics, "minicrm_db_pool_waiting"), 0);
    assert_eq!(sample(&metrics, "minicrm_db_pool_max_size"), 4);

    // Database errors by kind: every kind is present, the unique violation counted.
    assert_eq!(
        sample(&metrics, "minicrm_db_errors_total{kind=\"constraint\"}"),
        1
    );
    for kind in ["unavailable", "timeout", "conflict", "internal"] {
        assert!(
            metrics.contains(&format!("minicrm_db_errors_total{{kind=\"{kind}\"}} 0\n")),
            "{kind} missing:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn metrics_are_documented_in_openapi() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json").send().await.ok(200).clone();
    let op = &doc["paths"]["/metrics"]["get"];
    assert!(op.is_object(), "GET /metrics is not documented");
    assert!(
        op["responses"]["200"]["content"]["text/plain"].is_object(),
        "{op}"
    );
}

// ---- log capture ----

/// Everything the tracing subscriber writes, as JSON lines.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Captures every event at every level, as the production JSON format
    /// writes it, on this thread until the guard drops. `#[tokio::test]` runs
    /// the app's tasks on the test's thread, so the whole request is seen.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        // tracing-core computes a new callsite's interest from the calling
        // thread's default alone while a single dispatcher is registered, so
        // a callsite first hit by another test's thread would be cached as
        // "never" and this capture would miss it. A second, permanent
        // dispatcher makes it ask every registered dispatcher instead.
        static KEEPER: LazyLock<Dispatch> =
            LazyLock::new(|| Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        LazyLock::force(&KEEPER);
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[tokio::test]
async fn each_request_logs_one_info_line_with_route_status_latency_and_request_id() {
    let app = TestApp::spawn().await;
    let (logs, _guard) = Logs::capture();
    let ann = app.register("ann").await;
    let contact = ann.contact("Client").await;
    let res = ann
        .req(Method::GET, &format!("/api/v1/contacts/{contact}"))
        .header("X-Request-Id", "trace-me-42")
        .await;
    res.ok(200);
    app.get("/api/v1/nope")
        .header("X-Request-Id", "lost-1")
        .send()
        .await
        .problem(404, "route_not_found");

    let finished: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["fields"]["message"] == "request finished")
        .collect();
    assert_eq!(finished.len(), 4, "{}", logs.text());
    for line in &finished {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["span"]["name"], "request", "{line}");
        assert!(line["fields"]["status"].is_u64(), "{line}");
        assert!(
            line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0,
            "{line}"
        );
        assert!(line["span"]["request_id"].is_string(), "{line}");
    }
    let routes: Vec<(&Value, &Value, &Value)> = finished
        .iter()
        .map(|l| {
            (
                &l["span"]["method"],
                &l["span"]["route"],
                &l["fields"]["status"],
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (&json!("POST"), &json!("/api/v1/auth/register"), &json!(201)),
            (&json!("POST"), &json!("/api/v1/contacts"), &json!(201)),
            (&json!("GET"), &json!("/api/v1/contacts/{id}"), &json!(200)),
            (&json!("GET"), &json!("unmatched"), &json!(404)),
        ]
    );
    assert_eq!(finished[2]["span"]["request_id"], "trace-me-42");
    assert_eq!(finished[3]["span"]["request_id"], "lost-1");
    // Every line written inside a request carries its id, in the outermost span.
    for line in logs.lines() {
        if let Some(spans) = line["spans"].as_array().filter(|s| !s.is_empty()) {
            assert_eq!(spans[0]["name"], "request", "{line}");
            assert!(spans[0]["request_id"].is_string(), "{line}");
        }
    }
    // The raw path is not logged, only the route.
    assert!(
        !logs.text().contains(&contact.to_string()),
        "{}",
        logs.text()
    );
}
