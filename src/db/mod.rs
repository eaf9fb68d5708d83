//! The request path to PostgreSQL: one pooled connection, one statement.
//!
//! Every request is a single statement, `SELECT api.<fn>(...)::text FROM
//! app.act_as($1, $2)`, run as its own (implicit) transaction: `app.act_as`
//! switches to the request role and sets the transaction-local context, then
//! the API function runs under RLS. One round trip, prepared and cached per
//! connection; when the statement ends, role and context are gone.

use std::time::Duration;

pub mod copy;
pub mod idempotency;
pub mod localdb;
pub mod migrate;
pub mod param;
pub mod seed;
pub mod tls;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// Who is acting, and in which organization.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    pub user_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
}

impl Ctx {
    pub const ANONYMOUS: Ctx = Ctx {
        user_id: None,
        org_id: None,
    };
    pub fn user(user_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            org_id: None,
        }
    }
    pub fn org(user_id: Uuid, org_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            org_id: Some(org_id),
        }
    }
}

/// A request statement that failed: the database answered with an error, the
/// connection failed, or no connection could be had from the pool. The HTTP
/// layer decides what each means for the client (`http::problem`).
#[derive(Debug)]
pub enum DbError {
    Statement(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    /// Every export slot is taken ([`Db::export`]).
    ExportsBusy,
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Statement(e)
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e)
    }
}

/// What kind of database error a problem came from (`minicrm_db_errors_total{kind}`);
/// set by `http::problem` and counted by `ops::metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A business rule raised with `app.fail` (SQLSTATE `MC4xx`).
    Rule,
    /// An integrity constraint (SQLSTATE class 23).
    Constraint,
    /// A value the database would not take (SQLSTATE class 22).
    InvalidValue,
    /// Row-level security refused a write (42501).
    Refused,
    /// Serialization failure, deadlock, lock not available.
    Conflict,
    /// `statement_timeout`.
    Timeout,
    /// Unreachable, out of resources, shutting down, lost connection, pool timeout.
    Unavailable,
    /// Anything else (a 500).
    Internal,
}

impl DbErrorKind {
    pub const ALL: [DbErrorKind; 8] = [
        DbErrorKind::Rule,
        DbErrorKind::Constraint,
        DbErrorKind::InvalidValue,
        DbErrorKind::Refused,
        DbErrorKind::Conflict,
        DbErrorKind::Timeout,
        DbErrorKind::Unavailable,
        DbErrorKind::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DbErrorKind::Rule => "rule",
            DbErrorKind::Constraint => "constraint",
            DbErrorKind::InvalidValue => "invalid_value",
            DbErrorKind::Refused => "refused",
            DbErrorKind::Conflict => "conflict",
            DbErrorKind::Timeout => "timeout",
            DbErrorKind::Unavailable => "unavailable",
            DbErrorKind::Internal => "internal",
        }
    }
}

/// How the request pool connects and waits (from `ops::config`).
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub size: usize,
    /// How long a request waits for a free connection before a 503.
    pub wait_timeout: Duration,
    /// The database's `statement_timeout` for request statements.
    pub statement_timeout: Duration,
    /// Behind a transaction-mode pooler (`DB_POOLER=transaction`): every call
    /// is one unnamed statement (no prepared statement outlives it) and no
    /// startup options are sent (poolers refuse them); `statement_timeout` and
    /// `TimeZone` then come from the database's settings (README).
    pub transaction_pooler: bool,
}

/// A named argument of an API function call: (parameter name, value).
pub type Arg<'a> = (&'static str, &'a dyn param::Param);

