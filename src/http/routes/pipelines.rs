//! /pipelines and their stages (SPEC §9): everyone reads, owner/admin manage
//! (the database decides, 403 `role_forbidden`). A stage has no URL of its
//! own to read: its writes answer with the whole pipeline, whose positions
//! they may have shifted.

use axum::{extract::State, http::StatusCode, response::Response};
use postgres_types::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    http::etag::{IfMatch, IfNoneMatch, Versioned},
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::problem::{AppResult, Problem},
    http::routes::analytics::NoQuery,
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Stage {
    /// What deals, activities and clients refer to; it never changes.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "proposal")]
    pub key: String,
    pub name: String,
    /// 1..n within the pipeline.
    #[schema(minimum = 1)]
    pub position: i32,
    /// The chance, in percent, that a deal in this stage is won.
    #[schema(minimum = 0, maximum = 100)]
    pub probability: i32,
}

#[derive(Serialize, ToSchema)]
pub struct Pipeline {
    pub id: Uuid,
    pub name: String,
    /// 1..n within the organization.
    #[schema(minimum = 1)]
    pub position: i32,
    /// In position order.
    pub stages: Vec<Stage>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Also moves when its stages change.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// 1 on creation, +1 on every change, a change of its stages included
    /// (once per request); the `ETag` header is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i32,
}

#[derive(Serialize, ToSchema)]
pub struct Pipelines {
    /// In position order.
    pub items: Vec<Pipeline>,
}

/// A stage of a new pipeline.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStage {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "proposal")]
    pub key: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(minimum = 0, maximum = 100)]
    pub probability: i32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPipeline {
    /// Unique in the organization, whatever the case.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// At least one; their positions follow the array, each key once.
    #[schema(min_items = 1)]
    pub stages: Vec<NewStage>,
}

/// Only the fields given change (null means "not given").
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelinePatch {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// 1..n; the pipelines in between shift.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPipelineStage {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "demo")]
    pub key: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(minimum = 0, maximum = 100)]
    pub probability: i32,
    /// 1..n+1 (default: last); the later stages shift.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
}

/// Only the fields given change (null means "not given"); the key never does.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StagePatch {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(minimum = 0, maximum = 100)]
    pub probability: Option<i32>,
    /// 1..n; the stages in between shift.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
}

