//! One module per resource: request/response types beside their handlers.

pub mod activities;
pub mod analytics;
pub mod auth;
pub mod contacts;
pub mod deals;
pub mod fields;
pub mod health;
pub mod invitations;
pub mod organizations;
pub mod tasks;
pub mod users;

use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use uuid::Uuid;

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
