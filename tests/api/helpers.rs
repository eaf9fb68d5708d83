#![allow(dead_code)] // each test uses a different part of the toolkit
use std::sync::Arc;

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use minicrm::{ops::config::Config, state::App};
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

pub struct TestApp {
    pub router: Router,
    pub state: Arc<App>,
    pub db_url: String,
}

pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub org_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// Asserts an RFC 9457 problem with this status and code; returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status.as_u16(), self.body["code"].as_str()),
            (status, Some(code)),
            "unexpected answer: {}",
            self.body
        );
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        assert_eq!(self.body["type"], format!("/problems/{code}"));
        &self.body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        &self.body
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: run the tests with scripts/test")
}

/// A connection as the superuser to any database of the test cluster.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test cluster");
    tokio::spawn(connection);
    client
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A fresh database and an app whose configuration `tune` adjusts.
    pub async fn spawn_with(tune: impl FnOnce(&mut Config)) -> Self {
        let admin = admin_url();
        let template =
            std::env::var("TEST_TEMPLATE_DB").unwrap_or_else(|_| "minicrm_template".into());
        let name = format!("t_{}", Uuid::new_v4().simple());
        connect(&format!("{admin}/postgres"))
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("cloning the template database");
        let mut config = Config::for_database(format!("{admin}/{name}"));
        tune(&mut config);
        Self::with_config(config)
    }

    pub fn with_config(config: Config) -> Self {
        let db_url = config.database_url.clone().expect("a database url");
        let secret = config.jwt_secret.clone().expect("a secret");
        let state = App::new(config, &db_url, &secret).expect("building the app");
        TestApp {
            router: minicrm::app(state.clone()),
            state,
            db_url,
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            builder: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }
    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }
    pub fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }
    pub fn patch(&self, path: &str) -> Req<'_> {
        self.req(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> Req<'_> {
        self.req(Method::DELETE, path)
    }

    /// A superuser connection to this test's database (for setup and checks).
    pub async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    /// Registers `<name>@example.com` with its own organization.
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let res = self
            .post("/api/v1/auth/register")
            .json(json!({"email": email, "password": "correct horse", "name": name, "organization_name": format!("{name} Inc")}))
            .send()
            .await;
        let body = res.ok(201);
        TestUser {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            email,
            org_id: body["organization"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Registers a user and adds them to `org` (as `owner`) with `role`.
    pub async fn member_of(&self, owner: &TestUser, name: &str, role: &str) -> TestUser {
        let user = self.register(name).await;
        self.post(&format!("/api/v1/organizations/{}/members", owner.org_id))
            .token(&owner.access_token)
            .json(json!({"email": user.email, "role": role}))
            .send()
            .await
            .ok(201);
        user
    }
}

pub struct Req<'a> {
    app: &'a TestApp,
    builder: axum::http::request::Builder,
    body: Body,
}

impl Req<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.builder = self
            .builder
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        self
    }
    pub fn org(mut self, org: Uuid) -> Self {
        self.builder = self.builder.header("X-Organization-Id", org.to_string());
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }
    pub fn json(mut self, value: Value) -> Self {
        self.builder = self
            .builder
            .header(header::CONTENT_TYPE, "application/json");
        self.body = Body::from(value.to_string());
        self
    }
    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.builder = self.builder.header(header::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }
    pub async fn send(self) -> TestResponse {
        self.send_owned().await
    }

    /// The request as a `'static` future, for `tokio::spawn`.
    pub fn send_owned(self) -> impl std::future::Future<Output = TestResponse> + Send + 'static {
        let router = self.app.router.clone();
        let request = self.builder.body(self.body).unwrap();
        async move { read_response(router.oneshot(request).await.unwrap()).await }
    }
}

async fn read_response(response: axum::response::Response) -> TestResponse {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    TestResponse {
        status,
        headers,
        body,
    }
}

// ---- pipeline helpers (contacts, deals, tasks, activities) ----

/// The `id` field of a record, as a UUID.
#[track_caller]
pub fn id_of(record: &Value) -> Uuid {
    record["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {record}"))
        .parse()
        .unwrap()
}

