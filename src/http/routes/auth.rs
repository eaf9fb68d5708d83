//! POST /auth/register, /auth/login, /auth/refresh, /auth/logout.

use std::net::IpAddr;

use axum::{
    extract::State,
    http::{header, HeaderName, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::credentials::{hash_password, new_refresh_token, refresh_token_hash, verify_password},
    auth::ratelimit::{Attempt, Quota},
    db::Ctx,
    http::extract::{ApiJson, ClientAddr, Created},
    http::problem::{AppError, AppResult, Problem},
    http::routes::{organizations::Organization, users::User, Password},
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s]+@[^@\s]+$",
        example = "ada@example.com"
    )]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    pub password: Password,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The organization the new user will own.
    #[schema(min_length = 1, max_length = 200)]
    pub organization_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// What `api.auth_register` returns.
#[derive(Deserialize)]
struct Registered {
    user: User,
    organization: Organization,
}

/// The new user, their organization and a token pair, side by side.
#[derive(Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user: User,
    pub organization: Organization,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// A response that carries credentials: no cache may keep it (RFC 6749 §5.1).
pub struct NoStore<T>(pub T);

impl<T: IntoResponse> IntoResponse for NoStore<T> {
    fn into_response(self) -> Response {
        (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            self.0,
        )
            .into_response()
    }
}

fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong email or password",
    )
}

/// Counts a login or registration attempt (per client address, then per
/// email by the database's key, in the database so every instance shares the
/// counts): the quota for the answer's `RateLimit-*` headers, or the 429.
async fn count_attempt(
    app: &AppState,
    address: Option<IpAddr>,
    email: &str,
) -> Result<Quota, Response> {
    let address = address.map(|a| a.to_string()).unwrap_or_default();
    let json = app
        .db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_attempt",
            &[
                ("p_address", &address),
                ("p_email", &email),
                (
                    "p_address_limit",
                    &(app.config.auth_attempts_per_address as i32),
                ),
                (
                    "p_email_limit",
                    &(app.config.auth_attempts_per_email as i32),
                ),
            ],
        )
        .await
        .map_err(|e| AppError::from(e).into_response())?;
    let attempt: Attempt = parse(json).map_err(IntoResponse::into_response)?;
    if attempt.allowed {
        Ok(attempt.quota)
    } else {
        Err(with_quota(
            rate_limited(attempt.quota).into_response(),
            attempt.quota,
        ))
    }
}

/// 429 `rate_limited` with `Retry-After`.
fn rate_limited(quota: Quota) -> Problem {
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many attempts; try again later",
    );
    p.retry_after = Some(quota.reset);
    p
}

