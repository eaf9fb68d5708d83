#![allow(dead_code)] // each test uses a different part of the toolkit
use std::sync::Arc;

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use minicrm::{config::Config, state::App};
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
        let request = self.builder.body(self.body).unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
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
}