/// `SELECT (function(name => $3, ...))::text FROM app.act_as($1, $2)`: the
/// context is `$1` (user) and `$2` (organization); custom types are cast
/// (`param`).
fn call_sql(function: &str, args: &[Arg<'_>]) -> String {
    // Written into one string: the text is built on every request (it is the
    // key of the connection's statement cache).
    let mut sql = String::with_capacity(64 + function.len() + 24 * args.len());
    sql.push_str("SELECT (");
    write_call(&mut sql, function, args, 3);
    sql.push_str(")::text FROM app.act_as($1, $2)");
    sql
}

/// The parameters an idempotent call puts before the function's own.
const IDEMPOTENCY_PARAMS: usize = 4;

/// The call of `call_sql` made idempotent with the key `$3`, fingerprint
/// `$4`, success status `$5` and lifetime `$6` (sql/functions/15_idempotency.sql):
/// one statement that claims the key, then either replays the stored answer
/// or calls the function and stores its answer. Returns (replayed, stored
/// status, body).
fn idempotent_call_sql(function: &str, args: &[Arg<'_>]) -> String {
    let mut sql = String::with_capacity(400 + function.len() + 24 * args.len());
    sql.push_str(
        "SELECT b.replayed, b.status, CASE WHEN b.replayed THEN b.body \
         ELSE app.idempotency_finish(p_scope => b.scope, p_key => $3, p_fingerprint => $4, \
         p_status => $5, p_ttl_secs => $6, p_body => (",
    );
    write_call(&mut sql, function, args, 3 + IDEMPOTENCY_PARAMS);
    sql.push_str(
        ")::text) END FROM app.act_as($1, $2) AS a(role), \
         LATERAL app.idempotency_begin(p_after => a.role, p_key => $3, p_fingerprint => $4) AS b",
    );
    sql
}

/// `function(name => $first, ...)`, with the casts of custom types.
fn write_call(sql: &mut String, function: &str, args: &[Arg<'_>], first: usize) {
    use std::fmt::Write;
    sql.push_str(function);
    sql.push('(');
    for (i, (name, value)) in args.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{name} => ${}", i + first);
        if let Some(cast) = value.wire().cast {
            sql.push_str("::");
            sql.push_str(cast);
        }
    }
    sql.push(')');
}

/// The values of named arguments, in order.
fn values<'a>(args: &[Arg<'a>]) -> Vec<&'a dyn param::Param> {
    args.iter().map(|(_, value)| *value).collect()
}

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// Exports running at once: each holds a pooled connection for as long
    /// as its client reads, so they may take at most a quarter of the pool
    /// (at least one) and never starve the other requests.
    exports: std::sync::Arc<tokio::sync::Semaphore>,
    /// For the cancel requests of abandoned statements.
    tls: tls::MakeRustlsConnect,
    transaction_pooler: bool,
    /// How long a stored idempotent answer is replayed (`IDEMPOTENCY_TTL_SECS`).
    idempotency_ttl_secs: i32,
}

impl Db {
    pub fn connect(settings: &PoolSettings, database_url: &str) -> anyhow::Result<Self> {
        let tls::DbConnect {
            config: mut pg,
            tls,
            ..
        } = tls::parse(database_url).context("parsing DATABASE_URL")?;
        if !settings.transaction_pooler {
            let options = format!(
                "{} -c TimeZone=UTC -c statement_timeout={}",
                pg.get_options().unwrap_or_default(),
                settings.statement_timeout.as_millis()
            );
            pg.options(options.trim());
        }
        pg.application_name("minicrm")
            .connect_timeout(Duration::from_secs(3));
        let manager = Manager::from_config(
            pg,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.size)
            .timeouts(Timeouts {
                wait: Some(settings.wait_timeout),
                create: Some(Duration::from_secs(3)),
                recycle: Some(Duration::from_secs(3)),
            })
            .runtime(Runtime::Tokio1)
            .build()
            .context("building the connection pool")?;
        Ok(Self {
            pool,
            exports: std::sync::Arc::new(tokio::sync::Semaphore::new((settings.size / 4).max(1))),
            tls,
            transaction_pooler: settings.transaction_pooler,
            idempotency_ttl_secs: 86_400,
        })
    }

    /// How long answers stored under an idempotency key are replayed.
    pub fn with_idempotency_ttl(mut self, secs: i32) -> Self {
        self.idempotency_ttl_secs = secs;
        self
    }

