//! Service endpoints: liveness and readiness.

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use crate::{error::AppResult, state::AppState};

#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "The database answers"),
        (status = 503, description = "The database is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(app): State<AppState>) -> AppResult<(StatusCode, Json<Value>)> {
    app.db.ping().await?;
    Ok((StatusCode::OK, Json(json!({ "status": "ready" }))))
}
