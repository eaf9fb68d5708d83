//! The HTTP layer: the router, its middleware, extractors, problems, the
//! OpenAPI document and one module per resource.

pub mod cache;
pub mod extract;
pub mod openapi;
pub mod problem;
pub mod routes;

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    http::{problem::Problem, routes::*},
    state::AppState,
};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route, each registered with its OpenAPI operation: a route cannot
/// exist undocumented, and the document's paths are the router's paths.
pub fn registry() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(organizations::router())
        .merge(contacts::router())
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
    routes
        .merge(openapi::docs(openapi::finish(doc)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(move |req, next| {
            time_limit(request_timeout, req, next)
        }))
        // Outermost, so the request id, the span, the metrics and the log line
        // cover every answer, the timeout's and the fallbacks' included.
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::ops::metrics::observe,
        ))
        .with_state(state)
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
