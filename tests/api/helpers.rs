#![allow(dead_code)] // each test uses a different part of the toolkit
use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{rand_core::OsRng, SaltString},
    Argon2, PasswordHasher,
};
use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use minicrm::{
    auth::credentials,
    ops::config::Config,
    state::App,
    workers::listener::{Notice, EVENTS},
};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_postgres::types::{FromSql, ToSql};
use tower::ServiceExt;
use uuid::Uuid;

pub struct TestApp {
    pub router: Router,
    pub state: Arc<App>,
    pub db_url: String,
}

/// The password of every test user.
pub const PASSWORD: &str = "correct horse";

/// An argon2id hash of [`PASSWORD`], computed once per test process (a hash
/// costs a noticeable fraction of a second in a debug build).
static PASSWORD_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hashing the test password")
        .to_string()
});

/// A user with its tokens, able to send requests to the app it belongs to
/// (crates.io style: `user.get(path)`, `user.post(path, body)`).
///
/// Requests carry the user's bearer token and `X-Organization-Id: acting_org`:
/// the user's own organization for [`TestApp::user`] and
/// [`TestApp::register`], the joined one for [`TestApp::member_of`].
/// [`TestUser::in_org`] acts in another one, [`TestUser::no_org`] sends no
/// organization header.
#[derive(Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    /// The organization created along with the user.
    pub org_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
    /// What its requests send as X-Organization-Id (None: no header).
    pub acting_org: Option<Uuid>,
    router: Router,
}

impl TestUser {
    /// The same user, acting in `org`.
    pub fn in_org(&self, org: Uuid) -> TestUser {
        self.acting(Some(org))
    }

    /// The same user, sending no X-Organization-Id.
    pub fn no_org(&self) -> TestUser {
        self.acting(None)
    }

    fn acting(&self, acting_org: Option<Uuid>) -> TestUser {
        TestUser {
            acting_org,
            ..self.clone()
        }
    }

    /// The same user, talking to another app (e.g. one on the same database
    /// with other settings).
    pub fn via(&self, app: &TestApp) -> TestUser {
        TestUser {
            router: app.router.clone(),
            ..self.clone()
        }
    }

    /// A request with the user's token and organization header, to add to.
    pub fn req(&self, method: Method, path: &str) -> Req {
        let req = Req::new(self.router.clone(), method, path).token(&self.access_token);
        match self.acting_org {
            Some(org) => req.org(org),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.req(Method::GET, path).into_future()
    }
    pub fn post(&self, path: &str, body: Value) -> Answer {
        self.req(Method::POST, path).json(body).into_future()
    }
    pub fn patch(&self, path: &str, body: Value) -> Answer {
        self.req(Method::PATCH, path).json(body).into_future()
    }
    pub fn delete(&self, path: &str) -> Answer {
        self.req(Method::DELETE, path).into_future()
    }

    /// GET; asserts 200 and returns the body.
    pub async fn read(&self, path: &str) -> Value {
        self.get(path).await.ok(200).clone()
    }

    /// POST; asserts 201 and returns the body.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        self.post(path, body).await.ok(201).clone()
    }

    /// A contact named `name`, owned by the user; returns its id.
    pub async fn contact(&self, name: &str) -> Uuid {
        id_of(
            &self
                .create("/api/v1/contacts", json!({ "name": name }))
                .await,
        )
    }

    /// A deal on `contact` owned by the user, amount in EUR; returns its id.
    pub async fn deal(&self, contact: Uuid, title: &str, amount: &str) -> Uuid {
        let body =
            json!({"contact_id": contact, "title": title, "amount": amount, "currency": "EUR"});
        id_of(&self.create("/api/v1/deals", body).await)
    }

    /// A task on `deal` due in `days` days; returns its id.
    pub async fn task(&self, deal: Uuid, title: &str, days: i64) -> Uuid {
        let body = json!({"deal_id": deal, "title": title, "due_date": today_plus(days)});
        id_of(&self.create("/api/v1/tasks", body).await)
    }