    /// Calls the API function `function` with named arguments
    /// (`api.deals_update(p_id => $3, p_title => $4, ...)`: a swapped pair of
    /// same-typed arguments cannot go unnoticed, and a renamed parameter
    /// fails loudly) in the given context, and returns its result as JSON
    /// text (None for void functions and SQL NULL).
    ///
    /// When the request carries an idempotency key (`idempotency`), the
    /// first call of the request is made idempotent with it: it may return a
    /// stored answer instead of calling the function.
    pub async fn call(
        &self,
        ctx: Ctx,
        function: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<String>, DbError> {
        if let Some(key) = idempotency::claim() {
            return self.call_idempotent(ctx, key, function, args).await;
        }
        let sql = call_sql(function, args);
        Ok(self.query_one(ctx, &sql, &values(args)).await?.get(0))
    }

    async fn call_idempotent(
        &self,
        ctx: Ctx,
        key: idempotency::Key,
        function: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<String>, DbError> {
        let mut in_flight = InFlight(Some(self.pool.get().await?), &self.tls);
        let answer = self
            .idempotent_on(in_flight.client(), ctx, &key, function, args)
            .await;
        in_flight.done();
        Ok(answer?)
    }

    /// The idempotent call of `function` on `client`: claims the key, and
    /// either returns the stored answer (marking the request replayed) or
    /// calls the function and stores its answer, in one statement.
    async fn idempotent_on(
        &self,
        client: &Object,
        ctx: Ctx,
        key: &idempotency::Key,
        function: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<String>, tokio_postgres::Error> {
        let sql = idempotent_call_sql(function, args);
        let mut values: Vec<&dyn param::Param> =
            Vec::with_capacity(IDEMPOTENCY_PARAMS + args.len());
        values.extend([
            &key.key as &dyn param::Param,
            &key.fingerprint,
            &key.status,
            &self.idempotency_ttl_secs,
        ]);
        values.extend(args.iter().map(|(_, value)| *value));
        let row = self.query(client, ctx, &sql, &values).await?;
        if row.get::<_, bool>(0) {
            let status: i32 = row.get(1);
            idempotency::replayed(u16::try_from(status).unwrap_or(200));
        }
        Ok(row.get(2))
    }

    /// Runs one request statement: `$1` and `$2` are the context, `values`
    /// the rest, prepared and cached per connection or, behind a
    /// transaction pooler, as one unnamed statement.
    async fn query_one(
        &self,
        ctx: Ctx,
        sql: &str,
        values: &[&dyn param::Param],
    ) -> Result<tokio_postgres::Row, DbError> {
        let mut in_flight = InFlight(Some(self.pool.get().await?), &self.tls);
        let row = self.query(in_flight.client(), ctx, sql, values).await;
        in_flight.done();
        Ok(row?)
    }

    /// One request statement on `client`: `$1` and `$2` are the context,
    /// `values` the rest, prepared and cached per connection or, behind a
    /// transaction-mode pooler, one unnamed statement.
    async fn query(
        &self,
        client: &Object,
        ctx: Ctx,
        sql: &str,
        values: &[&dyn param::Param],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        if self.transaction_pooler {
            let wire: Vec<(param::AsWire<'_>, Type)> = values
                .iter()
                .map(|value| (param::AsWire(*value), value.wire().ty))
                .collect();
            let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::with_capacity(values.len() + 2);
            params.push((&ctx.user_id, Type::UUID));
            params.push((&ctx.org_id, Type::UUID));
            params.extend(
                wire.iter()
                    .map(|(v, ty)| (v as &(dyn ToSql + Sync), ty.clone())),
            );
            client.query_typed_one(sql, &params).await
        } else {
            let statement = client.prepare_cached(sql).await?;
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(values.len() + 2);
            params.push(&ctx.user_id);
            params.push(&ctx.org_id);
            params.extend(values.iter().map(|value| value.as_sql()));
            client.query_one(&statement, &params).await
        }
    }

    /// Housekeeping (`private.run_maintenance()`): runs as the login role, with
    /// no request context, and returns each step with the rows it deleted.
    /// A simple query, so it works behind a transaction pooler as well.
    pub async fn run_maintenance(
        &self,
        trash_retention_days: u32,
        event_retention_days: u32,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let client = self.pool.get().await?;
        // Numbers the server formats itself: nothing to quote.
        let messages = client
            .simple_query(&format!(
                "SELECT step, deleted FROM private.run_maintenance(\
                 p_trash_retention_days => {trash_retention_days}, \
                 p_event_retention_days => {event_retention_days})"
            ))
            .await?;
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).unwrap_or_default().to_owned(),
                    row.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
                )),
                _ => None,
            })
            .collect())
    }

    /// A CSV export (README, "Export"): in one `REPEATABLE READ READ ONLY`
    /// transaction, the API function `function` checks the filters and
    /// returns the `COPY ... TO STDOUT` of the export, which runs next, in
    /// the same snapshot and context. A refused filter is an error here,
    /// before anything is streamed. The stream holds the connection until
    /// the last byte (then commits and gives it back); dropped before that
    /// (the client went away), the statement is cancelled and the
    /// connection closed, never returned to the pool mid-COPY.
    pub async fn export(
        &self,
        ctx: Ctx,
        function: &str,
        args: &[Arg<'_>],
    ) -> Result<copy::Export, DbError> {
        let slot = self
            .exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| DbError::ExportsBusy)?;
        let sql = call_sql(function, args);
        let mut in_flight = InFlight(Some(self.pool.get().await?), &self.tls);
        let client = in_flight.client();
        let started = async {
            client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                     SET LOCAL statement_timeout = {}",
                    copy::EXPORT_TIMEOUT.as_millis()
                ))
                .await?;
            let copy: Option<String> = self.query(client, ctx, &sql, &values(args)).await?.get(0);
            let copy = copy.unwrap_or_default();
            client.copy_out(copy.as_str()).await
        }
        .await;
        match started {
            Ok(stream) => Ok(copy::Export::new(
                in_flight.0.take().expect("in flight"),
                self.tls.clone(),
                stream,
                slot,
            )),
            Err(e) => {
                if client.batch_execute("ROLLBACK").await.is_ok() {
                    in_flight.done();
                }
                Err(e.into())
            }
        }
    }

    /// A CSV import (README, "Import"), in one transaction: `begin` creates
    /// the staging table, `copy` (a `COPY ... FROM STDIN` in text format)
    /// loads `data` into it, and `function` validates and writes the rows,
    /// returning its JSON. Any error rolls everything back.
    pub async fn import(
        &self,
        ctx: Ctx,
        begin: &str,
        copy: &str,
        data: bytes::Bytes,
        function: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<String>, DbError> {
        use futures_util::SinkExt;
        let mut in_flight = InFlight(Some(self.pool.get().await?), &self.tls);
        let client = in_flight.client();
        let done = async {
            client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL statement_timeout = {}",
                    copy::IMPORT_TIMEOUT.as_millis()
                ))
                .await?;
            self.query(client, ctx, &call_sql(begin, &[]), &[]).await?;
            let sink = client.copy_in::<_, bytes::Bytes>(copy).await?;
            futures_util::pin_mut!(sink);
            sink.send(data).await?;
            sink.as_mut().finish().await?;
            // With an Idempotency-Key, the write and its stored answer are
            // this one statement, as for any other call (a replay loaded
            // the file for nothing, and drops it with the transaction).
            let json: Option<String> = match idempotency::claim() {
                Some(key) => {
                    self.idempotent_on(client, ctx, &key, function, args)
                        .await?
                }
                None => self
                    .query(client, ctx, &call_sql(function, args), &values(args))
                    .await?
                    .get(0),
            };
            client.batch_execute("COMMIT").await?;
            Ok::<_, tokio_postgres::Error>(json)
        }
        .await;
        match done {
            Ok(json) => {
                in_flight.done();
                Ok(json)
            }
            Err(e) => {
                if client.batch_execute("ROLLBACK").await.is_ok() {
                    in_flight.done();
                }
                Err(e.into())
            }
        }
    }

    /// Readiness: a pooled connection answers.
    /// A pooled connection for a worker's own statements: the login role,
    /// no request context (`workers::webhooks`). Send each statement with
    /// `query_typed` (unnamed), so that a transaction pooler works.
    pub async fn worker_client(&self) -> Result<Object, DbError> {
        Ok(self.pool.get().await?)
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}

