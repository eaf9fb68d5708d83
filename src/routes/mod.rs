//! One module per resource: request/response types beside their handlers.

pub mod auth;
pub mod health;
pub mod organizations;
pub mod users;

use serde::{Deserialize, Deserializer};

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
