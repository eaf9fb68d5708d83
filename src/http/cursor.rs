//! List cursors (SPEC §14): opaque, tamper-evident tokens naming where the
//! next page of one query begins.
//!
//! A cursor is base64url (no padding) of
//!
//! ```text
//! version (1 byte, 1) | organization id (16) | query fingerprint (16)
//! | issued at, Unix ms (8, big-endian) | last row's id (16)
//! | last row's sort key (UTF-8, the rest) | HMAC-SHA256 tag (32)
//! ```
//!
//! The tag covers everything before it. The key is derived from the JWT
//! secret, `HMAC-SHA256(JWT_SECRET, "minicrm cursor v1")`, so rotating the
//! secret invalidates every cursor (and every access token). The
//! fingerprint is a hash of the list's name, filters and sort (see
//! [`Fingerprint`]); a cursor is accepted only by the organization, the list
//! and the query that issued it, and for [`Cursors::max_age`]
//! (`CURSOR_MAX_AGE_SECS`, default 24 h). Signing and checking are transport,
//! like the JWT: the database receives the decoded sort key and id as typed
//! parameters, never the cursor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::problem::Problem;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG: usize = 32;
/// Everything before the sort key.
const HEAD: usize = 1 + 16 + 16 + 8 + 16;
/// A cursor issued this far in the future (clock skew between instances) is
/// still accepted.
const SKEW_MS: i64 = 60_000;
/// Longer cursor texts are refused before decoding.
const MAX_TEXT: usize = 2048;

/// Where a cursor page begins: after the row with this sort key (as the
/// list's JSON shows it) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct After {
    pub key: String,
    pub id: Uuid,
}

/// The hash of a list query's shape: the list, its filters and its sort
/// (not the page or page size), each value in a canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 16]);

/// Builds a [`Fingerprint`]: `Fingerprint::of("deals").with("stage", ..)`.
pub struct FingerprintBuilder(Sha256);

impl Fingerprint {
    pub fn of(list: &str) -> FingerprintBuilder {
        FingerprintBuilder(Sha256::new()).with("list", list)
    }
}

impl FingerprintBuilder {
    /// Adds a named value; `None` and absent are the same.
    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        // Length-prefixed, so no value can imitate another field.
        for part in [name, value.as_str()] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part.as_bytes());
        }
        self
    }

    pub fn with_opt(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    pub fn done(self) -> Fingerprint {
        let digest = self.0.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }
}

