//! /deals/{deal_id}/activities: the deal's timeline, and comments on it.

use axum::extract::State;
use postgres_types::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{list_query, ListPage};
use crate::{
    http::cursor::Fingerprint,
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::fields::{ActivityType, DealStatus},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Activity {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub deal_id: Uuid,
    /// Null for system events written without an acting user.
    pub author_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub type_: ActivityType,
    #[schema(value_type = ActivityPayload)]
    pub payload: Value,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// `payload` of a `comment`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"text": "Called, they want a discount"}))]
pub struct CommentPayload {
    /// Not blank (R9).
    #[schema(min_length = 1)]
    pub text: String,
}

/// `payload` of `status_changed` and `stage_changed`.
#[derive(Serialize, ToSchema)]
pub struct ChangePayload {
    pub from: String,
    pub to: String,
}

/// `payload` of `task_created`.
#[derive(Serialize, ToSchema)]
pub struct TaskCreatedPayload {
    pub task_id: Uuid,
    pub title: String,
    pub due_date: chrono::NaiveDate,
}

/// `payload` of `system`: what happened (`event`, e.g. `deal_created`) and
/// the deal's state then.
#[derive(Serialize, ToSchema)]
pub struct SystemPayload {
    #[schema(example = "deal_created")]
    pub event: String,
    pub status: Option<DealStatus>,
    pub pipeline_id: Option<Uuid>,
    /// The stage's key.
    pub stage: Option<String>,
}

/// Where a deal is: its pipeline and the key of its stage.
#[derive(Serialize, ToSchema)]
pub struct PipelinePlace {
    pub pipeline_id: Uuid,
    pub stage: String,
}

/// `payload` of `pipeline_changed`: the deal moved to another pipeline.
#[derive(Serialize, ToSchema)]
pub struct PipelineChangePayload {
    pub from: PipelinePlace,
    pub to: PipelinePlace,
}

/// The payload, by the activity's `type`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only: payloads pass through from the database
pub enum ActivityPayload {
    Comment(CommentPayload),
    Change(ChangePayload),
    PipelineChange(PipelineChangePayload),
    TaskCreated(TaskCreatedPayload),
    System(SystemPayload),
}

list_query! {
    pub struct ActivityQuery {
    }
}

/// Only `comment` can be created (R9), with a non-empty `payload.text`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewActivity {
    #[serde(rename = "type")]
    pub type_: ActivityType,
    #[schema(value_type = CommentPayload)]
    pub payload: Value,
}

/// A deal's timeline, newest first.
#[utoipa::path(get, operation_id = "activities_list",
    path = "/deals/{id}/activities", tag = "activities",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The deal"), ActivityQuery),
    responses(
        (status = 200, description = "Newest first", body = ListPage<Activity>),
        (status = 400, description = "Malformed id, query or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Deal not found in this organization: `deal_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor` or `search`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(deal_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ActivityQuery>,
) -> AppResult<JsonText> {
    let query = Fingerprint::of("activities")
        .with("deal_id", deal_id)
        .done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.activities_list",
            &[
                ("p_deal_id", &deal_id),
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

/// Comment on a deal.
#[utoipa::path(post, operation_id = "activities_create",
    path = "/deals/{id}/activities", tag = "activities",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The deal")),
    request_body = NewActivity,
    responses(
        (status = 201, description = "The comment, authored by the caller", body = Activity),
        (status = 400, description = "Not a comment (`activity_type_forbidden`) or no text (`comment_text_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Deal not found in this organization: `activities_deal_id_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(deal_id): ApiPath<Uuid>,
    ApiJson(a): ApiJson<NewActivity>,
) -> AppResult<Created<JsonText>> {
    let json = app
        .db
        .call(
            ctx,
            "api.activities_create",
            &[
                ("p_deal_id", &deal_id),
                ("p_type", &a.type_),
                ("p_payload", &Json(&a.payload)),
            ],
        )
        .await?;
    // There is no URL per activity: the Location is the timeline it is on.
    Ok(Created {
        location: format!("/api/v1/deals/{deal_id}/activities"),
        body: JsonText::from_db(json)?,
    })
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(crate::http::idempotency::idempotent(routes!(list, create)))
}
