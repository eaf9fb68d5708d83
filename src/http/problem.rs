//! Every error the API gives: `application/problem+json` (RFC 9457) with a
//! stable `code`. The one SQLSTATE → HTTP table lives here (`from_db`).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{DbError, DbErrorKind};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (`/problems/{code}`).
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `last_owner`, `email_taken`.
    pub code: String,
    /// Present on validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds for the `Retry-After` header of a 429 or 503 (default 1).
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
    /// The kind of database error this problem stands for, counted by
    /// `metrics::Observe` (`minicrm_db_errors_total`).
    #[serde(skip)]
    #[schema(ignore)]
    pub db_error: Option<DbErrorKind>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            retry_after: None,
            db_error: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let retry_after = self.retry_after;
        let db_error = self.db_error;
        let mut response = (status, body).into_response();
        if let Some(kind) = db_error {
            response.extensions_mut().insert(kind);
        }
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                let seconds = retry_after.unwrap_or(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// The handlers' error type: a safe problem for the client, the cause for the log.
#[derive(Debug)]
pub enum AppError {
    Problem(Box<Problem>),
    Db(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    Internal(anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<Problem> for AppError {
    fn from(p: Problem) -> Self {
        AppError::Problem(Box::new(p))
    }
}
impl From<Box<Problem>> for AppError {
    fn from(p: Box<Problem>) -> Self {
        AppError::Problem(p)
    }
}
impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Statement(e) => AppError::Db(e),
            DbError::Pool(e) => AppError::Pool(e),
            DbError::ExportsBusy => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "exports_busy",
                    "as many exports as the server runs at once are running; try again shortly",
                );
                p.retry_after = Some(5);
                AppError::Problem(Box::new(p))
            }
        }
    }
}
impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

fn internal() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "an unexpected error occurred",
    )
}

fn unavailable() -> Problem {
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database is unavailable; try again shortly",
    );
    p.db_error = Some(DbErrorKind::Unavailable);
    p
}

/// The field a constraint is about: constraints are named
/// `<table>_<field>_<problem>` (see sql/migrations/V2__tables.sql).
fn field_of(table: Option<&str>, constraint: &str) -> Option<String> {
    const PROBLEMS: [&str; 6] = [
        "_not_found",
        "_not_member",
        "_invalid",
        "_negative",
        "_taken",
        "_past",
    ];
    let rest = constraint.strip_prefix(&format!("{}_", table?))?;
    PROBLEMS
        .iter()
        .find_map(|p| rest.strip_suffix(p))
        .map(str::to_owned)
}

impl AppError {
    pub fn into_problem(self) -> Problem {
        match self {
            AppError::Problem(p) => *p,
            AppError::Pool(e) => {
                tracing::warn!(error = %e, "database pool");
                unavailable()
            }
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                internal()
            }
            AppError::Db(e) => from_db(e),
        }
    }
}

/// SQLSTATE → HTTP. Our own errors (`app.fail`) use SQLSTATE `MC4xx` whose
/// digits are the status, carry the code in the constraint field, the field in
/// the column field and a message written for clients; built-in errors get a
/// generic detail so no SQL text ever reaches a client.
///
/// An error of one item of a batch (`app.reraise_for_item`) is the item's own
/// error with HINT `field_prefix=items[3]`: the same problem, its fields
/// prefixed (`items[3].email`, or `items[3]` when it names none).
pub fn from_db(e: tokio_postgres::Error) -> Problem {
    let Some(db) = e.as_db_error() else {
        return from_driver(e);
    };
    let problem = from_db_error(db);
    match db.hint().and_then(|h| h.strip_prefix("field_prefix=")) {
        Some(prefix) if problem.status().is_client_error() => problem.prefixed(prefix),
        _ => problem,
    }
}

impl Problem {
    /// The problem of a part of the request (`items[3]`): each field error
    /// is about that part, and so is the detail.
    fn prefixed(mut self, prefix: &str) -> Self {
        if self.errors.is_empty() {
            self.errors.push(FieldError {
                field: prefix.to_owned(),
                message: self.detail.clone(),
            });
        } else {
            for e in &mut self.errors {
                e.field = format!("{prefix}.{}", e.field);
            }
        }
        self.detail = format!("{prefix}: {}", self.detail);
        self
    }
}

