//! /deals: list (filters, sorts, pages), create, get, partial update, delete.

use axum::{extract::State, http::StatusCode, response::Response};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{events::Event, history::HistoryQuery};
use crate::http::routes::{list_query, ListPage};
use crate::{
    http::csv::CsvFile,
    http::cursor::Fingerprint,
    http::etag::{IfMatch, IfNoneMatch, Versioned},
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::bulk::{batch_created, upserted, Batch, BatchCreated},
    http::routes::fields::{
        money_request, money_request_or_null, present, present_fields, Amount, DealStatus,
        QueryAmount,
    },
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Deal {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub contact_id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    /// Decimal string with two decimals.
    #[schema(pattern = r"^[0-9]+\.[0-9]{2}$", example = "10000.00")]
    pub amount: String,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    pub status: DealStatus,
    pub pipeline_id: Uuid,
    /// The key of its stage in that pipeline.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "proposal")]
    pub stage: String,
    /// When the deal is expected to close (for the forecast); null: not scheduled.
    #[schema(required = true, value_type = Option<String>, format = Date)]
    pub expected_close_date: Option<String>,
    /// Read-only: set by the database when the status becomes won or lost,
    /// null while the deal is open.
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<String>,
    /// The key another system knows this deal by (unique in the organization
    /// among deals); null when none was given.
    #[schema(required = true, min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// 1 on creation, +1 on every change; the `ETag` header is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i32,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DealOrderBy {
    #[default]
    CreatedAt,
    UpdatedAt,
    Amount,
    Title,
}

impl DealOrderBy {
    fn column(self) -> &'static str {
        match self {
            DealOrderBy::CreatedAt => "created_at",
            DealOrderBy::UpdatedAt => "updated_at",
            DealOrderBy::Amount => "amount",
            DealOrderBy::Title => "title",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

impl SortOrder {
    fn keyword(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

list_query! {
    pub struct DealQuery {
        /// Repeatable: `status=new&status=won`.
        #[serde(default)]
        #[param(explode = true, style = Form)]
        pub status: Vec<DealStatus>,
        /// Repeatable: stage keys (`stage=proposal&stage=negotiation`). A key
        /// that no stage of the filtered pipelines has is 400 `stage_not_in_pipeline`.
        #[serde(default)]
        #[param(explode = true, style = Form)]
        pub stage: Vec<String>,
        /// Only this pipeline's deals (with `stage`: its stages).
        pub pipeline_id: Option<Uuid>,
        #[param(value_type = Option<String>, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "100.00")]
        pub min_amount: Option<QueryAmount>,
        #[param(value_type = Option<String>, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "5000.00")]
        pub max_amount: Option<QueryAmount>,
        /// Members may only name themselves.
        pub owner_id: Option<Uuid>,
        pub contact_id: Option<Uuid>,
        /// The deal with this external id (at most one).
        #[param(min_length = 1, max_length = 255)]
        pub external_id: Option<String>,
        /// Default `created_at`; ties are broken by id.
        #[serde(default)]
        #[param(inline)]
        pub order_by: DealOrderBy,
        /// Default `desc`.
        #[serde(default)]
        #[param(inline)]
        pub order: SortOrder,
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeal {
    pub contact_id: Uuid,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(schema_with = money_request)]
    pub amount: Amount,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// Defaults to the caller; another member needs manager or above.
    pub owner_id: Option<Uuid>,
    /// Defaults to the organization's first pipeline.
    pub pipeline_id: Option<Uuid>,
    /// A stage key of that pipeline; defaults to its first stage.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "qualification")]
    pub stage: Option<String>,
    /// When the deal is expected to close (past dates allowed).
    pub expected_close_date: Option<NaiveDate>,
    /// The key another system knows this deal by, kept exactly as given;
    /// unique among the organization's deals (409 `deals_external_id_taken`).
    #[schema(min_length = 1, max_length = 255, example = "salesforce-006AB")]
    pub external_id: Option<String>,
}

/// Only the fields given change; null means "not given", except for
/// `expected_close_date` and `external_id`, where null clears them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealPatch {
    pub status: Option<DealStatus>,
    /// A stage key of the deal's pipeline (of `pipeline_id`, when given).
    /// Backwards (a lower position) needs owner or admin (R5).
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "proposal")]
    pub stage: Option<String>,
    /// Another pipeline: the deal moves there, to `stage` or, without it, to
    /// the pipeline's first stage (a `pipeline_changed` activity).
    pub pipeline_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(schema_with = money_request_or_null)]
    pub amount: Option<Amount>,
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<String>,
    pub contact_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    /// A date, or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub expected_close_date: Option<Option<NaiveDate>>,
    /// An external id, or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    pub external_id: Option<Option<String>>,
}

/// The body of an upsert: PATCH's fields (a create body without
/// `external_id`, which the path gives, plus `status`). Creating needs
/// `contact_id`, `title`, `amount` and `currency`, and a `status` other than
/// new is applied as a change right after (timeline: deal_created, then
/// status_changed); updating changes only the fields given (null: not given,
/// except `expected_close_date`, where null clears it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealUpsert {
    pub status: Option<DealStatus>,
    /// A stage key of the deal's pipeline (of `pipeline_id`, when given).
    /// Backwards (a lower position) needs owner or admin (R5).
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$", example = "proposal")]
    pub stage: Option<String>,
    /// Creating: defaults to the organization's first pipeline. Updating:
    /// another pipeline moves the deal there (`pipeline_changed`).
    pub pipeline_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(schema_with = money_request_or_null)]
    pub amount: Option<Amount>,
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<String>,
    /// Needed when the upsert creates the deal.
    pub contact_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    /// A date, or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub expected_close_date: Option<Option<NaiveDate>>,
}