/// Issues and checks cursors with the server's cursor key.
pub struct Cursors {
    key: [u8; 32],
    pub max_age: Duration,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// 400 `invalid_cursor`, naming the `cursor` parameter.
pub fn invalid(detail: &str) -> Box<Problem> {
    Box::new(
        Problem::new(StatusCode::BAD_REQUEST, "invalid_cursor", detail)
            .with_field("cursor", detail),
    )
}

impl Cursors {
    /// The cursor key is `HMAC-SHA256(jwt_secret, "minicrm cursor v1")`: a key
    /// of its own, never the JWT key itself.
    pub fn new(jwt_secret: &str, max_age: Duration) -> Self {
        let mut mac =
            HmacSha256::new_from_slice(jwt_secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"minicrm cursor v1");
        Self {
            key: mac.finalize().into_bytes().into(),
            max_age,
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A cursor for the page after `after`, issued now.
    pub fn sign(&self, org: Uuid, query: Fingerprint, after: &After) -> String {
        self.sign_at(org, query, after, now_ms())
    }

    /// [`Cursors::sign`] with a given issue time (Unix ms).
    pub fn sign_at(&self, org: Uuid, query: Fingerprint, after: &After, issued_ms: i64) -> String {
        let mut bytes = Vec::with_capacity(HEAD + after.key.len() + TAG);
        bytes.push(VERSION);
        bytes.extend_from_slice(org.as_bytes());
        bytes.extend_from_slice(&query.0);
        bytes.extend_from_slice(&issued_ms.to_be_bytes());
        bytes.extend_from_slice(after.id.as_bytes());
        bytes.extend_from_slice(after.key.as_bytes());
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position a cursor names, if it is intact, was issued by this
    /// server for this organization and query, and is not too old; else 400
    /// `invalid_cursor`.
    pub fn open(&self, text: &str, org: Uuid, query: Fingerprint) -> Result<After, Box<Problem>> {
        let (after, issued) = self.open_unaged(text, org, query)?;
        if now_ms().saturating_sub(issued) > self.max_age.as_millis() as i64 {
            return Err(invalid(&format!(
                "the cursor has expired (cursors last {} seconds): start again from the first page",
                self.max_age.as_secs()
            )));
        }
        Ok(after)
    }

    /// [`Cursors::open`] without the age limit: the position and the time the
    /// cursor carries (Unix ms), for a caller that decides how long its
    /// cursors last (the change feed's last as long as its events). A cursor
    /// from the future beyond the clock skew allowance is still refused.
    pub fn open_unaged(
        &self,
        text: &str,
        org: Uuid,
        query: Fingerprint,
    ) -> Result<(After, i64), Box<Problem>> {
        const BROKEN: &str =
            "the cursor is malformed or has been altered: use the next_cursor of a page as it is";
        if text.len() > MAX_TEXT {
            return Err(invalid(BROKEN));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| invalid(BROKEN))?;
        if bytes.len() < HEAD + TAG {
            return Err(invalid(BROKEN));
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| invalid(BROKEN))?;
        if body[0] != VERSION {
            return Err(invalid(BROKEN));
        }
        // `bytes.len() >= HEAD + TAG` was checked above, so these slices exist.
        let field =
            |from: usize| -> [u8; 16] { body[from..from + 16].try_into().expect("length checked") };
        if Uuid::from_bytes(field(1)) != org || field(17) != query.0 {
            return Err(invalid(
                "the cursor belongs to another query: follow it with the same organization, \
                 filters and sort as the page that gave it",
            ));
        }
        let issued = i64::from_be_bytes(body[33..41].try_into().expect("length checked"));
        if now_ms().saturating_sub(issued) < -SKEW_MS {
            return Err(invalid(BROKEN));
        }
        let key = std::str::from_utf8(&body[HEAD..]).map_err(|_| invalid(BROKEN))?;
        Ok((
            After {
                key: key.to_owned(),
                id: Uuid::from_bytes(field(41)),
            },
            issued,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Cursors, Uuid, Fingerprint, After) {
        let cursors = Cursors::new(
            "a-secret-a-secret-a-secret-a-secret",
            Duration::from_secs(60),
        );
        let fp = Fingerprint::of("deals").with("order_by", "amount").done();
        let after = After {
            key: "250.50".into(),
            id: Uuid::new_v4(),
        };
        (cursors, Uuid::new_v4(), fp, after)
    }

    #[test]
    fn a_cursor_opens_only_as_issued() {
        let (cursors, org, fp, after) = setup();
        let text = cursors.sign(org, fp, &after);
        assert_eq!(cursors.open(&text, org, fp).unwrap(), after);
        // Another organization, another query.
        assert!(cursors.open(&text, Uuid::new_v4(), fp).is_err());
        let other = Fingerprint::of("deals").with("order_by", "title").done();
        assert!(cursors.open(&text, org, other).is_err());
        // Every flipped bit, every truncation.
        let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                cursors
                    .open(&URL_SAFE_NO_PAD.encode(&bad), org, fp)
                    .is_err(),
                "bit in byte {i}"
            );
            let cut = URL_SAFE_NO_PAD.encode(&bytes[..i]);
            assert!(cursors.open(&cut, org, fp).is_err(), "cut at {i}");
        }
        // Another key (a rotated JWT secret).
        let rotated = Cursors::new("another-secret-another-secret-xx", Duration::from_secs(60));
        assert!(rotated.open(&text, org, fp).is_err());
        // Too old, or from the far future.
        let old = cursors.sign_at(org, fp, &after, now_ms() - 61_000);
        assert!(cursors.open(&old, org, fp).is_err());
        let future = cursors.sign_at(org, fp, &after, now_ms() + 3_600_000);
        assert!(cursors.open(&future, org, fp).is_err());
        assert!(cursors.open("", org, fp).is_err());
        assert!(cursors.open("!!!", org, fp).is_err());
    }

    #[test]
    fn fingerprints_separate_fields() {
        let a = Fingerprint::of("x").with("a", "bc").done();
        let b = Fingerprint::of("x").with("ab", "c").done();
        assert_ne!(a, b);
        assert_ne!(
            Fingerprint::of("contacts").done(),
            Fingerprint::of("deals").done()
        );
    }
}