fn from_db_error(db: &tokio_postgres::error::DbError) -> Problem {
    let sqlstate = db.code().code();
    let constraint = db.constraint().unwrap_or("");
    let column = db.column().filter(|c| !c.is_empty()).map(str::to_owned);
    let field = column.or_else(|| field_of(db.table(), constraint));
    let with_field = |p: Problem, message: &str| match &field {
        Some(f) => p.with_field(f.clone(), message),
        None => p,
    };

    if let Some(status) = sqlstate
        .strip_prefix("MC")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        let code = if constraint.is_empty() {
            "error"
        } else {
            constraint
        };
        let mut p = Problem::new(status, code, db.message());
        p.db_error = Some(DbErrorKind::Rule);
        // Errors of several fields (a CSV import's rows): DETAIL is their
        // JSON array of {field, message}.
        if let Some(errors) = db
            .detail()
            .and_then(|d| serde_json::from_str::<Vec<FieldError>>(d).ok())
        {
            p.errors = errors;
            return p;
        }
        // A limit raised in SQL says when to come back: HINT `retry_after=<seconds>`.
        p.retry_after = db
            .hint()
            .and_then(|h| h.strip_prefix("retry_after="))
            .and_then(|s| s.parse().ok());
        return with_field(p, db.message());
    }

    use DbErrorKind as K;
    let (status, code, detail, kind) = match sqlstate {
        "23505" => (
            StatusCode::CONFLICT,
            constraint,
            "the value is already taken",
            K::Constraint,
        ),
        "23503" => (
            StatusCode::NOT_FOUND,
            constraint,
            "a referenced record does not exist",
            K::Constraint,
        ),
        "23514" => (
            StatusCode::BAD_REQUEST,
            constraint,
            "a value is not valid",
            K::Constraint,
        ),
        "23502" => (
            StatusCode::BAD_REQUEST,
            "value_required",
            "a required value is missing",
            K::Constraint,
        ),
        // Data exceptions: a value the database will not take (too long, out
        // of range, a NUL character, malformed input...).
        s if s.starts_with("22") => (
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "a value is not valid",
            K::InvalidValue,
        ),
        // Row-level security refused a write: the target is not in this organization.
        "42501" => (StatusCode::NOT_FOUND, "not_found", "not found", K::Refused),
        "40001" | "40P01" | "55P03" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "transaction_conflict",
            "the request conflicted with a concurrent one; try again",
            K::Conflict,
        ),
        "57014" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "statement_timeout",
            "the database took too long to answer",
            K::Timeout,
        ),
        s if s.starts_with("08") || s.starts_with("53") || s.starts_with("57P") => {
            tracing::warn!(sqlstate = s, error = %db, "database unavailable");
            return unavailable();
        }
        _ => {
            // Logged once, here, with the SQLSTATE (not again as an internal error).
            tracing::error!(sqlstate, error = %db, "unexpected database error");
            let mut p = internal();
            p.db_error = Some(K::Internal);
            return p;
        }
    };
    let code = if code.is_empty() {
        "constraint_violation"
    } else {
        code
    };
    let mut p = Problem::new(status, code, detail);
    p.db_error = Some(kind);
    with_field(p, detail)
}

/// A driver error that is not the database's answer: a lost or failed
/// connection means the database is unavailable (503); anything else (a value
/// that could not be encoded or decoded, a protocol surprise) is our bug (500).
fn from_driver(e: tokio_postgres::Error) -> Problem {
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        tracing::warn!(error = %e, "database connection");
        return unavailable();
    }
    let mut p = AppError::Internal(anyhow::Error::new(e).context("database driver")).into_problem();
    p.db_error = Some(DbErrorKind::Internal);
    p
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.into_problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::{field_of, Problem, StatusCode};

    #[test]
    fn a_batch_items_problem_names_its_place() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "contacts_email_invalid", "bad")
            .with_field("email", "bad")
            .prefixed("items[3]");
        assert_eq!(p.errors[0].field, "items[3].email");
        assert_eq!(p.detail, "items[3]: bad");
        let p = Problem::new(StatusCode::CONFLICT, "x", "taken").prefixed("items[0]");
        assert_eq!(p.errors[0].field, "items[0]");
        assert_eq!(p.errors[0].message, "taken");
    }

    #[test]
    fn constraint_names_name_their_field() {
        assert_eq!(
            field_of(Some("deals"), "deals_amount_negative").as_deref(),
            Some("amount")
        );
        assert_eq!(
            field_of(
                Some("organization_members"),
                "organization_members_user_id_taken"
            )
            .as_deref(),
            Some("user_id")
        );
        assert_eq!(field_of(Some("deals"), "contact_has_deals"), None);
        assert_eq!(field_of(None, "deals_amount_negative"), None);
    }
}
