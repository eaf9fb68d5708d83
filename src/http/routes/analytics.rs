//! /analytics/deals/summary and /analytics/deals/funnel (SPEC §6), computed in
//! SQL and cached per organization (see `cache`).

use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::{
    extract::State,
    http::{header, HeaderName},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    http::cache::Report,
    http::extract::{ApiQuery, OrgActor},
    http::problem::{AppResult, Problem},
    http::routes::fields::DealStatus,
    state::AppState,
};

/// Whether the answer came from the cache: `hit` or `miss`.
const CACHE_HEADER: HeaderName = HeaderName::from_static("x-cache");

/// `days`: 1 to 3650 (default 30).
#[derive(Clone, Copy, Debug)]
pub struct Days(pub i32);

impl Default for Days {
    fn default() -> Self {
        Days(30)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i32::deserialize(d)? {
            n @ 1..=3650 => Ok(Days(n)),
            _ => Err(serde::de::Error::custom("days must be between 1 and 3650")),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Window for `new_deals`, 1 to 3650 (default 30).
    #[serde(default)]
    #[param(value_type = Option<i32>, minimum = 1, maximum = 3650)]
    pub days: Days,
    /// One pipeline's deals (default: every pipeline's). Not one of the
    /// organization's: 404 `pipeline_not_found`.
    pub pipeline_id: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FunnelQuery {
    /// The pipeline (default: the organization's first). Not one of the
    /// organization's: 404 `pipeline_not_found`.
    pub pipeline_id: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

#[derive(Serialize, ToSchema)]
pub struct CurrencyTotal {
    pub currency: String,
    #[schema(example = "150.00")]
    pub total: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusSummary {
    pub status: DealStatus,
    pub count: i64,
    /// Per currency; amounts in different currencies are never added.
    pub amounts: Vec<CurrencyTotal>,
}

#[derive(Serialize, ToSchema)]
pub struct CurrencyAverage {
    pub currency: String,
    #[schema(example = "500.00")]
    pub average: String,
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub days: i32,
    /// The pipeline asked for; null: every pipeline.
    #[schema(required = true)]
    pub pipeline_id: Option<Uuid>,
    /// Always the four statuses, in the order new, in_progress, won, lost.
    pub by_status: Vec<StatusSummary>,
    /// Average amount of won deals, per currency.
    pub won_average: Vec<CurrencyAverage>,
    /// Deals created in the last `days` days.
    pub new_deals: i64,
}

#[derive(Serialize, ToSchema)]
pub struct StatusCounts {
    pub new: i64,
    pub in_progress: i64,
    pub won: i64,
    pub lost: i64,
}

#[derive(Serialize, ToSchema)]
pub struct FunnelStage {
    /// The stage's key.
    #[schema(example = "proposal")]
    pub stage: String,
    /// Deals currently in this stage.
    pub count: i64,
    pub by_status: StatusCounts,
    /// reached(stage) / reached(previous) × 100, two decimals; null for the
    /// first stage and when the previous stage was reached by none.
    #[schema(required = true)]
    pub conversion_pct: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct Funnel {
    /// The pipeline shown (the first one when none was asked for).
    pub pipeline_id: Uuid,
    /// Its stages, by position.
    pub stages: Vec<FunnelStage>,
}

async fn report(app: &AppState, ctx: crate::db::Ctx, report: Report) -> AppResult<Response> {
    let (Some(user), Some(org)) = (ctx.user_id, ctx.org_id) else {
        return Err(anyhow::anyhow!("analytics without an organization context").into());
    };
    if let Some(json) = app.analytics.get(user, org, report) {
        return Ok(respond(json, "hit"));
    }
    let generation = app.analytics.generation(org);
    let json = match report {
        Report::Summary { days, pipeline } => {
            app.db
                .call(
                    ctx,
                    "api.analytics_summary",
                    &[("p_days", &days), ("p_pipeline_id", &pipeline)],
                )
                .await?
        }
        Report::Funnel { pipeline } => {
            app.db
                .call(ctx, "api.analytics_funnel", &[("p_pipeline_id", &pipeline)])
                .await?
        }
    };
    let json: Arc<str> = Arc::from(json.ok_or_else(|| anyhow::anyhow!("no analytics result"))?);
    app.analytics
        .put(user, org, report, json.clone(), generation);
    Ok(respond(json, "miss"))
}

fn respond(json: Arc<str>, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (CACHE_HEADER, cache),
        ],
        json.to_string(),
    )
        .into_response()
}

/// Deal counts and amounts by status.
#[utoipa::path(get, operation_id = "analytics_summary",
    path = "/analytics/deals/summary", tag = "analytics",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, SummaryQuery),
    responses(
        (status = 200, description = "Counts and per-currency totals by status, won average per currency, new deals. `X-Cache: hit|miss`", body = Summary),
        (status = 400, description = "days outside 1–3650, a malformed pipeline_id, or a bad header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or pipeline_id not one of its pipelines (`pipeline_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn summary(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> AppResult<Response> {
    let report_of = Report::Summary {
        days: q.days.0,
        pipeline: q.pipeline_id,
    };
    report(&app, ctx, report_of).await
}

/// One pipeline's deals by stage, with conversion between stages.
#[utoipa::path(get, operation_id = "analytics_funnel",
    path = "/analytics/deals/funnel", tag = "analytics",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, FunnelQuery),
    responses(
        (status = 200, description = "Deals per stage of the pipeline, in position order, split by status, with stage-to-stage conversion. `X-Cache: hit|miss`", body = Funnel),
        (status = 400, description = "A bad header, a malformed pipeline_id or an unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or pipeline_id not one of its pipelines (`pipeline_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn funnel(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<FunnelQuery>,
) -> AppResult<Response> {
    let report_of = Report::Funnel {
        pipeline: q.pipeline_id,
    };
    report(&app, ctx, report_of).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(funnel))
}
