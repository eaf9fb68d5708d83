//! Versions as entity tags (SPEC §11, RFC 9110 §8.8.3 and §13.1).
//!
//! A contact, deal, task or pipeline carries `version` (kept by the
//! database, `sql/functions/28_versions.sql`); its ETag is `"<version>"`,
//! strong. [`Versioned`] is the answer that holds one such record: it reads
//! `version` from the record and sets `ETag`, so no handler does it by hand.
//!
//! The conditions are read here, and only their syntax: `If-Match` travels
//! into the API function (`p_if_match`), whose write checks it in the same
//! statement; `If-None-Match` is compared with the record a GET read. A value
//! that is neither `*` nor a list of quoted entity tags is 400
//! (`invalid_if_match`, `invalid_if_none_match`).

use axum::{
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::{
    extract::{Created, JsonText},
    problem::{AppResult, Problem},
};

/// The response schemas whose records carry `version` (and so an `ETag`):
/// `http::openapi::finish` documents the header on their 200 and 201.
pub const VERSIONED_SCHEMAS: [&str; 6] = [
    "Contact",
    "Deal",
    "Task",
    "Pipeline",
    "Webhook",
    "WebhookWithSecret",
];

/// One element of a condition header.
#[derive(Debug, PartialEq, Eq)]
enum Element<'a> {
    Any,
    Tag { weak: bool, opaque: &'a [u8] },
}

/// `*` or `#entity-tag` (RFC 9110 §8.8.3): the elements of every line of
/// the header, or None when one is malformed. Empty list elements are
/// skipped, as the list syntax wants; a header with no tag at all, or with
/// `*` beside anything, is malformed. A comma inside the quotes is part of
/// the tag.
fn elements<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<Vec<Element<'a>>> {
    let mut out = Vec::new();
    for value in values {
        let b = value.as_bytes();
        let mut i = 0;
        let ows = |i: &mut usize| {
            while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
                *i += 1;
            }
        };
        loop {
            ows(&mut i);
            if i == b.len() {
                break;
            }
            if b[i] == b',' {
                i += 1;
                continue;
            }
            if b[i] == b'*' {
                out.push(Element::Any);
                i += 1;
            } else {
                let weak = b[i..].starts_with(b"W/");
                if weak {
                    i += 2;
                }
                if b.get(i) != Some(&b'"') {
                    return None;
                }
                i += 1;
                let start = i;
                // etagc = %x21 / %x23-7E / obs-text
                while i < b.len() && b[i] != b'"' {
                    if !(b[i] == 0x21 || (0x23..=0x7e).contains(&b[i]) || b[i] >= 0x80) {
                        return None;
                    }
                    i += 1;
                }
                if i == b.len() {
                    return None;
                }
                out.push(Element::Tag {
                    weak,
                    opaque: &b[start..i],
                });
                i += 1;
            }
            ows(&mut i);
            if i < b.len() && b[i] != b',' {
                return None;
            }
        }
    }
    let any = out.contains(&Element::Any);
    (!out.is_empty() && (!any || out.len() == 1)).then_some(out)
}

/// The version an opaque tag names: exactly the digits we send (`"01"` is
/// another tag, as strong comparison compares the characters).
fn version_of(opaque: &[u8]) -> Option<i32> {
    if !opaque.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(opaque).ok()?;
    let version: i32 = text.parse().ok()?;
    (version.to_string() == text).then_some(version)
}

/// The condition a header states: `None` for no header or `*`, otherwise
/// the versions its tags name (`strong_only`: weak tags name none).
fn condition(
    headers: &HeaderMap,
    name: HeaderName,
    strong_only: bool,
    code: &str,
    shown: &str,
) -> Result<Option<Vec<i32>>, Box<Problem>> {
    if !headers.contains_key(&name) {
        return Ok(None);
    }
    let elements = elements(headers.get_all(&name).iter()).ok_or_else(|| {
        Box::new(
            Problem::new(
                StatusCode::BAD_REQUEST,
                code,
                format!("{shown} must be * or a list of quoted entity tags, such as \"3\""),
            )
            .with_field(shown, "must be * or a list of entity tags"),
        )
    })?;
    if elements == [Element::Any] {
        return Ok(None);
    }
    Ok(Some(
        elements
            .iter()
            .filter_map(|e| match e {
                Element::Tag { weak, opaque } if !(strong_only && *weak) => version_of(opaque),
                _ => None,
            })
            .collect(),
    ))
}

/// `If-Match` of a PATCH or DELETE, for the API function's `p_if_match`:
/// None without the header or with `*` (which any existing record matches,
/// and a missing one is 404 either way), otherwise the versions of its
/// strong tags, possibly none (then nothing matches: 412). Strong
/// comparison: `W/"3"` never matches.
#[derive(Debug)]
pub struct IfMatch(pub Option<Vec<i32>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        condition(
            &parts.headers,
            header::IF_MATCH,
            true,
            "invalid_if_match",
            "If-Match",
        )
        .map(IfMatch)
        .map_err(|p| *p)
    }
}

/// `If-None-Match` of a GET: None without the header, `Some(None)` for
/// `*`, otherwise the versions its tags name. Weak comparison: `W/"3"`
/// matches version 3.
#[derive(Debug)]
pub struct IfNoneMatch(Option<Option<Vec<i32>>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IfNoneMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        if !parts.headers.contains_key(header::IF_NONE_MATCH) {
            return Ok(IfNoneMatch(None));
        }
        condition(
            &parts.headers,
            header::IF_NONE_MATCH,
            false,
            "invalid_if_none_match",
            "If-None-Match",
        )
        .map(|c| IfNoneMatch(Some(c)))
        .map_err(|p| *p)
    }
}

