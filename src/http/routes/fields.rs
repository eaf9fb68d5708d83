//! Request field types that validate by parsing (shape only: the database
//! owns every rule about values).

use postgres_types::{FromSql, ToSql};
use rust_decimal::Decimal;
use serde::{de::Error, Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::db::param::{custom, custom_array, Typed, Wire};

/// `page`: 1 or more (default 1); `page × page_size` is bounded by
/// [`crate::http::list::MAX_OFFSET_ROWS`] (checked in `Paging::new`, so that a
/// huge page number is `page_too_deep`, not an overflow).
#[derive(Clone, Copy, Debug)]
pub struct Page(pub i64);

impl Default for Page {
    fn default() -> Self {
        Page(1)
    }
}

impl<'de> Deserialize<'de> for Page {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i64::deserialize(d)? {
            n if n >= 1 => Ok(Page(n)),
            _ => Err(D::Error::custom("page must be 1 or more")),
        }
    }
}

/// `page_size`: 1 to 100 (default 20).
#[derive(Clone, Copy, Debug)]
pub struct PageSize(pub i32);

pub const MAX_PAGE_SIZE: i32 = 100;

impl Default for PageSize {
    fn default() -> Self {
        PageSize(20)
    }
}

impl<'de> Deserialize<'de> for PageSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i32::deserialize(d)? {
            n @ 1..=MAX_PAGE_SIZE => Ok(PageSize(n)),
            _ => Err(D::Error::custom("page_size must be between 1 and 100")),
        }
    }
}

/// Money in a request body: a JSON number or a decimal string, read exactly
/// (never through a float), with at most two decimals.
#[derive(Clone, Copy, Debug)]
pub struct Amount(pub Decimal);

impl Amount {
    fn parse(text: &str) -> Result<Decimal, String> {
        let ok_chars = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
        let value = if !ok_chars {
            None
        } else if text.contains(['e', 'E']) {
            Decimal::from_scientific(text).ok()
        } else {
            Decimal::from_str_exact(text).ok()
        };
        let value = value.ok_or_else(|| format!("{text:?} is not a decimal number"))?;
        if value.normalize().scale() > 2 {
            return Err("amount has at most two decimals".into());
        }
        Ok(value)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => inner.trim(),
            None if text.starts_with(['-', '+', '.'])
                || text.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                text
            }
            None => {
                return Err(D::Error::custom(
                    "amount must be a number or a decimal string",
                ))
            }
        };
        Amount::parse(text).map(Amount).map_err(D::Error::custom)
    }
}

/// As the database reads it from a batch's JSON: a decimal string, exact.
impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// The schema of money in a request: a decimal string or a JSON number,
/// 0 ≤ amount < 10¹², at most two decimals (the database's `deals_amount_*`
/// constraints; the database is what enforces them).
pub fn money_request() -> utoipa::openapi::schema::Schema {
    money_one_of().into()
}

fn money_one_of() -> utoipa::openapi::schema::OneOf {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{1,12}(\.[0-9]{1,2})?$"))
                .examples(["10000.00"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .exclusive_maximum(Some(1_000_000_000_000_i64))
                .examples([10000]),
        )
        .description(Some(
            "A decimal string or a JSON number, read exactly (never through a float): \
             0 or more, below 10^12, at most two decimals.",
        ))
        .build()
}

/// [`money_request`], or null for "not given" in a partial update.
pub fn money_request_or_null() -> utoipa::openapi::schema::Schema {
    let mut schema = money_one_of();
    schema.items.push(
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Null)
            .into(),
    );
    schema.into()
}

/// Money in a query string.
#[derive(Clone, Copy, Debug)]
pub struct QueryAmount(pub Decimal);

impl<'de> Deserialize<'de> for QueryAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Amount::parse(text.trim())
            .map(QueryAmount)
            .map_err(D::Error::custom)
    }
}

/// For partial updates: `Some(None)` when the field is present as null,
/// `None` when it is absent (use with `#[serde(default)]`).
pub fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The names of the fields present in a partial update.
pub fn present_fields<const N: usize>(fields: [(&'static str, bool); N]) -> Vec<&'static str> {
    fields
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| n)
        .collect()
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, ToSql, FromSql, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[postgres(name = "deal_status", rename_all = "snake_case")]
pub enum DealStatus {
    New,
    InProgress,
    Won,
    Lost,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, ToSql, FromSql, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[postgres(name = "activity_type", rename_all = "snake_case")]
pub enum ActivityType {
    Comment,
    StatusChanged,
    StageChanged,
    TaskCreated,
    System,
    PipelineChanged,
}

impl Typed for DealStatus {
    const WIRE: Wire = custom("crm.deal_status");
}
impl Typed for Vec<DealStatus> {
    const WIRE: Wire = custom_array("crm.deal_status[]");
}
impl Typed for ActivityType {
    const WIRE: Wire = custom("crm.activity_type");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(json: &str) -> Result<Decimal, String> {
        serde_json::from_str::<Amount>(json)
            .map(|a| a.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn amounts_are_exact_and_have_at_most_two_decimals() {
        assert_eq!(amount("10000").unwrap().to_string(), "10000");
        assert_eq!(amount("0.1").unwrap().to_string(), "0.1");
        assert_eq!(
            amount("\"1234567890.25\"").unwrap().to_string(),
            "1234567890.25"
        );
        assert_eq!(amount("1.50").unwrap().to_string(), "1.50");
        assert_eq!(amount("1e2").unwrap(), Decimal::from(100));
        assert!(amount("1.005").is_err());
        assert!(amount("\"abc\"").is_err());
        assert!(amount("true").is_err());
        assert!(amount("null").is_err());
        assert!(amount("[1]").is_err());
    }

    #[test]
    fn enums_travel_as_text_and_are_cast() {
        use crate::db::param::{AsWire, Param};
        use postgres_types::{ToSql, Type};
        let mut out = bytes::BytesMut::new();
        AsWire(&DealStatus::InProgress)
            .to_sql_checked(&Type::TEXT, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"in_progress");
        assert_eq!(Some(DealStatus::Won).wire().cast, Some("crm.deal_status"));
        let mut out = bytes::BytesMut::new();
        AsWire(&vec![DealStatus::New, DealStatus::Won])
            .to_sql_checked(&Type::TEXT_ARRAY, &mut out)
            .unwrap();
        assert!(out.windows(3).any(|w| w == b"won"));
    }
}