/// The organization's pipelines.
#[utoipa::path(get, operation_id = "pipelines_list",
    path = "/pipelines", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    responses(
        (status = 200, description = "Every pipeline with its stages, by position", body = Pipelines),
        (status = 400, description = "A bad header or an unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(_no_parameters): ApiQuery<NoQuery>,
) -> AppResult<JsonText> {
    JsonText::call(&app.db, ctx, "api.pipelines_list", &[]).await
}

/// Create a pipeline (owner or admin); it comes last.
#[utoipa::path(post, operation_id = "pipelines_create",
    path = "/pipelines", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = NewPipeline,
    responses(
        (status = 201, description = "Created, with its stages", body = Pipeline),
        (status = 400, description = "No stages (`stages_required`), a key twice (`stage_key_duplicate`), a bad key, name or probability (`pipeline_stages_key_invalid`, `pipeline_stages_name_invalid`, `pipeline_stages_probability_invalid`: field `stages[i].<field>`), a blank name (`pipelines_name_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (any case): `pipelines_name_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(p): ApiJson<NewPipeline>,
) -> AppResult<Created<Versioned>> {
    let stages = serde_json::to_value(&p.stages).map_err(anyhow::Error::from)?;
    let json = app
        .db
        .call(
            ctx,
            "api.pipelines_create",
            &[("p_name", &p.name), ("p_stages", &Json(&stages))],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::created(json, "/api/v1/pipelines", "id")
}

/// Get a pipeline.
#[utoipa::path(get, operation_id = "pipelines_get",
    path = "/pipelines/{id}", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfNoneMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The pipeline with its stages", body = Pipeline),
        (status = 404, description = "Not found in this organization: `pipeline_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    condition: IfNoneMatch,
) -> AppResult<Response> {
    Ok(
        Versioned::call(&app.db, ctx, "api.pipelines_get", &[("p_id", &id)])
            .await?
            .unless(&condition),
    )
}

/// Rename or move a pipeline (owner or admin).
#[utoipa::path(patch, operation_id = "pipelines_update",
    path = "/pipelines/{id}", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    request_body = PipelinePatch,
    responses(
        (status = 200, description = "Updated", body = Pipeline),
        (status = 400, description = "A position outside 1..n (`position_out_of_range`), a blank name (`pipelines_name_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `pipeline_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (any case): `pipelines_name_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<PipelinePatch>,
) -> AppResult<Versioned> {
    let json = app
        .db
        .call(
            ctx,
            "api.pipelines_update",
            &[
                ("p_id", &id),
                ("p_name", &p.name),
                ("p_position", &p.position),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::from_db(json)
}

/// Delete a pipeline (owner or admin) with its stages; the later ones shift.
#[utoipa::path(delete, operation_id = "pipelines_delete",
    path = "/pipelines/{id}", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `pipeline_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It holds deals (`pipeline_has_deals`), or it is the organization's last (`last_pipeline`)", body = Problem, content_type = "application/problem+json"),
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
            "api.pipelines_delete",
            &[("p_id", &id), ("p_if_match", &if_match)],
        )
        .await?;
    app.deals_changed(ctx);
    Ok(StatusCode::NO_CONTENT)
}

/// Add a stage (owner or admin).
#[utoipa::path(post, operation_id = "pipeline_stages_create",
    path = "/pipelines/{id}/stages", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path, description = "The pipeline")),
    request_body = NewPipelineStage,
    responses(
        (status = 201, description = "Added; the answer (and `Location`) is the pipeline, whose later stages shifted", body = Pipeline),
        (status = 400, description = "A position outside 1..n+1 (`position_out_of_range`), a bad key, name or probability (`pipeline_stages_key_invalid`, `pipeline_stages_name_invalid`, `pipeline_stages_probability_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `pipeline_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The pipeline has a stage with this key: `pipeline_stages_key_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stages_create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(s): ApiJson<NewPipelineStage>,
) -> AppResult<Created<Versioned>> {
    let json = app
        .db
        .call(
            ctx,
            "api.pipeline_stages_create",
            &[
                ("p_pipeline_id", &id),
                ("p_key", &s.key),
                ("p_name", &s.name),
                ("p_probability", &s.probability),
                ("p_position", &s.position),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::created(json, "/api/v1/pipelines", "id")
}

/// Change a stage: name, probability, position (owner or admin).
#[utoipa::path(patch, operation_id = "pipeline_stages_update",
    path = "/pipelines/{id}/stages/{key}", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path, description = "The pipeline"), ("key" = String, Path, description = "The stage's key")),
    request_body = StagePatch,
    responses(
        (status = 200, description = "Changed; the answer is the pipeline, whose stages in between shifted", body = Pipeline),
        (status = 400, description = "A position outside 1..n (`position_out_of_range`), a bad name or probability", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pipeline (`pipeline_not_found`) or stage (`stage_not_found`) in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stages_update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath((id, key)): ApiPath<(Uuid, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(s): ApiJson<StagePatch>,
) -> AppResult<Versioned> {
    let json = app
        .db
        .call(
            ctx,
            "api.pipeline_stages_update",
            &[
                ("p_pipeline_id", &id),
                ("p_key", &key),
                ("p_name", &s.name),
                ("p_probability", &s.probability),
                ("p_position", &s.position),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::from_db(json)
}

/// Delete a stage (owner or admin); the later ones shift.
#[utoipa::path(delete, operation_id = "pipeline_stages_delete",
    path = "/pipelines/{id}/stages/{key}", tag = "pipelines",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path, description = "The pipeline"), ("key" = String, Path, description = "The stage's key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pipeline (`pipeline_not_found`) or stage (`stage_not_found`) in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deals are in it (`stage_has_deals`), or it is the pipeline's last (`last_stage`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stages_delete(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath((id, key)): ApiPath<(Uuid, String)>,
    IfMatch(if_match): IfMatch,
) -> AppResult<StatusCode> {
    app.db
        .call(
            ctx,
            "api.pipeline_stages_delete",
            &[
                ("p_pipeline_id", &id),
                ("p_key", &key),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(list, create)))
        .routes(routes!(get, update, delete))
        .routes(crate::http::idempotency::idempotent(routes!(stages_create)))
        .routes(routes!(stages_update, stages_delete))
}
