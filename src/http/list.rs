//! What every list shares (SPEC §5, §14): offset pages bounded at
//! [`MAX_OFFSET_ROWS`], or cursor pages; and the envelope, whose
//! `next_cursor` the server signs from the keyset the database names.

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    db::Ctx,
    http::cursor::{invalid, After, Fingerprint},
    http::extract::JsonText,
    http::problem::{AppResult, Problem},
    http::routes::fields::{Page, PageSize},
    state::App,
};

/// Offset pages reach at most this far: `page × page_size ≤ 10,000`.
pub const MAX_OFFSET_ROWS: i64 = 10_000;

/// How one list request pages: an offset page or a cursor page.
pub struct Paging {
    /// The offset page (1 when neither page nor cursor is given); `None` on a
    /// cursor page.
    pub page: Option<i32>,
    pub page_size: i32,
    /// The keyset a cursor names.
    pub after: Option<After>,
    org: Uuid,
    query: Fingerprint,
}

impl Paging {
    /// Checks the paging parameters of a list request: `cursor` and `page`
    /// exclude each other, offset pages are bounded, a cursor must be one
    /// this server issued for this organization and query.
    pub fn new(
        app: &App,
        ctx: Ctx,
        query: Fingerprint,
        page: Option<Page>,
        page_size: PageSize,
        cursor: Option<&str>,
    ) -> AppResult<Self> {
        let org = ctx.org_id.expect("a list runs in an organization");
        let after = match (cursor, page) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "cursor_with_page",
                    "cursor and page cannot be used together: a cursor already says where the page begins",
                )
                .with_field("cursor", "not with page")
                .into())
            }
            (Some(text), None) => Some(app.cursors.open(text, org, query)?),
            (None, _) => None,
        };
        let page = match (&after, page) {
            (Some(_), _) => None,
            (None, page) => {
                let page = page.unwrap_or_default().0;
                let depth = page.saturating_mul(i64::from(page_size.0));
                if depth > MAX_OFFSET_ROWS {
                    return Err(Problem::new(
                        StatusCode::BAD_REQUEST,
                        "page_too_deep",
                        format!(
                            "page × page_size may be at most {MAX_OFFSET_ROWS}: to read further, \
                             follow next_cursor (pass it as cursor, without page)"
                        ),
                    )
                    .with_field("page", "page × page_size is over 10000: use cursor")
                    .into());
                }
                Some(page as i32)
            }
        };
        Ok(Self {
            page,
            page_size: page_size.0,
            after,
            org,
            query,
        })
    }

    pub fn after_id(&self) -> Option<Uuid> {
        self.after.as_ref().map(|a| a.id)
    }

    /// The cursor's sort key, read as `T` (only a key this server signed
    /// gets here, so a failure means a key of another server version).
    pub fn after_key<T: SortKey>(&self) -> AppResult<Option<T>> {
        match &self.after {
            None => Ok(None),
            Some(a) => T::parse(&a.key)
                .map(Some)
                .ok_or_else(|| invalid("the cursor's position is not valid").into()),
        }
    }

    /// The list's answer: the database's envelope with `next_after` replaced
    /// by the signed `next_cursor`.
    pub fn respond(&self, app: &App, json: Option<String>) -> AppResult<JsonText> {
        let JsonText(text) = JsonText::from_db(json)?;
        let db: DbPage = serde_json::from_str(&text).map_err(anyhow::Error::from)?;
        let page = ListPage {
            items: db.items,
            page: db.page,
            page_size: db.page_size,
            total: db.total,
            total_exact: db.total_exact,
            next_cursor: db.next_after.map(|next| {
                app.cursors.sign(
                    self.org,
                    self.query,
                    &After {
                        key: next.key,
                        id: next.id,
                    },
                )
            }),
        };
        Ok(JsonText(
            serde_json::to_string(&page).map_err(anyhow::Error::from)?,
        ))
    }
}

/// A sort key as the list's JSON shows it (and a cursor carries it).
pub trait SortKey: Sized {
    fn parse(text: &str) -> Option<Self>;
}

impl SortKey for DateTime<Utc> {
    fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl SortKey for NaiveDate {
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl SortKey for Decimal {
    fn parse(text: &str) -> Option<Self> {
        Decimal::from_str_exact(text).ok()
    }
}

impl SortKey for String {
    fn parse(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

#[derive(Deserialize)]
struct DbAfter {
    key: String,
    id: Uuid,
}

#[derive(Deserialize)]
struct DbPage<'a> {
    #[serde(borrow)]
    items: &'a RawValue,
    page: Option<i32>,
    page_size: i32,
    total: i64,
    total_exact: bool,
    next_after: Option<DbAfter>,
}

#[derive(Serialize)]
struct ListPage<'a> {
    items: &'a RawValue,
    page: Option<i32>,
    page_size: i32,
    total: i64,
    total_exact: bool,
    next_cursor: Option<String>,
}