/// Asserts that a record has exactly these fields.
#[track_caller]
pub fn assert_fields(record: &Value, fields: &[&str]) {
    let mut got: Vec<&str> = record
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {record}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = fields.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "fields of {record}");
}

/// Asserts an RFC 3339 UTC timestamp.
#[track_caller]
pub fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "not UTC: {text}");
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
}

/// The items of a list envelope, after checking its page fields.
#[track_caller]
pub fn page_items(body: &Value, page: i64, page_size: i64, total: i64) -> Vec<Value> {
    assert_fields(
        body,
        &["items", "page", "page_size", "total", "total_exact"],
    );
    assert_eq!(
        (
            &body["page"],
            &body["page_size"],
            &body["total"],
            &body["total_exact"]
        ),
        (&json!(page), &json!(page_size), &json!(total), &json!(true)),
        "envelope of {body}"
    );
    body["items"].as_array().unwrap().clone()
}

/// The ids of a list's items, in order.
pub fn ids(items: &[Value]) -> Vec<Uuid> {
    items.iter().map(id_of).collect()
}

/// Today's date in UTC, offset by `days`.
pub fn today_plus(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

impl TestApp {
    /// POST /contacts as `user` in `org`; asserts 201 and returns the contact.
    pub async fn create_contact(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        self.post("/api/v1/contacts")
            .token(&user.access_token)
            .org(org)
            .json(body)
            .send()
            .await
            .ok(201)
            .clone()
    }

    /// A contact named `name`, owned by `user`; returns its id.
    pub async fn contact(&self, user: &TestUser, org: Uuid, name: &str) -> Uuid {
        id_of(
            &self
                .create_contact(user, org, json!({ "name": name }))
                .await,
        )
    }

    /// POST /deals as `user` in `org`; asserts 201 and returns the deal.
    pub async fn create_deal(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        self.post("/api/v1/deals")
            .token(&user.access_token)
            .org(org)
            .json(body)
            .send()
            .await
            .ok(201)
            .clone()
    }

    /// A deal on `contact` owned by `user`, amount in EUR; returns its id.
    pub async fn deal(
        &self,
        user: &TestUser,
        org: Uuid,
        contact: Uuid,
        title: &str,
        amount: &str,
    ) -> Uuid {
        id_of(
            &self
                .create_deal(
                    user,
                    org,
                    json!({"contact_id": contact, "title": title, "amount": amount, "currency": "EUR"}),
                )
                .await,
        )
    }

    /// POST /tasks as `user` in `org`; asserts 201 and returns the task.
    pub async fn create_task(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        self.post("/api/v1/tasks")
            .token(&user.access_token)
            .org(org)
            .json(body)
            .send()
            .await
            .ok(201)
            .clone()
    }

    /// A task on `deal` due in `days` days; returns its id.
    pub async fn task(
        &self,
        user: &TestUser,
        org: Uuid,
        deal: Uuid,
        title: &str,
        days: i64,
    ) -> Uuid {
        id_of(
            &self
                .create_task(
                    user,
                    org,
                    json!({"deal_id": deal, "title": title, "due_date": today_plus(days)}),
                )
                .await,
        )
    }

    /// GET an organization-scoped path as `user` in `org`; asserts 200.
    pub async fn read(&self, user: &TestUser, org: Uuid, path: &str) -> Value {
        self.get(path)
            .token(&user.access_token)
            .org(org)
            .send()
            .await
            .ok(200)
            .clone()
    }

    /// A deal's whole timeline, newest first.
    pub async fn timeline(&self, user: &TestUser, org: Uuid, deal: Uuid) -> Vec<Value> {
        let body = self
            .read(
                user,
                org,
                &format!("/api/v1/deals/{deal}/activities?page_size=100"),
            )
            .await;
        body["items"].as_array().unwrap().clone()
    }

    /// The activity types of a deal's timeline, newest first.
    pub async fn timeline_types(&self, user: &TestUser, org: Uuid, deal: Uuid) -> Vec<String> {
        self.timeline(user, org, deal)
            .await
            .iter()
            .map(|a| a["type"].as_str().unwrap().to_owned())
            .collect()
    }
}
