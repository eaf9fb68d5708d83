//! The HTTP layer: the router, its middleware, extractors, problems, the
//! OpenAPI document and one module per resource.

pub mod cache;
pub mod cursor;
pub mod extract;
pub mod list;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod serve;

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    http::{problem::Problem, routes::*},
    ops::config::CorsOrigins,
    state::AppState,
};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longer request targets are refused with 414 (`uri_too_long`). hyper itself
/// refuses targets over 64 KiB, with an empty 414, before we see them.
pub const MAX_URI: usize = 8 * 1024;
/// More request headers than this, or more than [`MAX_HEADER_BYTES`] of
/// them, are refused with 431 (`headers_too_large`).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every route, each registered with its OpenAPI operation: a route cannot
/// exist undocumented, and the document's paths are the router's paths.
pub fn registry() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(organizations::router())
        .merge(invitations::router())
        .merge(contacts::router())
        .merge(pipelines::router())
        .merge(deals::router())
        .merge(activities::router())
        .merge(tasks::router())
        .merge(analytics::router());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(health::router())
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = registry().split_for_parts();
    openapi::finish(doc)
}

/// The whole HTTP application, so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    let request_timeout = state.config.request_timeout;
    let (routes, doc) = registry().split_for_parts();
    let mut router = routes
        .merge(openapi::docs(openapi::finish(doc)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // tower-http's TimeoutLayer answers with an empty body; ours is a problem.
        .layer(middleware::from_fn(move |req, next| {
            time_limit(request_timeout, req, next)
        }))
        .layer(compression());
    // Preflights are answered before routing (no 405 for OPTIONS).
    if let Some(origins) = &state.config.cors_allowed_origins {
        router = router.layer(cors(origins));
    }
    // Outermost, so the request id, the span, the metrics and the log line
    // cover every answer, the timeout's, the preflights' and the fallbacks'.
    router
        .layer(middleware::from_fn(limit_head))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::ops::metrics::observe,
        ))
        .with_state(state)
}

/// gzip or br when the client accepts it; tower-http's default predicate
/// never compresses `text/event-stream` (nor images, gRPC, bodies under 32 bytes).
pub fn compression() -> CompressionLayer {
    CompressionLayer::new().gzip(true).br(true)
}

/// CORS for browser front ends on the configured origins. Tokens travel in
/// `Authorization`, never in cookies, so credentials are not allowed.
fn cors(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        // `*` is never sent (SPEC §15): any origin is echoed back, with `Vary: Origin`.
        CorsOrigins::Any => AllowOrigin::mirror_request(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static(extract::ORG_HEADER),
            crate::ops::metrics::REQUEST_ID,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            crate::ops::metrics::REQUEST_ID,
            routes::auth::RATELIMIT_LIMIT,
            routes::auth::RATELIMIT_REMAINING,
            routes::auth::RATELIMIT_RESET,
            HeaderName::from_static("x-cache"),
        ])
        .max_age(Duration::from_secs(3600))
}

/// 414 and 431 as problems. hyper answers these itself, with an empty body,
/// only past its own (higher) limits: 64 KiB of target, 400 headers
/// (`serve`), ~400 KiB of head.
async fn limit_head(req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > MAX_URI {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {MAX_URI} bytes"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "at most {MAX_HEADERS} request headers of at most {MAX_HEADER_BYTES} bytes in all"
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// A request that takes longer than `limit` is answered 503 rather than left
/// hanging; the database's statement_timeout bounds any work left behind.
async fn time_limit(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took too long; try again",
        )
        .into_response(),
    }
}

async fn not_found() -> impl IntoResponse {
    Problem::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
