//! /analytics/deals/summary and /analytics/deals/funnel (SPEC §6),
//! /analytics/deals/velocity and /analytics/deals/forecast (SPEC §10),
//! computed in SQL and cached per organization (see `cache`).

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
        Report::Velocity {
            pipeline,
            days,
            stuck_after_days,
        } => {
            let args: [crate::db::Arg; 3] = [
                ("p_pipeline_id", &pipeline),
                ("p_days", &days),
                ("p_stuck_after_days", &stuck_after_days),
            ];
            app.db.call(ctx, "api.analytics_velocity", &args).await?
        }
        Report::Forecast { pipeline, months } => {
            let args: [crate::db::Arg; 2] = [("p_pipeline_id", &pipeline), ("p_months", &months)];
            app.db.call(ctx, "api.analytics_forecast", &args).await?
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VelocityQuery {
    /// The pipeline (default: the organization's first). Not one of the
    /// organization's: 404 `pipeline_not_found`.
    pub pipeline_id: Option<Uuid>,
    /// The window, in days back from now, 1 to 3650 (default 90): stays and
    /// closes that ended in it.
    #[param(minimum = 1, maximum = 3650)]
    pub days: Option<i32>,
    /// A current stay longer than this many days is `stuck`, 1 to 3650
    /// (default 30).
    #[param(minimum = 1, maximum = 3650)]
    pub stuck_after_days: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct VelocityStage {
    /// The stage's key.
    #[schema(example = "proposal")]
    pub stage: String,
    /// Stays in this stage that ended in the window.
    pub stays_completed: i64,
    /// Their average duration, exact (whole seconds); null when none.
    #[schema(required = true)]
    pub avg_seconds: Option<i64>,
    /// Their median duration (whole seconds), an estimate within 4.8 % (plus
    /// 1.5 s) of the exact median; null when none. See the README, *Stage
    /// history, velocity and forecast*.
    #[schema(required = true)]
    pub median_seconds: Option<i64>,
    /// Their 90th percentile, an estimate as `median_seconds` is; null when none.
    #[schema(required = true)]
    pub p90_seconds: Option<i64>,
    /// Deals of an open status (new, in_progress) in this stage now.
    pub current: i64,
    /// Of those, the ones in it for more than `stuck_after_days` days.
    pub stuck: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Velocity {
    /// The pipeline shown (the first one when none was asked for).
    pub pipeline_id: Uuid,
    pub days: i32,
    pub stuck_after_days: i32,
    /// Its stages, by position.
    pub stages: Vec<VelocityStage>,
    /// Deals of the pipeline won in the window (by `closed_at`).
    pub won: i64,
    /// Deals of the pipeline lost in the window.
    pub lost: i64,
    /// won / (won + lost) × 100, two decimals; null when both are 0.
    #[schema(required = true)]
    pub win_rate_pct: Option<f64>,
    /// Average of created_at → closed_at over the won deals, in days, two
    /// decimals; null when none was won.
    #[schema(required = true)]
    pub avg_cycle_days: Option<f64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// One pipeline's deals (default: every pipeline's). Not one of the
    /// organization's: 404 `pipeline_not_found`.
    pub pipeline_id: Option<Uuid>,
    /// How many months to list, from the current one (UTC), 1 to 24 (default 6).
    #[param(minimum = 1, maximum = 24)]
    pub months: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct ForecastAmount {
    pub currency: String,
    /// The sum of the amounts.
    #[schema(example = "15000.00")]
    pub total: String,
    /// Σ amount × the probability of the deal's stage / 100.
    #[schema(example = "4500.00")]
    pub weighted: String,
}

#[derive(Serialize, ToSchema)]
pub struct ForecastMonth {
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2027-01")]
    pub month: String,
    /// Per currency, currencies without an amount left out (so possibly empty).
    pub amounts: Vec<ForecastAmount>,
}

#[derive(Serialize, ToSchema)]
pub struct Forecast {
    /// The pipeline asked for; null: every pipeline.
    #[schema(required = true)]
    pub pipeline_id: Option<Uuid>,
    /// Every month from the current one (UTC), `months` of them.
    pub months: Vec<ForecastMonth>,
    /// Open deals expected before the current month.
    pub overdue: Vec<ForecastAmount>,
    /// Open deals without an expected_close_date.
    pub unscheduled: Vec<ForecastAmount>,
}

/// How fast deals move through a pipeline's stages, and how many close.
#[utoipa::path(get, operation_id = "analytics_velocity",
    path = "/analytics/deals/velocity", tag = "analytics",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, VelocityQuery),
    responses(
        (status = 200, description = "Per stage, in position order: stays finished in the window with their average, median and p90 duration (the median and p90 estimated within 4.8 % plus 1.5 s), and current and stuck deals; won, lost, the win rate and the average cycle of the deals closed in the window. `X-Cache: hit|miss`", body = Velocity),
        (status = 400, description = "days or stuck_after_days outside 1–3650 (`invalid_query_parameter`, with the field), a malformed pipeline_id, an unknown parameter or a bad header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or pipeline_id not one of its pipelines (`pipeline_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn velocity(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<VelocityQuery>,
) -> AppResult<Response> {
    let report_of = Report::Velocity {
        pipeline: q.pipeline_id,
        days: q.days.unwrap_or(90),
        stuck_after_days: q.stuck_after_days.unwrap_or(30),
    };
    report(&app, ctx, report_of).await
}

/// What the open deals are worth, by the month they are expected to close.
#[utoipa::path(get, operation_id = "analytics_forecast",
    path = "/analytics/deals/forecast", tag = "analytics",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ForecastQuery),
    responses(
        (status = 200, description = "Open deals' totals and probability-weighted totals per currency, for each month from the current one, overdue and unscheduled. `X-Cache: hit|miss`", body = Forecast),
        (status = 400, description = "months outside 1–24 (`invalid_query_parameter`, with the field), a malformed pipeline_id, an unknown parameter or a bad header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or pipeline_id not one of its pipelines (`pipeline_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn forecast(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<ForecastQuery>,
) -> AppResult<Response> {
    let report_of = Report::Forecast {
        pipeline: q.pipeline_id,
        months: q.months.unwrap_or(6),
    };
    report(&app, ctx, report_of).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(funnel))
        .routes(routes!(velocity))
        .routes(routes!(forecast))
}
