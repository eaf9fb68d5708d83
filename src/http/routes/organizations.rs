//! Organizations and their members (SPEC §3, §5). The role rules are enforced
//! by the database (sql/functions/20_organizations.sql); these handlers only
//! check the shape of requests. Adding a member is an invitation (SPEC §16,
//! `invitations::create`, registered here beside the members list).

use axum::{extract::State, http::StatusCode};
use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    db::Ctx,
    http::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, Created, JsonText},
    http::problem::{AppResult, Problem},
    state::AppState,
};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, ToSql, FromSql, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[postgres(name = "member_role", rename_all = "snake_case")]
pub enum MemberRole {
    Owner,
    Admin,
    Manager,
    Member,
}

impl crate::db::param::Typed for MemberRole {
    const WIRE: crate::db::param::Wire = crate::db::param::custom("crm.member_role");
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The caller's role in it.
    pub role: MemberRole,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationList {
    pub items: Vec<Organization>,
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: MemberRole,
    /// When the user joined the organization.
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationRequest {
    /// Not blank; surrounding white space is trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    pub role: MemberRole,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveMemberQuery {
    /// The member who receives the removed member's contacts and deals.
    pub reassign_to: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
pub struct OrgPath {
    /// The organization's id.
    pub org_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
pub struct MemberPath {
    pub org_id: Uuid,
    /// The member's user id.
    pub user_id: Uuid,
}

/// The caller's organizations, with the caller's role in each.
#[utoipa::path(get, operation_id = "organizations_list_mine",
    path = "/organizations/me", tag = "organizations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's organizations, with the caller's role in each", body = OrganizationList),
    ))]
pub async fn mine(State(app): State<AppState>, AuthUser(user): AuthUser) -> AppResult<JsonText> {
    JsonText::call(&app.db, Ctx::user(user), "api.organizations_mine", &[]).await
}

/// Create an organization owned by the caller.
#[utoipa::path(post, operation_id = "organizations_create",
    path = "/organizations", tag = "organizations",
    security(("bearer" = [])),
    request_body = OrganizationRequest,
    responses(
        (status = 201, description = "Created; the caller is its owner", body = Organization),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(req): ApiJson<OrganizationRequest>,
) -> AppResult<Created<JsonText>> {
    let json = app
        .db
        .call(
            Ctx::user(user),
            "api.organizations_create",
            &[("p_name", &req.name)],
        )
        .await?;
    JsonText::created(json, "/api/v1/organizations", "id")
}

/// An organization the caller belongs to.
#[utoipa::path(get, operation_id = "organizations_get",
    path = "/organizations/{org_id}", tag = "organizations",
    security(("bearer" = [])), params(OrgPath),
    responses(
        (status = 200, description = "The organization, with the caller's role", body = Organization),
        (status = 404, description = "No such organization, or the caller is not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
) -> AppResult<JsonText> {
    JsonText::call(
        &app.db,
        Ctx::org(user, path.org_id),
        "api.organizations_get",
        &[],
    )
    .await
}

/// Rename an organization.
#[utoipa::path(patch, operation_id = "organizations_update",
    path = "/organizations/{org_id}", tag = "organizations",
    security(("bearer" = [])), params(OrgPath),
    request_body = OrganizationRequest,
    responses(
        (status = 200, description = "Renamed", body = Organization),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only an owner or admin may rename: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rename(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
    ApiJson(req): ApiJson<OrganizationRequest>,
) -> AppResult<JsonText> {
    let ctx = Ctx::org(user, path.org_id);
    JsonText::call(
        &app.db,
        ctx,
        "api.organizations_rename",
        &[("p_name", &req.name)],
    )
    .await
}

/// Delete an organization with all its data.
#[utoipa::path(delete, operation_id = "organizations_delete",
    path = "/organizations/{org_id}", tag = "organizations",
    security(("bearer" = [])), params(OrgPath),
    responses(
        (status = 204, description = "Deleted, with everything in it"),
        (status = 403, description = "Only an owner may delete: `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
) -> AppResult<StatusCode> {
    app.db
        .call(Ctx::org(user, path.org_id), "api.organizations_delete", &[])
        .await?;
    app.analytics.invalidate_members(path.org_id);
    Ok(StatusCode::NO_CONTENT)
}

/// List the members of an organization.
#[utoipa::path(get, operation_id = "members_list",
    path = "/organizations/{org_id}/members", tag = "members",
    security(("bearer" = [])), params(OrgPath),
    responses(
        (status = 200, description = "Every member, oldest first", body = MemberList),
        (status = 404, description = "Not found or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn members(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
) -> AppResult<JsonText> {
    JsonText::call(
        &app.db,
        Ctx::org(user, path.org_id),
        "api.members_list",
        &[],
    )
    .await
}

/// Change a member's role.
#[utoipa::path(patch, operation_id = "members_update",
    path = "/organizations/{org_id}/members/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath),
    request_body = ChangeRoleRequest,
    responses(
        (status = 200, description = "Role changed", body = Member),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Manager or member (`role_forbidden`), or an admin making or changing an owner (`owner_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization or member not found (`member_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Demoting the last owner: `last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_role(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<MemberPath>,
    ApiJson(req): ApiJson<ChangeRoleRequest>,
) -> AppResult<JsonText> {
    let ctx = Ctx::org(user, path.org_id);
    let json = app
        .db
        .call(
            ctx,
            "api.members_set_role",
            &[("p_user_id", &path.user_id), ("p_role", &req.role)],
        )
        .await?;
    app.analytics.invalidate_members(path.org_id);
    JsonText::from_db(json)
}

/// Remove a member.
#[utoipa::path(delete, operation_id = "members_remove",
    path = "/organizations/{org_id}/members/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath, RemoveMemberQuery),
    responses(
        (status = 204, description = "Removed; their contacts and deals now belong to `reassign_to`"),
        (status = 400, description = "Malformed id or query, or reassign_to names the removed member", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Manager or member removing someone else (`role_forbidden`), or an admin removing an owner (`owner_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization, member (`member_not_found`) or reassign_to (`reassign_to_not_found`) not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last owner (`last_owner`), or a member who owns records and no reassign_to (`member_owns_records`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<MemberPath>,
    ApiQuery(query): ApiQuery<RemoveMemberQuery>,
) -> AppResult<StatusCode> {
    let ctx = Ctx::org(user, path.org_id);
    app.db
        .call(
            ctx,
            "api.members_remove",
            &[
                ("p_user_id", &path.user_id),
                ("p_reassign_to", &query.reassign_to),
            ],
        )
        .await?;
    app.analytics.invalidate_members(path.org_id);
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(create)))
        .routes(routes!(mine))
        .routes(routes!(get, rename, delete))
        .routes(crate::http::idempotency::idempotent(routes!(
            members,
            super::invitations::create
        )))
        .routes(routes!(change_role, remove_member))
}
