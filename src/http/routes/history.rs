//! Record history (SPEC §13): `GET /contacts/{id}/history`,
//! `/deals/{id}/history`, `/tasks/{id}/history`, the record's events newest
//! first (`api.*_history`, sql/functions/60_events.sql). The handlers live in
//! their resources' modules; this is what they share.

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