    /// A comment on `deal`'s timeline; returns the activity.
    pub async fn comment(&self, deal: Uuid, text: &str) -> Value {
        let body = json!({"type": "comment", "payload": {"text": text}});
        self.create(&format!("/api/v1/deals/{deal}/activities"), body)
            .await
    }

    /// Sends each PATCH of `cases` to `path`, asserting its problem; then the
    /// record must read as before. Returns the answers.
    pub async fn refused_patches(
        &self,
        path: &str,
        cases: Vec<(Value, u16, &str)>,
    ) -> Vec<TestResponse> {
        let before = self.read(path).await;
        let mut answers = Vec::new();
        for (body, status, code) in cases {
            let res = self.patch(path, body.clone()).await;
            let got = (res.status.as_u16(), res.body["code"].as_str());
            assert_eq!(
                got,
                (status, Some(code)),
                "PATCH {path} {body}: {}",
                res.body
            );
            res.problem(status, code);
            answers.push(res);
        }
        assert_eq!(self.read(path).await, before, "{path} changed");
        answers
    }

    /// Each PATCH of `patches` and a DELETE of `path` answer 403
    /// role_forbidden, and the record reads as before.
    pub async fn forbidden(&self, path: &str, patches: Vec<Value>) {
        let before = self.read(path).await;
        for body in patches {
            let res = self.patch(path, body.clone()).await;
            assert_eq!(res.status, 403, "PATCH {path} {body}: {}", res.body);
            res.problem(403, "role_forbidden");
        }
        self.delete(path).await.problem(403, "role_forbidden");
        assert_eq!(self.read(path).await, before, "{path} changed");
    }

    /// DELETE `path` answers 204 with no body; then it is [not
    /// found](TestUser::not_found).
    pub async fn delete_for_good(&self, path: &str, patch: Value, code: &str) {
        self.delete(path).await.no_content();
        self.not_found(path, patch, code).await;
    }

    /// GET, PATCH (with `patch`) and DELETE of `path` answer 404 `code`.
    pub async fn not_found(&self, path: &str, patch: Value, code: &str) {
        self.get(path).await.problem(404, code);
        self.patch(path, patch).await.problem(404, code);
        self.delete(path).await.problem(404, code);
    }

    /// A deal's whole timeline, newest first.
    pub async fn timeline(&self, deal: Uuid) -> Vec<Value> {
        let body = self
            .read(&format!("/api/v1/deals/{deal}/activities?page_size=100"))
            .await;
        body["items"].as_array().unwrap().clone()
    }

    /// The activity types of a deal's timeline, newest first.
    pub async fn timeline_types(&self, deal: Uuid) -> Vec<String> {
        self.timeline(deal)
            .await
            .iter()
            .map(|a| a["type"].as_str().unwrap().to_owned())
            .collect()
    }
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

    /// Asserts a problem and returns the field its first error names.
    #[track_caller]
    pub fn field(&self, status: u16, code: &str) -> &Value {
        &self.problem(status, code)["errors"][0]["field"]
    }

    /// Asserts a 503 problem with this code that says to retry in a second.
    #[track_caller]
    pub fn unavailable(&self, code: &str) {
        self.problem(503, code);
        assert_eq!(self.headers["retry-after"], "1");
    }

