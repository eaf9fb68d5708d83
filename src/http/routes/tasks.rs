//! /tasks: list, create, get, partial update, delete. A task belongs to its
//! deal's owner.

use axum::{extract::State, http::StatusCode, response::Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{events::Event, history::HistoryQuery};
use crate::http::routes::{list_query, ListPage};
use crate::{
    http::cursor::Fingerprint,
    http::etag::{IfMatch, IfNoneMatch, Versioned},
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::bulk::{batch_created, Batch, BatchCreated},
    http::routes::fields::{present, present_fields},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub deal_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub due_date: NaiveDate,
    pub is_done: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// 1 on creation, +1 on every change; the `ETag` header is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i32,
}

list_query! {
    pub struct TaskQuery {
        pub deal_id: Option<Uuid>,
        /// Only tasks not done.
        #[serde(default)]
        pub only_open: bool,
        /// Due on or before this date.
        pub due_before: Option<NaiveDate>,
        /// Due on or after this date.
        pub due_after: Option<NaiveDate>,
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub deal_id: Uuid,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Today (UTC) or later (R4).
    pub due_date: NaiveDate,
}

/// Only the fields present change; `description` may be set to null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub due_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub is_done: Option<Option<bool>>,
}

/// List tasks.
#[utoipa::path(get, operation_id = "tasks_list",
    path = "/tasks", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, TaskQuery),
    responses(
        (status = 200, description = "Soonest due first, ties broken by id", body = ListPage<Task>),
        (status = 400, description = "Bad query value (a bad date, page_size > 100, ...) or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor` or `search`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> AppResult<JsonText> {
    let query = Fingerprint::of("tasks")
        .with_opt("deal_id", q.deal_id)
        .with("only_open", q.only_open)
        .with_opt("due_before", q.due_before)
        .with_opt("due_after", q.due_after)
        .done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.tasks_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_deal_id", &q.deal_id),
                ("p_only_open", &q.only_open),
                ("p_due_before", &q.due_before),
                ("p_due_after", &q.due_after),
                ("p_after_due_date", &paging.after_key::<NaiveDate>()?),
                ("p_after_id", &paging.after_id()),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// Create a task.
#[utoipa::path(post, operation_id = "tasks_create",
    path = "/tasks", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = NewTask,
    responses(
        (status = 201, description = "Created; a `task_created` row joins the deal's timeline", body = Task),
        (status = 400, description = "Validation failed, or due_date in the past (R4): `tasks_due_date_past`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member adding a task to another user's deal (R3): `deal_not_owned`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The deal is not in this organization: `tasks_deal_id_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(t): ApiJson<NewTask>,
) -> AppResult<Created<Versioned>> {
    let json = app
        .db
        .call(
            ctx,
            "api.tasks_create",
            &[
                ("p_deal_id", &t.deal_id),
                ("p_title", &t.title),
                ("p_description", &t.description),
                ("p_due_date", &t.due_date),
            ],
        )
        .await?;
    Versioned::created(json, "/api/v1/tasks", "id")
}

/// Create up to 100 tasks, all or nothing.
#[utoipa::path(post, operation_id = "tasks_batch",
    path = "/tasks/batch", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = Batch<NewTask>,
    responses(
        (status = 201, description = "Every item created, in order, each with its `task_created` timeline row", body = BatchCreated<Task>,
         headers(("Location" = String, description = "The collection the tasks were created in"))),
        (status = 400, description = "No items or more than 100 (`batch_size_invalid`), or an item failed validation: its error, `errors[].field` prefixed with its place (`items[3].due_date` for R4 `tasks_due_date_past`); nothing was created", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member adding a task to another user's deal (R3): `deal_not_owned`, field `items[n].deal_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or an item's deal is not in this organization: `tasks_deal_id_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(b): ApiJson<Batch<NewTask>>,
) -> AppResult<Created<JsonText>> {
    let items = b.to_json()?;
    let json = app
        .db
        .call(ctx, "api.tasks_batch", &[("p_items", &Json(&items))])
        .await?;
    batch_created(json, "/api/v1/tasks")
}

/// Get a task.
#[utoipa::path(get, operation_id = "tasks_get",
    path = "/tasks/{id}", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfNoneMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "Not found in this organization: `task_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    condition: IfNoneMatch,
) -> AppResult<Response> {
    Ok(
        Versioned::call(&app.db, ctx, "api.tasks_get", &[("p_id", &id)])
            .await?
            .unless(&condition),
    )
}

/// Update a task (only the fields given).
#[utoipa::path(patch, operation_id = "tasks_update",
    path = "/tasks/{id}", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    request_body = TaskPatch,
    responses(
        (status = 200, description = "Updated", body = Task),
        (status = 400, description = "Validation failed, or a changed due_date in the past (R4)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member changing a task of another user's deal: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<TaskPatch>,
) -> AppResult<Versioned> {
    let fields = present_fields([
        ("title", p.title.is_some()),
        ("description", p.description.is_some()),
        ("due_date", p.due_date.is_some()),
        ("is_done", p.is_done.is_some()),
    ]);
    let json = app
        .db
        .call(
            ctx,
            "api.tasks_update",
            &[
                ("p_id", &id),
                ("p_fields", &fields),
                ("p_title", &p.title.flatten()),
                ("p_description", &p.description.flatten()),
                ("p_due_date", &p.due_date.flatten()),
                ("p_is_done", &p.is_done.flatten()),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    Versioned::from_db(json)
}

/// Delete a task.
#[utoipa::path(delete, operation_id = "tasks_delete",
    path = "/tasks/{id}", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A member deleting a task of another user's deal: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
) -> AppResult<StatusCode> {
    app.db
        .call(
            ctx,
            "api.tasks_delete",
            &[("p_id", &id), ("p_if_match", &if_match)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A task's history: its events, newest first: who changed what, when,
/// and from which value (SPEC §13).
#[utoipa::path(get, operation_id = "tasks_history",
    path = "/tasks/{id}/history", tag = "tasks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The task"), HistoryQuery),
    responses(
        (status = 200, description = "The task's events, newest first", body = ListPage<Event>),
        (status = 400, description = "Malformed id, query or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Task not found in this organization: `task_not_found` (one in the trash still has its history)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> AppResult<JsonText> {
    crate::http::routes::history::page(&app, ctx, "api.tasks_history", id, q).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(list, create)))
        .routes(routes!(get, update, delete))
        .routes(crate::http::idempotency::idempotent(routes!(batch)))
        .routes(routes!(history))
}
