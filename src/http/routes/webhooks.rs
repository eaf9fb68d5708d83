//! /webhooks (SPEC §13; README "Webhooks"): subscriptions to the
//! organization's events, managed and read by owners and admins only (the
//! database decides, 403 `role_forbidden`). The server's part is what the
//! database cannot do: the SSRF check of the URL (it resolves the name), and
//! the secret, generated here, sealed under `WEBHOOK_SECRETS_KEY` before it is
//! stored and opened to be shown once. Without that key every route answers
//! 503 `webhooks_not_configured`.

use axum::{extract::State, http::StatusCode, response::Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{list_query, ListPage};
use crate::{
    http::cursor::Fingerprint,
    http::etag::{IfMatch, IfNoneMatch, Versioned},
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::fields::present,
    http::routes::fields::present_fields,
    state::AppState,
    webhooks::{secrets::Secret, Webhooks},
};

#[derive(Serialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event types (`deal.updated`) and patterns (`deal.*`), sorted, each once.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it is disabled: `disabled_by_user` or `endpoint_gone` (it
    /// answered 410); null while enabled.
    pub disabled_reason: Option<String>,
    #[schema(format = DateTime)]
    pub disabled_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// 1 on creation, +1 on every change; the `ETag` header is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i32,
}

/// A webhook with its signing secret: the only answers that show it.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookAttempt {
    pub attempt: i32,
    /// Null when no answer came (refused, timed out, an SSRF refusal).
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    #[schema(format = DateTime)]
    pub attempted_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: Uuid,
    /// The event's id: `webhook-id` on every attempt.
    pub event_id: Uuid,
    /// The event's type (`webhook.test` for a test delivery).
    #[serde(rename = "type")]
    pub type_: String,
    /// `pending`, `delivered` or `failed` (gave up, or the endpoint answered 410).
    pub status: String,
    /// Attempts made so far.
    pub attempt: i32,
    /// The last attempt's HTTP status, error and duration.
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<i32>,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    /// While pending: when the next attempt is due.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Every attempt, newest first.
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https` unless the server allows private networks; no loopback,
    /// private, link-local, multicast or other special address (400
    /// `webhook_url_forbidden`).
    #[schema(
        min_length = 10,
        max_length = 2000,
        example = "https://hooks.example.com/minicrm"
    )]
    pub url: String,
    /// 1 to 50 exact types or `<resource>.*` (400 `webhook_events_invalid`).
    #[schema(min_items = 1, max_items = 50, example = json!(["deal.*", "task.created"]))]
    pub events: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Only the fields present change; `description` may be set to null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 10, max_length = 2000)]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 50)]
    pub events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// false disables (`disabled_by_user`); true enables again and clears
    /// the disabled reason.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub enabled: Option<Option<bool>>,
}

list_query! {
    pub struct WebhookQuery {}
}

fn configured(app: &AppState) -> AppResult<&Webhooks> {
    app.webhooks.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks_not_configured",
            "webhooks are off on this server: it has no WEBHOOK_SECRETS_KEY",
        )
        .into()
    })
}

/// The database's answer of a create or rotation carries the sealed
/// secret; the client gets it opened, as `secret`.
fn reveal(hooks: &Webhooks, ctx: crate::db::Ctx, json: Option<String>) -> AppResult<String> {
    let mut record: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&JsonText::from_db(json)?.0).map_err(anyhow::Error::from)?;
    let sealed = record
        .remove("secret_sealed")
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("the webhook answer has no secret_sealed"))?;
    // PostgreSQL's base64 breaks lines every 76 characters.
    let sealed: String = sealed.split_whitespace().collect();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(anyhow::Error::from)?;
    let id: Uuid = record
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the webhook answer has no id"))?;
    let org = ctx.org_id.expect("webhooks live in an organization");
    let secret = hooks
        .sealer
        .open(org, id, &sealed)
        .map_err(anyhow::Error::from)?;
    record.insert("secret".into(), secret.reveal().into());
    Ok(serde_json::to_string(&record).map_err(anyhow::Error::from)?)
}

/// The organization's webhooks (owner or admin).
#[utoipa::path(get, operation_id = "webhooks_list",
    path = "/webhooks", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, WebhookQuery),
    responses(
        (status = 200, description = "Oldest first; never a secret", body = ListPage<Webhook>),
        (status = 400, description = "A bad query value or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> AppResult<JsonText> {
    configured(&app)?;
    let query = Fingerprint::of("webhooks").done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.webhooks_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_after_created_at", &paging.after_key::<DateTime<Utc>>()?),
                ("p_after_id", &paging.after_id()),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// Subscribe an endpoint (owner or admin); the answer shows its secret, once.
#[utoipa::path(post, operation_id = "webhooks_create",
    path = "/webhooks", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Created, enabled, with its signing secret (shown only here and on rotation)", body = WebhookWithSecret),
        (status = 400, description = "A URL that is not public https (`webhook_url_forbidden`) or not a URL (`webhooks_url_invalid`), an unknown event type or pattern (`webhook_events_invalid`, also for none or more than 50), a description over 500 characters (`webhooks_description_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(w): ApiJson<NewWebhook>,
) -> AppResult<Created<Versioned>> {
    let hooks = configured(&app)?;
    hooks.check_url(&w.url).await?;
    let id = Uuid::new_v4();
    let org = ctx.org_id.expect("webhooks live in an organization");
    let sealed = hooks.sealer.seal(org, id, &Secret::generate());
    let json = app
        .db
        .call(
            ctx,
            "api.webhooks_create",
            &[
                ("p_id", &id),
                ("p_url", &w.url),
                ("p_events", &w.events),
                ("p_description", &w.description),
                ("p_secret_sealed", &sealed),
            ],
        )
        .await?;
    Versioned::created(Some(reveal(hooks, ctx, json)?), "/api/v1/webhooks", "id")
}