impl IfNoneMatch {
    fn matches(&self, version: i32) -> bool {
        match &self.0 {
            None => false,
            Some(None) => true,
            Some(Some(versions)) => versions.contains(&version),
        }
    }
}

/// One versioned record from the database, answered with `ETag: "<version>"`.
pub struct Versioned {
    body: JsonText,
    version: i32,
}

#[derive(Deserialize)]
struct Version {
    version: i32,
}

impl Versioned {
    /// The result of an API function that returns one versioned record.
    pub fn from_db(json: Option<String>) -> AppResult<Self> {
        let body = JsonText::from_db(json)?;
        let Version { version } = serde_json::from_str(&body.0)
            .map_err(|e| anyhow::anyhow!("the record has no version: {e}"))?;
        Ok(Versioned { body, version })
    }

    /// Calls an API function that returns one versioned record (`Db::call`).
    pub async fn call(
        db: &crate::db::Db,
        ctx: crate::db::Ctx,
        function: &str,
        args: &[crate::db::Arg<'_>],
    ) -> AppResult<Self> {
        Self::from_db(db.call(ctx, function, args).await?)
    }

    /// A created record, found at `{collection}/{its key field}`.
    pub fn created(json: Option<String>, collection: &str, key: &str) -> AppResult<Created<Self>> {
        let body = JsonText::from_db(json)?;
        let record: serde_json::Value =
            serde_json::from_str(&body.0).map_err(anyhow::Error::from)?;
        let id = record[key]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the created record has no {key}"))?;
        let version = record["version"]
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| anyhow::anyhow!("the created record has no version"))?;
        Ok(Created {
            location: format!("{collection}/{id}"),
            body: Versioned { body, version },
        })
    }

    /// The answer to a GET: 304 Not Modified, with the ETag and no body,
    /// when `If-None-Match` names the record's version (or is `*`).
    pub fn unless(self, condition: &IfNoneMatch) -> Response {
        if condition.matches(self.version) {
            (StatusCode::NOT_MODIFIED, [(header::ETAG, self.etag())]).into_response()
        } else {
            self.into_response()
        }
    }

    fn etag(&self) -> HeaderValue {
        HeaderValue::try_from(format!("\"{}\"", self.version))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
    }
}

impl IntoResponse for Versioned {
    fn into_response(self) -> Response {
        let etag = self.etag();
        let mut response = self.body.into_response();
        response.headers_mut().insert(header::ETAG, etag);
        response
    }
}

/// `If-Match` (documentation only; [`IfMatch`] reads it).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// Write only if the record is still at this version: its `ETag` from a
    /// GET or an earlier write (`"3"`), a comma-separated list of them, or
    /// `*` (any existing record). Strong comparison: a weak tag (`W/"3"`)
    /// never matches. Otherwise 412 `precondition_failed` and nothing
    /// changes; a missing record is 404 all the same. Malformed: 400
    /// `invalid_if_match`.
    #[serde(rename = "If-Match")]
    #[param(max_length = 1024, example = "\"3\"")]
    pub if_match: Option<String>,
}

/// `If-None-Match` (documentation only; [`IfNoneMatch`] reads it).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatchHeader {
    /// The `ETag`(s) the client holds (`"3"`, a comma-separated list, or
    /// `*`): if the record's is among them (weak comparison: `W/"3"`
    /// matches), 304 Not Modified with no body. Malformed: 400
    /// `invalid_if_none_match`.
    #[serde(rename = "If-None-Match")]
    #[param(max_length = 1024, example = "\"3\"")]
    pub if_none_match: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str], strong_only: bool) -> Result<Option<Vec<i32>>, String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                header::IF_MATCH,
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        condition(
            &headers,
            header::IF_MATCH,
            strong_only,
            "invalid_if_match",
            "If-Match",
        )
        .map_err(|p| p.code)
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(parse(&[], true), Ok(None));
        assert_eq!(parse(&["*"], true), Ok(None));
        assert_eq!(parse(&[" * "], true), Ok(None));
        assert_eq!(parse(&["\"3\""], true), Ok(Some(vec![3])));
        assert_eq!(parse(&["\"3\", \"5\""], true), Ok(Some(vec![3, 5])));
        assert_eq!(parse(&["\"3\"", "\"5\""], true), Ok(Some(vec![3, 5])));
        assert_eq!(parse(&["\"3\",,\t\"5\" ,"], true), Ok(Some(vec![3, 5])));
        // Weak tags: none for If-Match, the version for If-None-Match.
        assert_eq!(parse(&["W/\"3\""], true), Ok(Some(vec![])));
        assert_eq!(parse(&["W/\"3\", \"4\""], false), Ok(Some(vec![3, 4])));
        // Well-formed tags that are not one of our versions match nothing.
        assert_eq!(
            parse(&["\"abc\", \"03\", \"\", \"a,b\""], true),
            Ok(Some(vec![]))
        );
        assert_eq!(parse(&["\"99999999999\""], true), Ok(Some(vec![])));
        assert_eq!(parse(&["\"-1\""], true), Ok(Some(vec![])));
    }

    #[test]
    fn malformed_conditions() {
        for bad in [
            "",
            " ",
            ",",
            "3",
            "'3'",
            "\"3",
            "3\"",
            "\"3\" \"4\"",
            "\"3\"x",
            "w/\"3\"",
            "W/3",
            "W/ \"3\"",
            "*, \"3\"",
            "**",
            "\"a\"b\"",
            "\"a b\"",
        ] {
            assert_eq!(
                parse(&[bad], true),
                Err("invalid_if_match".to_owned()),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(&["*", "\"3\""], true),
            Err("invalid_if_match".to_owned())
        );
        assert_eq!(
            parse(&["\"3\"", ""], true),
            Ok(Some(vec![3])),
            "an empty line adds nothing"
        );
    }
}
