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
    routing::{get, patch, post},
    Router,
};

use crate::{
    http::{problem::Problem, routes::*},
    state::AppState,
};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The whole HTTP application, so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    let request_timeout = state.config.request_timeout;
    let api = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/users/me", get(users::me))
        .route("/organizations", post(organizations::create))
        .route("/organizations/me", get(organizations::mine))
        .route(
            "/organizations/{org_id}",
            get(organizations::get)
                .patch(organizations::rename)
                .delete(organizations::delete),
        )
        .route(
            "/organizations/{org_id}/members",
            get(organizations::members).post(organizations::add_member),
        )
        .route(
            "/organizations/{org_id}/members/{user_id}",
            patch(organizations::change_role).delete(organizations::remove_member),
        )
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route(
            "/contacts/{id}",
            get(contacts::get)
                .patch(contacts::update)
                .delete(contacts::delete),
        )
        .route("/deals", get(deals::list).post(deals::create))
        .route(
            "/deals/{id}",
            get(deals::get).patch(deals::update).delete(deals::delete),
        )
        .route(
            "/deals/{id}/activities",
            get(activities::list).post(activities::create),
        )
        .route("/analytics/deals/summary", get(analytics::summary))
        .route("/analytics/deals/funnel", get(analytics::funnel))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/tasks/{id}",
            get(tasks::get).patch(tasks::update).delete(tasks::delete),
        );

    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(openapi::routes())
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