/// One stay of a deal in a stage.
#[derive(Serialize, ToSchema)]
pub struct StageStay {
    pub pipeline_id: Uuid,
    /// The stage's key.
    #[schema(example = "proposal")]
    pub stage: String,
    #[schema(format = DateTime)]
    pub entered_at: String,
    /// Null for the current stay.
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub left_at: Option<String>,
    /// left_at - entered_at, or up to now for the current stay, in whole seconds.
    pub duration_seconds: i64,
    /// Who moved the deal there (who created it, for the first stay); null when
    /// not known (a DBA without a context, stays recorded by the V13 migration).
    #[schema(required = true)]
    pub entered_by: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct StageHistory {
    /// Oldest first.
    pub items: Vec<StageStay>,
}

/// List deals.
#[utoipa::path(get, operation_id = "deals_list",
    path = "/deals", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, DealQuery),
    responses(
        (status = 200, description = "One page, in the requested order, ties broken by id", body = ListPage<Deal>),
        (status = 400, description = "Bad query value (unknown status, order_by, page_size > 100, ...) or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member filtering by another member's owner_id: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor` or `search`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<DealQuery>,
) -> AppResult<JsonText> {
    let min: Option<Decimal> = q.min_amount.map(|a| a.0);
    let max: Option<Decimal> = q.max_amount.map(|a| a.0);
    let mut status_names: Vec<String> = q.status.iter().map(|s| format!("{s:?}")).collect();
    status_names.sort_unstable();
    status_names.dedup();
    let mut stages = q.stage;
    stages.sort_unstable();
    stages.dedup();
    let query = Fingerprint::of("deals")
        .with("status", status_names.join(","))
        .with("stage", stages.join(","))
        .with_opt("pipeline_id", q.pipeline_id)
        .with_opt("min_amount", min.map(|a| a.normalize()))
        .with_opt("max_amount", max.map(|a| a.normalize()))
        .with_opt("owner_id", q.owner_id)
        .with_opt("contact_id", q.contact_id)
        .with_opt("external_id", q.external_id.as_deref())
        .with("order_by", q.order_by.column())
        .with("order", q.order.keyword())
        .done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let (mut created_at, mut updated_at, mut amount, mut title) = (None, None, None, None);
    match q.order_by {
        DealOrderBy::CreatedAt => created_at = paging.after_key::<DateTime<Utc>>()?,
        DealOrderBy::UpdatedAt => updated_at = paging.after_key::<DateTime<Utc>>()?,
        DealOrderBy::Amount => amount = paging.after_key::<Decimal>()?,
        DealOrderBy::Title => title = paging.after_key::<String>()?,
    }
    let statuses = (!q.status.is_empty()).then_some(q.status);
    let stages = (!stages.is_empty()).then_some(stages);
    let json = app
        .db
        .call(
            ctx,
            "api.deals_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_statuses", &statuses),
                ("p_stages", &stages),
                ("p_pipeline_id", &q.pipeline_id),
                ("p_min_amount", &min),
                ("p_max_amount", &max),
                ("p_owner_id", &q.owner_id),
                ("p_contact_id", &q.contact_id),
                ("p_order_by", &q.order_by.column()),
                ("p_order", &q.order.keyword()),
                ("p_after_created_at", &created_at),
                ("p_after_updated_at", &updated_at),
                ("p_after_amount", &amount),
                ("p_after_title", &title),
                ("p_after_id", &paging.after_id()),
                ("p_external_id", &q.external_id),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// Create a deal.
#[utoipa::path(post, operation_id = "deals_create",
    path = "/deals", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = NewDeal,
    responses(
        (status = 201, description = "Created, status new, in the pipeline's first stage unless `stage` says otherwise", body = Deal),
        (status = 400, description = "Validation failed (amount < 0: `deals_amount_negative`, currency: `deals_currency_invalid`, a stage the pipeline lacks: `stage_not_in_pipeline`, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member creating a deal for another member: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The contact is not in this organization (`deals_contact_id_not_found`), owner_id is not a member, or pipeline_id is not one of its pipelines (`pipeline_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another deal has this external_id: `deals_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(d): ApiJson<NewDeal>,
) -> AppResult<Created<Versioned>> {
    let json = app
        .db
        .call(
            ctx,
            "api.deals_create",
            &[
                ("p_contact_id", &d.contact_id),
                ("p_title", &d.title),
                ("p_amount", &d.amount.0),
                ("p_currency", &d.currency),
                ("p_owner_id", &d.owner_id),
                ("p_pipeline_id", &d.pipeline_id),
                ("p_stage", &d.stage),
                ("p_expected_close_date", &d.expected_close_date),
                ("p_external_id", &d.external_id),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::created(json, "/api/v1/deals", "id")
}

/// Get a deal.
#[utoipa::path(get, operation_id = "deals_get",
    path = "/deals/{id}", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfNoneMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The deal", body = Deal),
        (status = 404, description = "Not found in this organization: `deal_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    condition: IfNoneMatch,
) -> AppResult<Response> {
    Ok(
        Versioned::call(&app.db, ctx, "api.deals_get", &[("p_id", &id)])
            .await?
            .unless(&condition),
    )
}

/// Update a deal (only the fields given).
#[utoipa::path(patch, operation_id = "deals_update",
    path = "/deals/{id}", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    request_body = DealPatch,
    responses(
        (status = 200, description = "Updated; status, stage and pipeline changes are on the timeline", body = Deal),
        (status = 400, description = "Validation failed, won without an amount (R1): `deal_won_requires_amount`, or a stage the pipeline lacks: `stage_not_in_pipeline`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member changing another member's deal (`role_forbidden`); a stage moved back by a manager or member (R5): `stage_rollback_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Deal, contact_id, owner_id or pipeline_id (`pipeline_not_found`) not in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another deal has this external_id: `deals_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<DealPatch>,
) -> AppResult<Versioned> {
    let amount = p.amount.map(|a| a.0);
    let fields = present_fields([
        ("expected_close_date", p.expected_close_date.is_some()),
        ("external_id", p.external_id.is_some()),
    ]);
    let json = app
        .db
        .call(
            ctx,
            "api.deals_update",
            &[
                ("p_id", &id),
                ("p_status", &p.status),
                ("p_stage", &p.stage),
                ("p_title", &p.title),
                ("p_amount", &amount),
                ("p_currency", &p.currency),
                ("p_contact_id", &p.contact_id),
                ("p_owner_id", &p.owner_id),
                ("p_pipeline_id", &p.pipeline_id),
                ("p_expected_close_date", &p.expected_close_date.flatten()),
                ("p_fields", &fields),
                ("p_if_match", &if_match),
                ("p_external_id", &p.external_id.flatten()),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    Versioned::from_db(json)
}

/// Create or update the deal with this external id.
#[utoipa::path(put, operation_id = "deals_upsert",
    path = "/deals/by-external-id/{external_id}", tag = "deals",
    security(("bearer" = [])),
    params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader,
        ("external_id" = String, Path, min_length = 1, max_length = 255,
         description = "The deal's external id (percent-encoded), 1 to 255 characters")),
    request_body = DealUpsert,
    responses(
        (status = 412, description = "`If-Match` names another version, or a version of a record that does not exist: `precondition_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "Updated: only the fields given changed (as PATCH); status, stage and pipeline changes are on the timeline", body = Deal),
        (status = 201, description = "Created, with this external id (as POST)", body = Deal),
        (status = 400, description = "Validation failed; `contact_id`, `title`, `amount` or `currency` missing when creating (`validation_failed` with that field); an external id over 255 characters: `external_id_invalid`; R1 `deal_won_requires_amount`; `stage_not_in_pipeline`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member changing another member's deal or creating one for another member (`role_forbidden`); a stage moved back by a manager or member (R5): `stage_rollback_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization, contact_id, owner_id or pipeline_id (`pipeline_not_found`) not in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The external id is held by a deal this request cannot update: `deals_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upsert(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(external_id): ApiPath<String>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<DealUpsert>,
) -> AppResult<Response> {
    let amount = p.amount.map(|a| a.0);
    let fields = present_fields([("expected_close_date", p.expected_close_date.is_some())]);
    let json = app
        .db
        .call(
            ctx,
            "api.deals_upsert",
            &[
                ("p_external_id", &external_id),
                ("p_if_match", &if_match),
                ("p_fields", &fields),
                ("p_status", &p.status),
                ("p_stage", &p.stage),
                ("p_title", &p.title),
                ("p_amount", &amount),
                ("p_currency", &p.currency),
                ("p_contact_id", &p.contact_id),
                ("p_owner_id", &p.owner_id),
                ("p_pipeline_id", &p.pipeline_id),
                ("p_expected_close_date", &p.expected_close_date.flatten()),
            ],
        )
        .await?;
    app.deals_changed(ctx);
    upserted(json, "/api/v1/deals")
}

/// Create up to 100 deals, all or nothing.
#[utoipa::path(post, operation_id = "deals_batch",
    path = "/deals/batch", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = Batch<NewDeal>,
    responses(
        (status = 201, description = "Every item created, in order, each with its deal_created timeline row", body = BatchCreated<Deal>,
         headers(("Location" = String, description = "The collection the deals were created in"))),
        (status = 400, description = "No items or more than 100 (`batch_size_invalid`), or an item failed validation: its error, `errors[].field` prefixed with its place (`items[3].currency`); nothing was created", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An item a member may not create (for another member): `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or an item's contact_id, owner_id or pipeline_id is not in this organization (field `items[n].contact_id`, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An item's external_id is taken (by another deal or an earlier item): `deals_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(b): ApiJson<Batch<NewDeal>>,
) -> AppResult<Created<JsonText>> {
    let items = b.to_json()?;
    let json = app
        .db
        .call(ctx, "api.deals_batch", &[("p_items", &Json(&items))])
        .await?;
    app.deals_changed(ctx);
    batch_created(json, "/api/v1/deals")
}

/// Delete a deal.
#[utoipa::path(delete, operation_id = "deals_delete",
    path = "/deals/{id}", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted, with its tasks and timeline"),
        (status = 403, description = "A member deleting another member's deal: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
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
            "api.deals_delete",
            &[("p_id", &id), ("p_if_match", &if_match)],
        )
        .await?;
    app.deals_changed(ctx);
    Ok(StatusCode::NO_CONTENT)
}

/// A deal's stays in its stages.
#[utoipa::path(get, operation_id = "deals_stage_history",
    path = "/deals/{id}/stage-history", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The deal")),
    responses(
        (status = 200, description = "Every stay of the deal in a stage, oldest first; the last one is current", body = StageHistory),
        (status = 404, description = "Deal not found in this organization: `deal_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stage_history(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<JsonText> {
    JsonText::call(&app.db, ctx, "api.deals_stage_history", &[("p_id", &id)]).await
}

/// The list's filters and sort, for an export (no paging: every match).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DealExportQuery {
    /// Repeatable, as the list's.
    #[serde(default)]
    #[param(explode = true, style = Form)]
    pub status: Vec<DealStatus>,
    /// Repeatable stage keys, as the list's.
    #[serde(default)]
    #[param(explode = true, style = Form)]
    pub stage: Vec<String>,
    pub pipeline_id: Option<Uuid>,
    #[param(value_type = Option<String>, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "100.00")]
    pub min_amount: Option<QueryAmount>,
    #[param(value_type = Option<String>, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "5000.00")]
    pub max_amount: Option<QueryAmount>,
    /// Members may only name themselves.
    pub owner_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    /// The deal with this external id.
    #[param(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    /// Default `created_at`; ties are broken by id.
    #[serde(default)]
    #[param(inline)]
    pub order_by: DealOrderBy,
    /// Default `desc`.
    #[serde(default)]
    #[param(inline)]
    pub order: SortOrder,
}

/// Export deals as CSV.
#[utoipa::path(get, operation_id = "deals_export",
    path = "/deals/export", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, DealExportQuery),
    responses(
        (status = 200, description = "Every deal the filters match, in the list's order, as CSV (RFC 4180, UTF-8, CRLF): a header row, then one row per deal with the JSON fields in the JSON's order; null is an empty field. Streamed from one snapshot.",
            content_type = "text/csv", body = String,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"deals.csv\"`"))),
        (status = 400, description = "Bad query value (unknown status, order_by, a paging parameter, `stage_not_in_pipeline`, ...) or organization header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member filtering by another member's owner_id: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<DealExportQuery>,
) -> AppResult<CsvFile> {
    let min: Option<Decimal> = q.min_amount.map(|a| a.0);
    let max: Option<Decimal> = q.max_amount.map(|a| a.0);
    let statuses = (!q.status.is_empty()).then_some(q.status);
    let stages = (!q.stage.is_empty()).then_some(q.stage);
    let export = app
        .db
        .export(
            ctx,
            "api.deals_export",
            &[
                ("p_statuses", &statuses),
                ("p_stages", &stages),
                ("p_pipeline_id", &q.pipeline_id),
                ("p_min_amount", &min),
                ("p_max_amount", &max),
                ("p_owner_id", &q.owner_id),
                ("p_contact_id", &q.contact_id),
                ("p_order_by", &q.order_by.column()),
                ("p_order", &q.order.keyword()),
                ("p_external_id", &q.external_id),
            ],
        )
        .await?;
    Ok(CsvFile {
        filename: "deals.csv",
        export,
    })
}

/// A deal's history: its events, newest first: who changed what, when,
/// and from which value (SPEC §13).
#[utoipa::path(get, operation_id = "deals_history",
    path = "/deals/{id}/history", tag = "deals",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The deal"), HistoryQuery),
    responses(
        (status = 200, description = "The deal's events, newest first", body = ListPage<Event>),
        (status = 400, description = "Malformed id, query or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Deal not found in this organization: `deal_not_found` (one in the trash still has its history)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> AppResult<JsonText> {
    crate::http::routes::history::page(&app, ctx, "api.deals_history", id, q).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(list, create)))
        .routes(routes!(export))
        .routes(routes!(get, update, delete))
        .routes(routes!(stage_history))
        .routes(routes!(upsert))
        .routes(crate::http::idempotency::idempotent(routes!(batch)))
        .routes(routes!(history))
}
