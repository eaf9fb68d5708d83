//! One module per resource: request/response types beside their handlers.

pub mod activities;
pub mod analytics;
pub mod auth;
pub mod bulk;
pub mod contacts;
pub mod deals;
pub mod events;
pub mod fields;
pub mod health;
pub mod history;
pub mod invitations;
pub mod organizations;
pub mod pipelines;
pub mod tasks;
pub mod trash;
pub mod users;
pub mod webhooks;

use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use uuid::Uuid;

/// A list's query parameters: the paging every list takes (`page`, `cursor`,
/// `page_size`), then the list's own filters. Unknown parameters are a 400.
macro_rules! list_query {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Default 1; `page × page_size` at most 10,000 (deeper: 400
            /// `page_too_deep`, use `cursor`). Not with `cursor` (400 `cursor_with_page`).
            #[param(value_type = Option<i32>, minimum = 1, maximum = 10000)]
            pub page: Option<$crate::http::routes::fields::Page>,
            /// The `next_cursor` of a previous page of this query (same filters and
            /// sort; `page_size` may change): the page after it. Another query's or
            /// organization's cursor, an altered one, or one older than the cursor
            /// age limit (24 h by default): 400 `invalid_cursor`.
            #[param(max_length = 2048)]
            pub cursor: Option<String>,
            #[serde(default)]
            #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
            pub page_size: $crate::http::routes::fields::PageSize,
            $($body)*
        }
    };
}
pub(crate) use list_query;

/// One page of a list (SPEC §5, §14), as the database builds it
/// (`app.page_json`): documentation only, the JSON passes through.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// The offset page; null on a page reached through `cursor`.
    #[schema(required = true)]
    pub page: Option<i32>,
    pub page_size: i32,
    /// Exact up to 1,000 matches of the filters, the planner's estimate beyond.
    pub total: i64,
    /// False when `total` is an estimate (see README, *Counting*).
    pub total_exact: bool,
    /// The next page of the same query: pass it as `cursor`. Null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The header every organization-scoped request carries (documentation only;
/// `extract::OrgActor` reads it).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OrgHeader {
    /// The organization the request acts in (a UUID). Declared as a
    /// patterned string rather than `format: uuid` so generated clients send
    /// it as text (openapi-python-client cannot serialize a UUID header).
    #[serde(rename = "X-Organization-Id")]
    #[param(value_type = String, pattern = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")]
    pub x_organization_id: Uuid,
}

/// A password as accepted at registration: 8 to 128 characters.
pub struct Password(pub String);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.chars().count() {
            8..=128 => Ok(Password(s)),
            _ => Err(serde::de::Error::custom(
                "the password must be 8 to 128 characters long",
            )),
        }
    }
}
