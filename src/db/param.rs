//! The values API functions take, each with the type it travels as, so a call
//! can be sent as one unnamed statement (`DB_POOLER=transaction`) as well as
//! prepared and cached per connection (the default).
//!
//! Custom types (the `crm` enums) travel as text and the call casts them
//! (`p_status => $4::crm.deal_status`): their OIDs differ from one database to
//! the next, text does not. With a prepared statement the cast also fixes the
//! parameter's type, so both modes send the same SQL.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::{to_sql_checked, IsNull, Json, ToSql, Type};
use uuid::Uuid;

/// How a parameter travels: its wire type and the cast the call applies.
#[derive(Clone, Debug)]
pub struct Wire {
    pub ty: Type,
    pub cast: Option<&'static str>,
}

/// A type with a fixed wire form.
pub trait Typed {
    const WIRE: Wire;
}

/// An argument of an API function call.
pub trait Param: ToSql + Sync {
    fn wire(&self) -> Wire;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
    /// Encodes the value as `ty` without `ToSql::accepts`' check.
    fn encode(&self, ty: &Type, out: &mut BytesMut)
        -> Result<IsNull, Box<dyn Error + Sync + Send>>;
}

impl<T: Typed + ToSql + Sync> Param for T {
    fn wire(&self) -> Wire {
        T::WIRE
    }
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
    fn encode(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

impl<T: Typed> Typed for Option<T> {
    const WIRE: Wire = T::WIRE;
}

macro_rules! typed {
    ($($t:ty => $ty:expr, $cast:expr;)*) => {
        $(impl Typed for $t {
            const WIRE: Wire = Wire { ty: $ty, cast: $cast };
        })*
    };
}

typed! {
    Uuid => Type::UUID, None;
    i32 => Type::INT4, None;
    i64 => Type::INT8, None;
    Vec<i32> => Type::INT4_ARRAY, None;
    f64 => Type::FLOAT8, None;
    bool => Type::BOOL, None;
    String => Type::TEXT, None;
    &str => Type::TEXT, None;
    Decimal => Type::NUMERIC, None;
    NaiveDate => Type::DATE, None;
    DateTime<Utc> => Type::TIMESTAMPTZ, None;
    Vec<u8> => Type::BYTEA, None;
    Vec<&str> => Type::TEXT_ARRAY, None;
    Vec<String> => Type::TEXT_ARRAY, None;
    Json<&serde_json::Value> => Type::JSONB, None;
}

/// A `crm` enum: travels as text, cast to `sql_type` by the call.
pub const fn custom(sql_type: &'static str) -> Wire {
    Wire {
        ty: Type::TEXT,
        cast: Some(sql_type),
    }
}

/// An array of a `crm` enum: travels as `text[]`.
pub const fn custom_array(sql_type: &'static str) -> Wire {
    Wire {
        ty: Type::TEXT_ARRAY,
        cast: Some(sql_type),
    }
}

/// A parameter sent as its wire type. The derived `ToSql` of an enum accepts
/// only the enum type itself, while it writes the same bytes as text: this
/// skips that check (the cast in the SQL does the real one).
#[derive(Debug)]
pub struct AsWire<'a>(pub &'a dyn Param);

impl ToSql for AsWire<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.0.encode(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_know_their_wire_type() {
        assert_eq!(None::<Uuid>.wire().ty, Type::UUID);
        assert_eq!(Some("x").wire().ty, Type::TEXT);
        let mut out = BytesMut::new();
        AsWire(&vec!["a", "b"])
            .to_sql_checked(&Type::TEXT_ARRAY, &mut out)
            .unwrap();
        assert!(!out.is_empty());
    }
}
