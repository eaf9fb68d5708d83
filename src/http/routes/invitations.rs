//! Invitations (SPEC §16): adding a member creates an invitation, which the
//! person with that address accepts or declines. The rules are the
//! database's (sql/functions/25_invitations.sql); these handlers only check
//! the shape of requests.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{list_query, ListPage};
use crate::{
    db::Ctx,
    http::cursor::Fingerprint,
    http::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, Created, JsonText},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::organizations::{Member, MemberRole, OrgPath},
    state::AppState,
};

/// What an invitation has come to. `expired`: still pending, but past
/// `expires_at`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

/// An invitation, as the organization sees it.
#[derive(Serialize, ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    /// The invited address, as given (trimmed).
    pub email: String,
    /// The role the invitee gets by accepting.
    pub role: MemberRole,
    pub status: InvitationStatus,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The user id of the member who invited (null if that user no longer exists).
    pub invited_by: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct InvitingOrganization {
    pub id: Uuid,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Inviter {
    pub name: String,
}

/// An invitation, as its invitee sees it.
#[derive(Serialize, ToSchema)]
pub struct MyInvitation {
    pub id: Uuid,
    pub organization: InvitingOrganization,
    pub role: MemberRole,
    /// Who invited (null if that user no longer exists).
    pub invited_by: Option<Inviter>,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct MyInvitationList {
    pub items: Vec<MyInvitation>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    /// The address to invite, registered or not; compared case-insensitively.
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s]+@[^@\s]+$",
        example = "ada@example.com"
    )]
    pub email: String,
    pub role: MemberRole,
}

list_query! {
    pub struct InvitationQuery {
    }
}

#[derive(Deserialize, IntoParams)]
pub struct OrgInvitationPath {
    /// The organization's id.
    pub org_id: Uuid,
    /// The invitation's id.
    pub id: Uuid,
}

#[derive(Deserialize, IntoParams)]
pub struct InvitationPath {
    /// The invitation's id.
    pub id: Uuid,
}

