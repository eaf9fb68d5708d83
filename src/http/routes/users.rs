//! GET /users/me.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    db::Ctx,
    http::extract::{AuthUser, JsonText},
    http::problem::{AppResult, Problem},
    state::AppState,
};

#[derive(Deserialize, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "Missing, invalid or expired access token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(app): State<AppState>, AuthUser(user): AuthUser) -> AppResult<JsonText> {
    let json = app.db.call(Ctx::user(user), "api.users_me()", &[]).await?;
    JsonText::from_db(json)
}