/// A pooled connection with a statement in flight. If the request is dropped
/// before the statement ends (request timeout, client gone), the statement is
/// cancelled, so an abandoned request never commits later; the connection
/// leaves the pool first, so the cancel cannot hit another request's statement.
struct InFlight<'a>(Option<Object>, &'a tls::MakeRustlsConnect);

impl InFlight<'_> {
    fn client(&self) -> &Object {
        self.0.as_ref().expect("in flight")
    }

    /// The statement finished: the connection goes back to the pool.
    fn done(&mut self) {
        self.0.take();
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            abandon(object, self.1.clone());
        }
    }
}

/// Takes a connection with a statement in flight out of the pool, cancels
/// the statement and closes the connection.
fn abandon(object: Object, tls: tls::MakeRustlsConnect) {
    let client = Object::take(object);
    let token = client.cancel_token();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = token.cancel_query(tls).await;
            drop(client);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_name_every_argument() {
        let (id, title) = (Uuid::nil(), "t".to_owned());
        assert_eq!(
            call_sql("api.deals_update", &[("p_id", &id), ("p_title", &title)]),
            "SELECT (api.deals_update(p_id => $3, p_title => $4))::text FROM app.act_as($1, $2)"
        );
        assert_eq!(
            call_sql("api.users_me", &[]),
            "SELECT (api.users_me())::text FROM app.act_as($1, $2)"
        );
        let status = crate::http::routes::fields::DealStatus::Won;
        assert_eq!(
            call_sql("api.deals_list", &[("p_status", &status), ("p_id", &id)]),
            "SELECT (api.deals_list(p_status => $3::crm.deal_status, p_id => $4))::text \
             FROM app.act_as($1, $2)"
        );
    }

    #[test]
    fn idempotent_calls_number_the_function_arguments_after_the_key() {
        let (name, status) = ("n".to_owned(), crate::http::routes::fields::DealStatus::Won);
        let sql = idempotent_call_sql("api.f", &[("p_name", &name), ("p_status", &status)]);
        assert!(sql.starts_with("SELECT b.replayed, b.status, CASE WHEN b.replayed THEN b.body "));
        assert!(sql.contains(
            "p_body => (api.f(p_name => $7, p_status => $8::crm.deal_status))::text) END"
        ));
        assert!(sql.ends_with(
            "FROM app.act_as($1, $2) AS a(role), LATERAL app.idempotency_begin(p_after => a.role, \
             p_key => $3, p_fingerprint => $4) AS b"
        ));
    }
}