/// Get a webhook (owner or admin); never its secret.
#[utoipa::path(get, operation_id = "webhooks_get",
    path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfNoneMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    condition: IfNoneMatch,
) -> AppResult<Response> {
    configured(&app)?;
    Ok(
        Versioned::call(&app.db, ctx, "api.webhooks_get", &[("p_id", &id)])
            .await?
            .unless(&condition),
    )
}

/// Change a webhook's URL, events, description or enabled (owner or admin).
#[utoipa::path(patch, operation_id = "webhooks_update",
    path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "Updated", body = Webhook),
        (status = 400, description = "As on creation (`webhook_url_forbidden`, `webhook_events_invalid`, …); url, events or enabled set to null (`value_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version: `precondition_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<WebhookPatch>,
) -> AppResult<Versioned> {
    let hooks = configured(&app)?;
    if let Some(Some(url)) = &p.url {
        hooks.check_url(url).await?;
    }
    let fields = present_fields([
        ("url", p.url.is_some()),
        ("events", p.events.is_some()),
        ("description", p.description.is_some()),
        ("enabled", p.enabled.is_some()),
    ]);
    let json = app
        .db
        .call(
            ctx,
            "api.webhooks_update",
            &[
                ("p_id", &id),
                ("p_fields", &fields),
                ("p_url", &p.url.flatten()),
                ("p_events", &p.events.flatten()),
                ("p_description", &p.description.flatten()),
                ("p_enabled", &p.enabled.flatten()),
                ("p_if_match", &if_match),
            ],
        )
        .await?;
    Versioned::from_db(json)
}

/// Delete a webhook with its deliveries (owner or admin).
#[utoipa::path(delete, operation_id = "webhooks_delete",
    path = "/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted; pending deliveries are dropped"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version: `precondition_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
) -> AppResult<StatusCode> {
    configured(&app)?;
    app.db
        .call(
            ctx,
            "api.webhooks_delete",
            &[("p_id", &id), ("p_if_match", &if_match)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret (owner or admin): from now on every attempt is
/// signed with it only.
#[utoipa::path(post, operation_id = "webhooks_rotate_secret",
    path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The webhook with its new secret (shown only here)", body = WebhookWithSecret),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Versioned> {
    let hooks = configured(&app)?;
    let org = ctx.org_id.expect("webhooks live in an organization");
    let sealed = hooks.sealer.seal(org, id, &Secret::generate());
    let json = app
        .db
        .call(
            ctx,
            "api.webhooks_rotate_secret",
            &[("p_id", &id), ("p_secret_sealed", &sealed)],
        )
        .await?;
    Versioned::from_db(Some(reveal(hooks, ctx, json)?))
}

/// Queue a `webhook.test` event to this endpoint only (owner or admin); it
/// is in no feed.
#[utoipa::path(post, operation_id = "webhooks_test",
    path = "/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path)),
    responses(
        (status = 202, description = "Queued: the delivery, pending", body = WebhookDelivery),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The webhook is disabled: `webhook_disabled`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<(StatusCode, JsonText)> {
    configured(&app)?;
    let json = JsonText::call(&app.db, ctx, "api.webhooks_test", &[("p_id", &id)]).await?;
    Ok((StatusCode::ACCEPTED, json))
}

/// A webhook's deliveries, newest first, each with its attempts (owner or admin).
#[utoipa::path(get, operation_id = "webhooks_deliveries",
    path = "/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path), WebhookQuery),
    responses(
        (status = 200, description = "Newest first", body = ListPage<WebhookDelivery>),
        (status = 400, description = "A bad query value or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner or admin: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization: `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> AppResult<JsonText> {
    configured(&app)?;
    let query = Fingerprint::of("webhook_deliveries")
        .with("webhook", id)
        .done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.webhooks_deliveries",
            &[
                ("p_id", &id),
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_after_created_at", &paging.after_key::<DateTime<Utc>>()?),
                ("p_after_id", &paging.after_id()),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(list, create)))
        .routes(routes!(get, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(test))
        .routes(routes!(deliveries))
}
