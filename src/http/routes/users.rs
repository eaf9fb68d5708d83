//! GET /users/me.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    db::Ctx,
    http::extract::{AuthUser, JsonText},
    http::problem::AppResult,
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

/// The calling user.
#[utoipa::path(get, operation_id = "users_me",
    path = "/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
    ))]
pub async fn me(State(app): State<AppState>, AuthUser(user): AuthUser) -> AppResult<JsonText> {
    JsonText::call(&app.db, Ctx::user(user), "api.users_me", &[]).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}