    /// Asserts 204 with an empty body.
    #[track_caller]
    pub fn no_content(&self) {
        self.ok(204);
        assert_eq!(self.body, Value::Null);
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

    /// A fresh app and a [user](TestApp::user) of it.
    pub async fn with_user(name: &str) -> (Self, TestUser) {
        let app = Self::spawn().await;
        let user = app.user(name).await;
        (app, user)
    }

    /// A fresh app and a user [registered](TestApp::register) over HTTP.
    pub async fn with_registered(name: &str) -> (Self, TestUser) {
        let app = Self::spawn().await;
        let user = app.register(name).await;
        (app, user)
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
        let direct = format!("{admin}/{name}");
        let mut config = Config::for_database(direct.clone());
        tune(&mut config);
        // The tests' own SQL goes straight to the database, even when `tune`
        // points the app at a transaction-mode pooler: tokio-postgres prepares
        // named statements, which a pooler may run on another server connection.
        TestApp {
            db_url: direct,
            ..Self::with_config(config)
        }
    }

    /// An app on a fresh database, reached through PgBouncer in transaction
    /// mode (started by scripts/test on TEST_POOLER_PORT), with
    /// `DB_POOLER=transaction`.
    pub async fn spawn_behind_pooler() -> Self {
        let port: u16 = std::env::var("TEST_POOLER_PORT")
            .expect("TEST_POOLER_PORT is not set: run the tests with scripts/test")
            .parse()
            .unwrap();
        Self::spawn_with(|c| {
            let direct = c.database_url.clone().unwrap();
            let name = direct.rsplit('/').next().unwrap().to_owned();
            c.database_url = Some(format!("postgres://postgres@127.0.0.1:{port}/{name}"));
            c.pool.transaction_pooler = true;
            c.pool.size = 8;
        })
        .await
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

    /// A request without credentials.
    pub fn req(&self, method: Method, path: &str) -> Req {
        Req::new(self.router.clone(), method, path)
    }
    pub fn get(&self, path: &str) -> Req {
        self.req(Method::GET, path)
    }
    pub fn post(&self, path: &str) -> Req {
        self.req(Method::POST, path)
    }
    pub fn patch(&self, path: &str) -> Req {
        self.req(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> Req {
        self.req(Method::DELETE, path)
    }

    /// An anonymous POST of a JSON body (registration, login, refresh).
    pub fn post_json(&self, path: &str, body: Value) -> Answer {
        self.post(path).json(body).into_future()
    }

    /// A superuser connection to this test's database (for setup and checks).
    pub async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    /// The first column of every row of `query`, run as the superuser.
    pub async fn column<T: for<'a> FromSql<'a>>(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Vec<T> {
        let rows = self.sql().await.query(query, params).await;
        rows.unwrap_or_else(|e| panic!("{query}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The single value `query` returns, run as the superuser.
    pub async fn value<T: for<'a> FromSql<'a>>(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> T {
        let mut values = self.column(query, params).await;
        assert_eq!(values.len(), 1, "{query}: expected one row");
        values.remove(0)
    }

    fn test_user(&self, email: String, body: &Value, access: &str, refresh: &str) -> TestUser {
        let uuid = |v: &Value| v.as_str().unwrap().parse::<Uuid>().unwrap();
        let org_id = uuid(&body["organization"]["id"]);
        TestUser {
            id: uuid(&body["user"]["id"]),
            email,
            org_id,
            access_token: access.to_owned(),
            refresh_token: refresh.to_owned(),
            acting_org: Some(org_id),
            router: self.router.clone(),
        }
    }

    /// Registers `<name>@example.com` with its own organization over HTTP
    /// (for tests of registration itself; see [`TestApp::user`]).
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let res = self
            .post("/api/v1/auth/register")
            .json(json!({"email": email, "password": PASSWORD, "name": name, "organization_name": format!("{name} Inc")}))
            .send()
            .await;
        let body = res.ok(201);
        let token = |field: &str| body[field].as_str().unwrap().to_owned();
        self.test_user(email, body, &token("access_token"), &token("refresh_token"))
    }

    /// The same user as [`TestApp::register`] makes, without HTTP and without
    /// hashing a password: the database's own `api.auth_register` (user,
    /// organization, owner membership, refresh token) with a precomputed hash
    /// of [`PASSWORD`], and tokens from the app's own token issuer.
    pub async fn user(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let (refresh, refresh_hash) = credentials::new_refresh_token();
        let row = self
            .sql()
            .await
            .query_one(
                "SELECT (api.auth_register($3, $4, $5, $6, $7, $8))::text FROM app.act_as($1, $2)",
                &[
                    &None::<Uuid>,
                    &None::<Uuid>,
                    &email,
                    &*PASSWORD_HASH,
                    &name,
                    &format!("{name} Inc"),
                    &refresh_hash,
                    &self.state.tokens.refresh_expires_at(),
                ],
            )
            .await
            .expect("registering a test user");
        let body: Value = serde_json::from_str(row.get(0)).unwrap();
        let id = body["user"]["id"].as_str().unwrap().parse().unwrap();
        let access = self.state.tokens.access_token(id).unwrap();
        self.test_user(email, &body, &access, &refresh)
    }

    /// A new user that `owner` adds to their organization with `role`: an
    /// invitation over HTTP that the user accepts over HTTP. The user acts in
    /// that organization.
    pub async fn member_of(&self, owner: &TestUser, name: &str, role: &str) -> TestUser {
        let user = self.user(name).await;
        add_member(owner, &user, role).await;
        user.in_org(owner.org_id)
    }
}

pub struct Req {
    router: Router,
    builder: axum::http::request::Builder,
    body: Body,
}

impl Req {
    fn new(router: Router, method: Method, path: &str) -> Self {
        Req {
            router,
            builder: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }
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
    pub fn send_owned(self) -> impl Future<Output = TestResponse> + Send + 'static {
        let router = self.router;
        let request = self.builder.body(self.body).unwrap();
        async move { read_response(router.oneshot(request).await.unwrap()).await }
    }
}

/// A request on its way: a `'static` future, so it can be spawned.
pub type Answer = Pin<Box<dyn Future<Output = TestResponse> + Send>>;

/// `req.await` sends it.
impl IntoFuture for Req {
    type Output = TestResponse;
    type IntoFuture = Answer;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send_owned())
    }
}

pub async fn read_response(response: axum::response::Response) -> TestResponse {
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

/// Field names: an array or slice of them, or one string of names separated
/// by white space.
pub trait FieldNames {
    fn names(&self) -> Vec<&str>;
}
impl FieldNames for str {
    fn names(&self) -> Vec<&str> {
        self.split_whitespace().collect()
    }
}
impl FieldNames for [&str] {
    fn names(&self) -> Vec<&str> {
        self.to_vec()
    }
}
impl<const N: usize> FieldNames for [&str; N] {
    fn names(&self) -> Vec<&str> {
        self.to_vec()
    }
}

/// Asserts that a record has exactly these fields.
#[track_caller]
pub fn assert_fields(record: &Value, fields: &(impl FieldNames + ?Sized)) {
    let mut got: Vec<&str> = record
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {record}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = fields.names();
    want.sort_unstable();
    assert_eq!(got, want, "fields of {record}");
}

/// Asserts a record of exactly `fields`, with the values of `expected` (a JSON
/// object; UUIDs compare as their strings) and RFC 3339 timestamps.
#[track_caller]
pub fn assert_record(record: &Value, fields: &str, expected: Value) {
    assert_fields(record, fields);
    for (field, value) in expected.as_object().expect("an object of expected values") {
        assert_eq!(&record[field], value, "{field} of {record}");
    }
    for field in ["created_at", "updated_at"] {
        if record.get(field).is_some() {
            assert_timestamp(&record[field]);
        }
    }
}

/// Asserts that `after` is `before` updated: same creation time, a new
/// update time.
#[track_caller]
pub fn assert_updated(before: &Value, after: &Value) {
    assert_eq!(after["created_at"], before["created_at"]);
    assert_ne!(after["updated_at"], before["updated_at"]);
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

/// The items of a list envelope, after checking its page fields; an offset
/// page has a `next_cursor` exactly when rows follow it.
#[track_caller]
pub fn page_items(body: &Value, page: i64, page_size: i64, total: i64) -> Vec<Value> {
    assert_fields(body, ENVELOPE);
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
    assert_eq!(
        body["next_cursor"].is_string(),
        page * page_size < total,
        "next_cursor of {body}"
    );
    assert!(body["next_cursor"].is_string() || body["next_cursor"].is_null());
    body["items"].as_array().unwrap().clone()
}

/// The fields of every list envelope.
pub const ENVELOPE: &[&str] = &[
    "items",
    "page",
    "page_size",
    "total",
    "total_exact",
    "next_cursor",
];

/// Asserts that GET `path?<query>` answers 400 invalid_query_parameter,
/// naming a field, for each of the whitespace-separated `queries`.
pub async fn assert_bad_queries(user: &TestUser, path: &str, queries: &str) {
    let mut wrong = Vec::new();
    for query in queries.split_whitespace() {
        let res = user.get(&format!("{path}?{query}")).await;
        let code = res.body["code"].as_str();
        let problem = res.headers[header::CONTENT_TYPE] == "application/problem+json";
        if (res.status.as_u16(), code, problem) != (400, Some("invalid_query_parameter"), true)
            || !res.body["errors"][0]["field"].is_string()
        {
            wrong.push(format!("{query}: {} {}", res.status, res.body));
        }
    }
    assert!(wrong.is_empty(), "{path}:\n  {}", wrong.join("\n  "));
}

/// The members of the role-table tests: a manager and two plain members.
pub const SALES: [(&str, &str); 3] = [("manager", "manager"), ("mia", "member"), ("max", "member")];

impl TestApp {
    /// A fresh app, a user named "owner" and the members of its organization
    /// named by `who` (see [`TestApp::members`]).
    pub async fn with_team<const N: usize>(
        who: [(&str, &str); N],
    ) -> (Self, TestUser, [TestUser; N]) {
        let (app, owner) = Self::with_user("owner").await;
        let members = app.members(&owner, who).await;
        (app, owner, members)
    }

    /// New users that `owner` adds to their organization, one per
    /// (name, role), as [`TestApp::member_of`] does.
    pub async fn members<const N: usize>(
        &self,
        owner: &TestUser,
        who: [(&str, &str); N],
    ) -> [TestUser; N] {
        let mut members = Vec::new();
        for (name, role) in who {
            members.push(self.member_of(owner, name, role).await);
        }
        members.try_into().ok().unwrap()
    }
}

/// Ann and Bob, each in an organization of their own, with a contact and a
/// deal of Bob's; Ann is also a member of Bob's organization (with `role`),
/// so her token is valid there: only the organization she acts in keeps her
/// out of Bob's records.
pub struct Neighbours {
    pub app: TestApp,
    pub ann: TestUser,
    pub bob: TestUser,
    pub bobs_contact: Uuid,
    pub bobs_deal: Uuid,
}

impl Neighbours {
    pub async fn new(role: &str, deal_title: &str, amount: &str) -> Self {
        let (app, ann) = TestApp::with_user("ann").await;
        let bob = app.user("bob").await;
        add_member(&bob, &ann, role).await;
        let bobs_contact = bob.contact("Bob's client").await;
        let bobs_deal = bob.deal(bobs_contact, deal_title, amount).await;
        Neighbours {
            app,
            ann,
            bob,
            bobs_contact,
            bobs_deal,
        }
    }
}

/// `owner` adds `user` to their organization with `role`, as the API allows
/// it since invitations (SPEC §16): the owner invites `user`'s address and
/// `user` accepts, both over HTTP, so through every rule of the database.
pub async fn add_member(owner: &TestUser, user: &TestUser, role: &str) {
    let invitation = invite(owner, &user.email, role).await;
    user.accept(id_of(&invitation)).await;
}

/// `owner` invites `email` into their organization with `role` (over HTTP);
/// returns the invitation.
pub async fn invite(owner: &TestUser, email: &str, role: &str) -> Value {
    let members = format!("/api/v1/organizations/{}/members", owner.org_id);
    owner
        .no_org()
        .post(&members, json!({"email": email, "role": role}))
        .await
        .ok(201)
        .clone()
}

impl TestUser {
    /// POST /invitations/{id}/accept (no organization header).
    pub fn answer(&self, invitation: Uuid, answer: &str) -> Answer {
        self.no_org()
            .req(
                Method::POST,
                &format!("/api/v1/invitations/{invitation}/{answer}"),
            )
            .into_future()
    }

    /// Accepts the invitation; asserts 200 and returns the new membership.
    pub async fn accept(&self, invitation: Uuid) -> Value {
        self.answer(invitation, "accept").await.ok(200).clone()
    }
}

/// The path of the record `id` of `list`: `at(DEALS, id)`.
pub fn at(list: &str, id: Uuid) -> String {
    format!("{list}/{id}")
}

/// The ids a list answers for `query` (one page that holds them all), after
/// checking its total and each item's fields.
pub async fn list_ids(user: &TestUser, list: &str, query: &str, fields: &str) -> Vec<Uuid> {
    let body = user.read(&format!("{list}?{query}")).await;
    let items = body["items"].as_array().unwrap().clone();
    assert_eq!(body["total"], json!(items.len()), "total for {query}");
    for item in &items {
        assert_fields(item, fields);
    }
    ids(&items)
}

/// Asserts, for each (query, ids) case, that `list` answers those ids in
/// that order (see [`list_ids`]); reports every case that does not.
pub async fn assert_lists(
    user: &TestUser,
    list: &str,
    fields: &str,
    cases: Vec<(String, Vec<Uuid>)>,
) {
    let mut wrong = Vec::new();
    for (query, want) in cases {
        let got = list_ids(user, list, &query, fields).await;
        if got != want {
            wrong.push(format!("{query}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{list}:\n  {}", wrong.join("\n  "));
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

/// The older `app.<helper>(user, org, ..)` forms: `user.in_org(org).<helper>(..)`.
impl TestApp {
    pub async fn create_contact(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        user.in_org(org).create("/api/v1/contacts", body).await
    }
    pub async fn contact(&self, user: &TestUser, org: Uuid, name: &str) -> Uuid {
        user.in_org(org).contact(name).await
    }
    pub async fn create_deal(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        user.in_org(org).create("/api/v1/deals", body).await
    }
    pub async fn deal(
        &self,
        user: &TestUser,
        org: Uuid,
        contact: Uuid,
        title: &str,
        amount: &str,
    ) -> Uuid {
        user.in_org(org).deal(contact, title, amount).await
    }
    pub async fn create_task(&self, user: &TestUser, org: Uuid, body: Value) -> Value {
        user.in_org(org).create("/api/v1/tasks", body).await
    }
    pub async fn task(
        &self,
        user: &TestUser,
        org: Uuid,
        deal: Uuid,
        title: &str,
        days: i64,
    ) -> Uuid {
        user.in_org(org).task(deal, title, days).await
    }
    pub async fn read(&self, user: &TestUser, org: Uuid, path: &str) -> Value {
        user.in_org(org).read(path).await
    }
    pub async fn timeline(&self, user: &TestUser, org: Uuid, deal: Uuid) -> Vec<Value> {
        user.in_org(org).timeline(deal).await
    }
    pub async fn timeline_types(&self, user: &TestUser, org: Uuid, deal: Uuid) -> Vec<String> {
        user.in_org(org).timeline_types(deal).await
    }
}

/// Awaits `answer`, asserting that it came in less than `limit`.
pub async fn within<T>(limit: Duration, answer: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let res = answer.await;
    let took = started.elapsed();
    assert!(took < limit, "the answer took {took:?}");
    res
}

/// A deal of `owner` whose row a superuser transaction keeps locked, so an API
/// write to it waits in the database.
pub async fn locked_deal(app: &TestApp, owner: &TestUser) -> (Uuid, tokio_postgres::Client) {
    let contact = owner.contact("Client").await;
    let deal = owner.deal(contact, "Deal", "10").await;
    let lock = app.sql().await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM crm.deals WHERE id = '{deal}' FOR UPDATE"
    ))
    .await
    .unwrap();
    (deal, lock)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5), as in JWTs.
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub fn base64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = B64.iter().position(|x| *x == c).expect("base64url") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The listener's notifications of `app`, from now on (once it listens:
/// its first `LISTEN` resets the cache).
pub async fn notices(app: &TestApp) -> broadcast::Receiver<Notice> {
    app.state.listener.ready(0).await;
    app.state.listener.subscribe(EVENTS)
}

/// Lets the notifications of the writes so far reach the cache: waits for
/// `org`'s `resource` notification, then until none came for 100 ms. The
/// listener drops an organization's cached reports (or remembered members)
/// on each, a few milliseconds after the commit, whichever instance wrote;
/// a test that expects a hit next must not race it.
pub async fn notified(notices: &mut broadcast::Receiver<Notice>, org: Uuid, resource: &str) {
    let want = format!("{org}:{resource}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, notices.recv()).await {
            Ok(Ok(Notice::Notified(p))) if *p == *want => break,
            Ok(_) => continue,
            Err(_) => panic!("no {want} notification"),
        }
    }
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), notices.recv()).await {}
}