/// Invite someone to become a member.
///
/// Nobody becomes a member without accepting: this creates an invitation
/// that the person with this address sees at `GET /invitations`. The answer
/// is the same whether or not the address belongs to a registered user. A
/// pending invitation of the same address is replaced (revoked).
#[utoipa::path(post, operation_id = "invitations_create",
    path = "/organizations/{org_id}/members", tag = "members",
    security(("bearer" = [])), params(OrgPath),
    request_body = InvitationRequest,
    responses(
        (status = 201, description = "Invited; `Location` is the invitation", body = Invitation),
        (status = 400, description = "Malformed id, or the address is not valid (`invitations_email_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Manager or member (`role_forbidden`), or an admin granting the owner role or replacing an owner invitation (`owner_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found or not a member: `organization_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The address belongs to a member already: `already_member`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "More than 50 invitations by this organization in the last hour: `rate_limited`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
    ApiJson(req): ApiJson<InvitationRequest>,
) -> AppResult<Created<JsonText>> {
    let ttl = app.config.invitation_ttl_secs();
    let json = app
        .db
        .call(
            Ctx::org(user, path.org_id),
            "api.invitations_create",
            &[
                ("p_email", &req.email),
                ("p_role", &req.role),
                ("p_ttl_secs", &ttl),
            ],
        )
        .await?;
    JsonText::created(
        json,
        &format!("/api/v1/organizations/{}/invitations", path.org_id),
        "id",
    )
}

/// The organization's invitations, newest first (owner/admin).
#[utoipa::path(get, operation_id = "invitations_list",
    path = "/organizations/{org_id}/invitations", tag = "invitations",
    security(("bearer" = [])), params(OrgPath, InvitationQuery),
    responses(
        (status = 200, description = "Every invitation of the organization, newest first", body = ListPage<Invitation>),
        (status = 400, description = "Malformed id or query: `invalid_path_parameter`, `invalid_query_parameter`, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Manager or member: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found or not a member: `organization_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgPath>,
    ApiQuery(q): ApiQuery<InvitationQuery>,
) -> AppResult<JsonText> {
    let ctx = Ctx::org(user, path.org_id);
    let query = Fingerprint::of("invitations").done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.invitations_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                (
                    "p_after_created_at",
                    &paging.after_key::<chrono::DateTime<chrono::Utc>>()?,
                ),
                ("p_after_id", &paging.after_id()),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// One invitation of the organization (owner/admin).
#[utoipa::path(get, operation_id = "invitations_get",
    path = "/organizations/{org_id}/invitations/{id}", tag = "invitations",
    security(("bearer" = [])), params(OrgInvitationPath),
    responses(
        (status = 200, description = "The invitation", body = Invitation),
        (status = 403, description = "Manager or member: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization (`organization_not_found`) or invitation (`invitation_not_found`) not found", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgInvitationPath>,
) -> AppResult<JsonText> {
    JsonText::call(
        &app.db,
        Ctx::org(user, path.org_id),
        "api.invitations_get",
        &[("p_id", &path.id)],
    )
    .await
}

/// Revoke a pending invitation (owner/admin; an owner invitation: owner).
#[utoipa::path(delete, operation_id = "invitations_revoke",
    path = "/organizations/{org_id}/invitations/{id}", tag = "invitations",
    security(("bearer" = [])), params(OrgInvitationPath),
    responses(
        (status = 204, description = "Revoked: it can no longer be accepted"),
        (status = 403, description = "Manager or member (`role_forbidden`), or an admin revoking an owner invitation (`owner_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization (`organization_not_found`) or invitation (`invitation_not_found`) not found", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Already accepted, declined or revoked: `invitation_gone`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<OrgInvitationPath>,
) -> AppResult<StatusCode> {
    app.db
        .call(
            Ctx::org(user, path.org_id),
            "api.invitations_revoke",
            &[("p_id", &path.id)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's pending invitations, matched by the caller's email address
/// (any case), newest first. Expired ones are left out.
#[utoipa::path(get, operation_id = "invitations_list_mine",
    path = "/invitations", tag = "invitations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The invitations waiting for the caller's answer", body = MyInvitationList),
    ))]
pub async fn mine(State(app): State<AppState>, AuthUser(user): AuthUser) -> AppResult<JsonText> {
    JsonText::call(&app.db, Ctx::user(user), "api.invitations_mine", &[]).await
}

/// Accept an invitation: the caller becomes a member with the invited role.
#[utoipa::path(post, operation_id = "invitations_accept",
    path = "/invitations/{id}/accept", tag = "invitations",
    security(("bearer" = [])), params(InvitationPath),
    responses(
        (status = 200, description = "The new membership, as the members list shows it", body = Member),
        (status = 404, description = "No such invitation for the caller (another user's is the same): `invitation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller is a member of that organization already: `already_member`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired, declined, revoked or already accepted: `invitation_gone`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accept(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<InvitationPath>,
) -> AppResult<JsonText> {
    JsonText::call(
        &app.db,
        Ctx::user(user),
        "api.invitations_accept",
        &[("p_id", &path.id)],
    )
    .await
}

/// Decline an invitation.
#[utoipa::path(post, operation_id = "invitations_decline",
    path = "/invitations/{id}/decline", tag = "invitations",
    security(("bearer" = [])), params(InvitationPath),
    responses(
        (status = 204, description = "Declined"),
        (status = 404, description = "No such invitation for the caller (another user's is the same): `invitation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired, declined, revoked or already accepted: `invitation_gone`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decline(
    State(app): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(path): ApiPath<InvitationPath>,
) -> AppResult<StatusCode> {
    app.db
        .call(
            Ctx::user(user),
            "api.invitations_decline",
            &[("p_id", &path.id)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module, each registered with its OpenAPI operation.
/// `POST /organizations/{org_id}/members` shares its path with
/// `organizations::members` (GET), which is registered there.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, revoke))
        .routes(routes!(mine))
        .routes(crate::http::idempotency::idempotent(routes!(accept)))
        .routes(routes!(decline))
}
