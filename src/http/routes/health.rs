//! Service endpoints: liveness, readiness and metrics.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{http::problem::AppResult, state::AppState};

/// Liveness: the process is up.
#[utoipa::path(get, operation_id = "health_live",
    path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, operation_id = "health_ready",
    path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database answers"),
        (status = 503, description = "The database is unreachable", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(app): State<AppState>) -> AppResult<(StatusCode, Json<Value>)> {
    app.db.ping().await?;
    Ok((StatusCode::OK, Json(json!({ "status": "ready" }))))
}

/// GET /metrics: Prometheus text format.
#[utoipa::path(get, operation_id = "metrics_get",
    path = "/metrics", tag = "health",
    responses((status = 200, description = "Request counters and durations by route, \
        connection pool gauges and database errors by kind, in the Prometheus text \
        exposition format (version 0.0.4)", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(app.db.status()),
    )
        .into_response()
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}
