//! What the upserts by external id and the batches share (SPEC §12): the
//! batch envelope, and the answer of an upsert (201 or 200).

use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::http::{
    etag::Versioned,
    extract::{Created, JsonText},
    problem::AppResult,
};

/// `{"items": [ … ]}`: 1 to 100 create bodies, created in order, all or
/// nothing. A bad item answers its own error, with `errors[].field` prefixed
/// by its place (`items[3].email`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch<T> {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<T>,
}

impl<T: Serialize> Batch<T> {
    /// The items as the database reads them (a JSON array of the parsed
    /// bodies: money as a decimal string, dates as `YYYY-MM-DD`).
    pub fn to_json(&self) -> AppResult<serde_json::Value> {
        serde_json::to_value(&self.items).map_err(|e| anyhow::Error::from(e).into())
    }
}

/// The created records, in the order of the request (documentation only: the
/// JSON passes through).
#[derive(Serialize, ToSchema)]
pub struct BatchCreated<T> {
    pub items: Vec<T>,
}

/// 201 with the created records; `Location` is the collection they were
/// created in (each record's own is `{collection}/{id}`).
pub fn batch_created(json: Option<String>, collection: &str) -> AppResult<Created<JsonText>> {
    Ok(Created {
        location: collection.to_owned(),
        body: JsonText::from_db(json)?,
    })
}

/// What an `api.*_upsert` function answers.
#[derive(Deserialize)]
struct Upserted<'a> {
    created: bool,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// 201 with `Location` when the upsert created the record, 200 when it
/// updated it; the body is the record.
pub fn upserted(json: Option<String>, collection: &str) -> AppResult<Response> {
    let text = JsonText::from_db(json)?;
    let answer: Upserted = serde_json::from_str(&text.0).map_err(anyhow::Error::from)?;
    let record = answer.record.get().to_owned();
    if answer.created {
        return Versioned::created(Some(record), collection, "id").map(IntoResponse::into_response);
    }
    Versioned::from_db(Some(record)).map(IntoResponse::into_response)
}
