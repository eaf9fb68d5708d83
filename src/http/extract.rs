//! Extractors whose rejections are problems, so malformed requests flow through
//! the same error type as everything else.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{http::problem::Problem, state::AppState};

/// The authenticated user, from `Authorization: Bearer <access token>`.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser(pub Uuid);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Problem> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a bearer access token is required",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the Authorization header must be 'Bearer <token>'",
                )
            })?;
        app.tokens
            .verify_access(token)
            .map(AuthUser)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the access token is invalid or expired",
                )
            })
    }
}

/// The organization an organization-scoped request acts in (`X-Organization-Id`).
#[derive(Clone, Copy, Debug)]
pub struct OrgId(pub Uuid);

pub const ORG_HEADER: &str = "x-organization-id";

impl<S: Send + Sync> FromRequestParts<S> for OrgId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let value = parts.headers.get(ORG_HEADER).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "organization_header_missing",
                "the X-Organization-Id header is required",
            )
            .with_field("X-Organization-Id", "required")
        })?;
        value
            .to_str()
            .ok()
            .and_then(|v| Uuid::parse_str(v.trim()).ok())
            .map(OrgId)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "organization_header_invalid",
                    "the X-Organization-Id header must be a UUID",
                )
                .with_field("X-Organization-Id", "must be a UUID")
            })
    }
}

/// A JSON body: `application/json` only, parsed with the failing field named.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "unsupported_content_type",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        format!("the body is not valid JSON: {inner}"),
                    )
                } else {
                    let message = inner.to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let field = if field == "." {
                        "body".to_owned()
                    } else {
                        field
                    };
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "validation_failed",
                        format!("{field}: {message}"),
                    )
                    .with_field(field, message)
                }
            })
    }
}

fn body_rejection(e: BytesRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is too large",
        )
    } else {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the request body could not be read",
        )
    }
}

/// Path parameters; a malformed one (say, a bad UUID) is a 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path_parameter",
                    e.body_text(),
                )
            })
    }
}

/// Query parameters; unknown values are a 400, never ignored.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_html_form::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let field = e.path().to_string();
                let message = e.into_inner().to_string();
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query_parameter",
                    format!("{field}: {message}"),
                )
                .with_field(field, message)
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// A JSON body produced by the database, passed through as it is.
pub struct JsonText(pub String);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// 201 Created with a JSON body and the `Location` of what was created.
pub struct Created<T> {
    pub location: String,
    pub body: T,
}

impl<T: IntoResponse> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let location =
            HeaderValue::try_from(self.location).unwrap_or_else(|_| HeaderValue::from_static("/"));
        (
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            self.body,
        )
            .into_response()
    }
}

impl JsonText {
    /// The result of an API function that always returns a document.
    pub fn from_db(json: Option<String>) -> crate::http::problem::AppResult<Self> {
        json.map(JsonText)
            .ok_or_else(|| anyhow::anyhow!("the database returned no result").into())
    }

    /// Calls an API function that always returns a document (`Db::call`).
    pub async fn call(
        db: &crate::db::Db,
        ctx: crate::db::Ctx,
        function: &str,
        args: &[crate::db::Arg<'_>],
    ) -> crate::http::problem::AppResult<Self> {
        Self::from_db(db.call(ctx, function, args).await?)
    }

    /// A created record, found at `{collection}/{its key field}` (the key is
    /// usually `id`).
    pub fn created(
        json: Option<String>,
        collection: &str,
        key: &str,
    ) -> crate::http::problem::AppResult<Created<Self>> {
        let body = Self::from_db(json)?;
        let record: serde_json::Value =
            serde_json::from_str(&body.0).map_err(anyhow::Error::from)?;
        let id = record[key]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the created record has no {key}"))?;
        Ok(Created {
            location: format!("{collection}/{id}"),
            body,
        })
    }
}

/// The acting user inside the organization named by `X-Organization-Id`:
/// the context of every organization-scoped request. 401 comes before 400.
#[derive(Clone, Copy, Debug)]
pub struct OrgActor(pub crate::db::Ctx);

impl FromRequestParts<AppState> for OrgActor {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Problem> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, app).await?;
        let OrgId(org) = OrgId::from_request_parts(parts, app).await?;
        Ok(OrgActor(crate::db::Ctx::org(user, org)))
    }
}

/// The client's address, when the server knows it (it does not in tests that
/// drive the router directly). Forwarding headers are not trusted.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let info = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddr(info.map(|i| i.0.ip())))
    }
}
