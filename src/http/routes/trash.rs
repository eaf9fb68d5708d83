//! /trash: what `DELETE /contacts|deals|tasks/{id}` moved there, restoring
//! and erasing for good (SPEC §11, README "Trash"). The rules are the
//! database's (sql/functions/44_trash.sql and the rule triggers).

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{contacts::Contact, deals::Deal, list_query, tasks::Task, ListPage};
use crate::{
    http::cursor::Fingerprint,
    http::etag::Versioned,
    http::extract::{ApiPath, ApiQuery, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    state::AppState,
};

/// The kinds of record the trash holds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrashType {
    Contact,
    Deal,
    Task,
}

impl TrashType {
    fn name(self) -> &'static str {
        match self {
            TrashType::Contact => "contact",
            TrashType::Deal => "deal",
            TrashType::Task => "task",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TrashItem {
    #[serde(rename = "type")]
    pub kind: TrashType,
    pub id: Uuid,
    /// The contact's name, the deal's or task's title.
    pub name_or_title: String,
    #[schema(format = DateTime)]
    pub deleted_at: String,
    /// Who deleted it (null once that user is gone).
    pub deleted_by: Option<Uuid>,
}

/// A restored record, as its GET shows it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Restored {
    Contact(Contact),
    Deal(Deal),
    Task(Task),
}

list_query! {
    pub struct TrashQuery {
        /// One kind of record; all three when absent.
        #[serde(rename = "type")]
        #[param(rename = "type")]
        pub kind: Option<TrashType>,
    }
}

/// List the trash.
#[utoipa::path(get, operation_id = "trash_list",
    path = "/trash", tag = "trash",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, TrashQuery),
    responses(
        (status = 200, description = "Newest first (by `deleted_at`, ties broken by id); every role reads it", body = ListPage<TrashItem>),
        (status = 400, description = "Bad query value or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<TrashQuery>,
) -> AppResult<JsonText> {
    let kind = q.kind.map(TrashType::name);
    let query = Fingerprint::of("trash").with_opt("type", kind).done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.trash_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_type", &kind),
                ("p_after_deleted_at", &paging.after_key::<DateTime<Utc>>()?),
                ("p_after_id", &paging.after_id()),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// Restore a record from the trash.
#[utoipa::path(post, operation_id = "trash_restore",
    path = "/trash/{type}/{id}/restore", tag = "trash",
    security(("bearer" = [])),
    params(crate::http::routes::OrgHeader, ("type" = TrashType, Path), ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Restored: the record, as its GET shows it, with its `ETag` (trashing and restoring each count as a change of its version); a deal brings back the tasks trashed with it", body = Restored),
        (status = 400, description = "An unknown type or a bad id (`invalid_path_parameter`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member restoring another member's record (the delete rules): `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in this organization's trash: `contact_not_found`, `deal_not_found`, `task_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its parent (a deal's contact, a task's deal) is in the trash: `parent_in_trash`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restore(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath((kind, id)): ApiPath<(TrashType, Uuid)>,
) -> AppResult<Versioned> {
    let args: &[crate::db::Arg] = &[("p_type", &kind.name()), ("p_id", &id)];
    let json = Versioned::call(&app.db, ctx, "api.trash_restore", args).await?;
    if matches!(kind, TrashType::Deal) {
        app.deals_changed(ctx); // the deal counts in the analytics again
    }
    Ok(json)
}

/// Erase a record in the trash for good.
#[utoipa::path(delete, operation_id = "trash_erase",
    path = "/trash/{type}/{id}", tag = "trash",
    security(("bearer" = [])),
    params(crate::http::routes::OrgHeader, ("type" = TrashType, Path), ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Erased; a deal with its tasks, timeline and stage history"),
        (status = 400, description = "An unknown type or a bad id (`invalid_path_parameter`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in this organization's trash: `contact_not_found`, `deal_not_found`, `task_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A contact that still has deals (in the trash too): `contact_has_deals`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn erase(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath((kind, id)): ApiPath<(TrashType, Uuid)>,
) -> AppResult<StatusCode> {
    app.db
        .call(
            ctx,
            "api.trash_erase",
            &[("p_type", &kind.name()), ("p_id", &id)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(restore))
        .routes(routes!(erase))
}
