//! Record history (SPEC §13): `GET /contacts/{id}/history`,
//! `/deals/{id}/history`, `/tasks/{id}/history`, the record's events newest
//! first (`api.*_history`, sql/functions/60_events.sql). The handlers live in
//! their resources' modules; this is what they share.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    db::Ctx,
    http::cursor::Fingerprint,
    http::extract::JsonText,
    http::list::{Paging, SortKey},
    http::problem::AppResult,
    http::routes::list_query,
    state::App,
};

/// An event of the change feed (SPEC §13), as `app.event_json` builds it
/// for the feed, the history, the live stream and webhook bodies.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    /// `<resource>.<change>`: `contact.created|updated|deleted|restored`, the
    /// same for `deal` and `task`, `activity.created`,
    /// `pipeline.created|updated|deleted`, `member.added|updated|removed`.
    #[serde(rename = "type")]
    #[schema(example = "deal.updated")]
    pub type_: String,
    /// The start of the transaction that made the change.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// The acting user; null for a change made with no user (the
    /// maintenance, a DBA without `app.act_as`).
    pub actor_id: Option<Uuid>,
    /// The record's id (a member's: its `user_id`).
    pub resource_id: Uuid,
    pub data: EventData,
}

/// What changed.
#[derive(Serialize, ToSchema)]
pub struct EventData {
    /// The record as the API shows it after the change (before it, for
    /// `*.deleted` and `member.removed`).
    #[schema(value_type = Object)]
    pub object: Value,
    /// For `*.updated`: the old values of the fields that changed (not
    /// `updated_at` and `version`, which change every time); `{}` when
    /// nothing else changed. Null for every other type.
    #[schema(value_type = Option<Object>, required = true)]
    pub previous: Option<Value>,
}

list_query! {
    pub struct HistoryQuery {
    }
}

/// Where a history page ends: the last event's position `(tx, seq)`, which
/// the database names as `"<tx>:<seq>"`.
struct Position {
    tx: i64,
    seq: i64,
}

impl SortKey for Position {
    fn parse(text: &str) -> Option<Self> {
        let (tx, seq) = text.split_once(':')?;
        Some(Self {
            tx: tx.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One page of a record's history: `function` is `api.contacts_history`,
/// `api.deals_history` or `api.tasks_history`.
pub async fn page(
    app: &App,
    ctx: Ctx,
    function: &'static str,
    id: Uuid,
    q: HistoryQuery,
) -> AppResult<JsonText> {
    let query = Fingerprint::of(function).with("id", id).done();
    let paging = Paging::new(app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let after = paging.after_key::<Position>()?;
    let json = app
        .db
        .call(
            ctx,
            function,
            &[
                ("p_id", &id),
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_after_tx", &after.as_ref().map(|p| p.tx)),
                ("p_after_seq", &after.as_ref().map(|p| p.seq)),
            ],
        )
        .await?;
    paging.respond(app, json)
}