fn with_quota(mut response: Response, quota: Quota) -> Response {
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_LIMIT, quota.limit.into());
    headers.insert(RATELIMIT_REMAINING, quota.remaining.into());
    headers.insert(RATELIMIT_RESET, quota.reset.into());
    response
}

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn tokens(app: &AppState, user_id: Uuid, refresh_token: String) -> AppResult<TokenPair> {
    Ok(TokenPair {
        access_token: app.tokens.access_token(user_id)?,
        refresh_token,
        token_type: "bearer",
        expires_in: app.tokens.access_ttl.as_secs(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(json: Option<String>) -> AppResult<T> {
    let json = json.ok_or_else(|| anyhow::anyhow!("the database returned no result"))?;
    Ok(serde_json::from_str(&json).map_err(anyhow::Error::from)?)
}

/// Register a user with an organization of their own.
#[utoipa::path(post, operation_id = "auth_register",
    path = "/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; the caller owns the new organization", body = RegisterResponse),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered (any case): `users_email_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Response {
    match count_attempt(&app, addr, &req.email).await {
        Ok(quota) => with_quota(register_attempt(&app, req).await.into_response(), quota),
        Err(refused) => refused,
    }
}

/// After the attempt was counted: a refused attempt never costs a hash.
async fn register_attempt(
    app: &AppState,
    req: RegisterRequest,
) -> AppResult<Created<NoStore<Json<RegisterResponse>>>> {
    let hashed = hash_password(req.password.0).await?;
    let (refresh, refresh_hash) = new_refresh_token();
    let expires = app.tokens.refresh_expires_at();
    let json = app
        .db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_register",
            &[
                ("p_email", &req.email),
                ("p_hashed_password", &hashed),
                ("p_name", &req.name),
                ("p_organization_name", &req.organization_name),
                ("p_refresh_hash", &refresh_hash),
                ("p_refresh_expires_at", &expires),
            ],
        )
        .await?;
    let Registered { user, organization } = parse(json)?;
    let tokens = tokens(app, user.id, refresh)?;
    Ok(Created {
        location: "/api/v1/users/me".to_owned(),
        body: NoStore(Json(RegisterResponse {
            user,
            organization,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: tokens.token_type,
            expires_in: tokens.expires_in,
        })),
    })
}

/// What `api.auth_login_credentials` returns: the user with the address's
/// key, if any.
#[derive(Deserialize)]
struct Credentials {
    user_id: Option<Uuid>,
    hashed_password: Option<String>,
}

/// Log in with email and password.
#[utoipa::path(post, operation_id = "auth_login",
    path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenPair),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong email or password (the same answer for both): `invalid_credentials`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Response {
    match count_attempt(&app, addr, &req.email).await {
        Ok(quota) => with_quota(login_attempt(&app, req).await.into_response(), quota),
        Err(refused) => refused,
    }
}

/// After the attempt was counted: a refused attempt never costs a verification.
async fn login_attempt(app: &AppState, req: LoginRequest) -> AppResult<NoStore<Json<TokenPair>>> {
    let json = app
        .db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_login_credentials",
            &[("p_email", &req.email)],
        )
        .await?;
    let credentials: Credentials = parse(json)?;
    if !verify_password(req.password, credentials.hashed_password, app.dummy_hash).await {
        return Err(invalid_credentials().into());
    }
    let user_id = credentials.user_id.ok_or_else(invalid_credentials)?;
    let (refresh, refresh_hash) = new_refresh_token();
    let expires = app.tokens.refresh_expires_at();
    app.db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_session_start",
            &[
                ("p_user_id", &user_id),
                ("p_refresh_hash", &refresh_hash),
                ("p_refresh_expires_at", &expires),
            ],
        )
        .await?;
    Ok(NoStore(Json(tokens(app, user_id, refresh)?)))
}

#[derive(Deserialize)]
struct Rotation {
    outcome: String,
    user_id: Option<Uuid>,
}

/// Exchange a refresh token for a new token pair.
#[utoipa::path(post, operation_id = "auth_refresh",
    path = "/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access and refresh token; the presented refresh token stops working", body = TokenPair),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown, expired or revoked refresh token (`invalid_refresh_token`), or an already-used one, which revokes the whole login (`refresh_token_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> AppResult<NoStore<Json<TokenPair>>> {
    let (refresh, new_hash) = new_refresh_token();
    let expires = app.tokens.refresh_expires_at();
    let json = app
        .db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_refresh",
            &[
                ("p_refresh_hash", &refresh_token_hash(&req.refresh_token)),
                ("p_new_refresh_hash", &new_hash),
                ("p_refresh_expires_at", &expires),
            ],
        )
        .await?;
    let rotation: Rotation = parse(json)?;
    match (rotation.outcome.as_str(), rotation.user_id) {
        ("ok", Some(user_id)) => Ok(NoStore(Json(tokens(&app, user_id, refresh)?))),
        ("reused", _) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "refresh_token_reused",
            "this refresh token was already used; the whole login has been revoked",
        )
        .into()),
        _ => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "the refresh token is invalid, expired or revoked",
        )
        .into()),
    }
}

/// Revoke the login of a refresh token.
#[utoipa::path(post, operation_id = "auth_logout",
    path = "/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The login of this refresh token is revoked (also when it was unknown)"),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> AppResult<StatusCode> {
    app.db
        .call(
            Ctx::ANONYMOUS,
            "api.auth_logout",
            &[("p_refresh_hash", &refresh_token_hash(&req.refresh_token))],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}
