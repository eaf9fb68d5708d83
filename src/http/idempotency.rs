//! `Idempotency-Key` on creating POSTs (SPEC §11; README "Idempotency keys").
//!
//! A route opts in with one call, [`idempotent`], around its `routes!(…)`:
//! that documents the header, the 409/422 answers and `Idempotent-Replayed`
//! on the operation, and puts [`IdempotencyLayer`] in front of its POST
//! handler. The layer checks the key, computes the request's fingerprint and
//! hands both to the handler's first database call through a task-local
//! (`db::idempotency`); the database claims the key, replays or stores the
//! answer in the same statement as the write. On a replay the handler builds
//! its answer from the stored body as it did the first time (so `Location`
//! and any header derived from the body are the same), and the layer sets
//! the stored status and `Idempotent-Replayed: true`.
//!
//! A tower layer rather than `middleware::from_fn`: `routes!` groups a POST
//! with the other methods of its path (`GET /contacts`), and the layer wraps
//! them all; a request without the header (every GET) goes straight to the
//! handler's own future, with no boxing.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::{OriginalUri, Request},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};
use utoipa::openapi::{
    header::HeaderBuilder,
    path::{Operation, ParameterBuilder, ParameterIn},
    ContentBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::{
    db::idempotency::{self, Key, State as KeyState},
    http::problem::Problem,
};

pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest key accepted (SPEC §11).
pub const MAX_KEY_LEN: usize = 255;

/// Makes the POST operation of `routes` accept `Idempotency-Key`, in the
/// router and in the OpenAPI document. The answer is stored with the
/// operation's documented success status (its one 2xx response).
pub fn idempotent<S>(routes: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    idempotent_with_limit(routes, crate::http::BODY_LIMIT)
}

/// `idempotent` for a route with a body limit of its own (the CSV import):
/// the layer reads the whole body to fingerprint it, up to `body_limit`.
pub fn idempotent_with_limit<S>(
    (schemas, mut paths, router): UtoipaMethodRouter<S>,
    body_limit: usize,
) -> UtoipaMethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut status = None;
    for (path, item) in paths.paths.iter_mut() {
        if let Some(op) = item.post.as_mut() {
            status = Some(document(path, op));
        }
    }
    let status = status.expect("idempotent(): these routes have no POST operation");
    let router = router.route_layer(IdempotencyLayer { status, body_limit });
    (schemas, paths, router)
}

/// The key of a request: none, or 1 to 255 printable ASCII characters
/// (0x20–0x7E). Spaces around the value are not part of it (HTTP drops them
/// too); more than one header is refused.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, Box<Problem>> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        Box::new(
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                format!("the Idempotency-Key header {why}"),
            )
            .with_field("Idempotency-Key", why),
        )
    };
    if values.next().is_some() {
        return Err(invalid("must be sent once"));
    }
    let bytes = value.as_bytes();
    let start = bytes.iter().position(|b| *b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    let key = &bytes[start..end];
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid("must be 1 to 255 characters"));
    }
    if !key.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(invalid("may hold printable ASCII characters only"));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// SHA-256 of the method, the path with its query and the raw body: a key
/// sent again with anything else is `idempotency_key_reused`.
pub fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(path_and_query.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().to_vec()
}

/// In front of an opted-in POST handler (see the module comment); `status`
/// is the one the answer is stored with.
#[derive(Clone, Copy, Debug)]
pub struct IdempotencyLayer {
    status: StatusCode,
    body_limit: usize,
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            status: self.status,
            body_limit: self.body_limit,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Idempotency<S> {
    inner: S,
    status: StatusCode,
    body_limit: usize,
}

type Keyed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for Idempotency<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Keyed>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.method() != Method::POST || !req.headers().contains_key(KEY_HEADER) {
            return Either::Left(self.inner.call(req));
        }
        // The clone that was made ready is the one that serves the request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(keyed(self.status, self.body_limit, req, inner)))
    }
}

/// A POST that carries the header: check it, fingerprint the request, run the
/// handler with the key pending, and mark a replay.
async fn keyed<S>(
    status: StatusCode,
    body_limit: usize,
    req: Request,
    mut inner: S,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let key = match key_of(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return inner.call(req).await,
        Err(problem) => return Ok(problem.into_response()),
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, body_limit).await {
        Ok(bytes) => bytes,
        Err(e) => return Ok(body_problem(&e).into_response()),
    };
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = Key {
        key,
        fingerprint: fingerprint(&parts.method, path, &bytes),
        status: i32::from(status.as_u16()),
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    let (response, state) = idempotency::scope(key, inner.call(req)).await;
    let Ok(mut response) = response;
    match state {
        KeyState::Replayed(stored) if response.status().is_success() => {
            if let Ok(stored) = StatusCode::from_u16(stored) {
                *response.status_mut() = stored;
            }
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        // A route that opted in but wrote without `Db::call` (say, COPY on a
        // connection of its own): the key protected nothing. A defect of the
        // route, which tests/api/idempotency.rs catches; said loudly here too.
        KeyState::Pending(_) if response.status().is_success() => {
            tracing::error!(
                "an idempotent route answered without a database call: its Idempotency-Key was not used"
            );
        }
        _ => {}
    }
    Ok(response)
}

fn body_problem(e: &axum::Error) -> Problem {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.to_string().contains("length limit exceeded") {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            );
        }
        source = err.source();
    }
    Problem::new(
        StatusCode::BAD_REQUEST,
        "body_unreadable",
        "the request body could not be read",
    )
}

/// Documents the header and its answers on `op`; returns its success status.
fn document(path: &str, op: &mut Operation) -> StatusCode {
    let successes: Vec<&String> = op
        .responses
        .responses
        .keys()
        .filter(|status| status.starts_with('2'))
        .collect();
    let [success] = successes[..] else {
        panic!("idempotent(): POST {path} must document exactly one 2xx answer");
    };
    let status: StatusCode = success
        .parse::<u16>()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or_else(|| panic!("idempotent(): POST {path}: {success} is not a status"));
    let success = success.clone();

    op.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes a retry safe: the first successful answer is stored for 24 hours \
                 (`IDEMPOTENCY_TTL_SECS`), per user and organization, with a fingerprint of the \
                 method, path and body. The same key with the same request again returns that \
                 answer (with `Idempotent-Replayed: true`) and writes nothing. 1 to 255 \
                 printable ASCII characters (a UUID is a good key).",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_KEY_LEN))
                    .pattern(Some("^[ -~]{1,255}$")),
            ))
            .build(),
    );

    if let Some(RefOr::T(response)) = op.responses.responses.get_mut(&success) {
        response.headers.insert(
            "Idempotent-Replayed".to_owned(),
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .enum_values(Some(["true"])),
                )
                .description(Some(
                    "`true` when this is the stored answer to an earlier request with the same \
                     Idempotency-Key; absent otherwise.",
                ))
                .build(),
        );
    }
    for (status, text) in [
        (
            "400",
            "the `Idempotency-Key` header is empty, longer than 255 characters, not printable \
             ASCII or sent twice (`invalid_idempotency_key`)",
        ),
        (
            "409",
            "a request with this `Idempotency-Key` is still running \
             (`idempotency_key_in_progress`); retry later",
        ),
        (
            "422",
            "this `Idempotency-Key` was used for another request: another method, path or body \
             (`idempotency_key_reused`)",
        ),
    ] {
        match op.responses.responses.get_mut(status) {
            Some(RefOr::T(response)) => {
                response.description = format!("{}; or {text}", response.description);
            }
            _ => {
                let mut chars = text.chars();
                let capitalized: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                op.responses.responses.insert(
                    status.to_owned(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(capitalized)
                            .content(
                                "application/problem+json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Problem")))
                                    .build(),
                            )
                            .build(),
                    ),
                );
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(KEY_HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert_eq!(key_of(&headers(&[])).unwrap(), None);
        assert_eq!(
            key_of(&headers(&[b"order 17/a~"])).unwrap().as_deref(),
            Some("order 17/a~")
        );
        assert_eq!(key_of(&headers(&[b"  k  "])).unwrap().as_deref(), Some("k"));
        let longest = "k".repeat(255);
        assert_eq!(
            key_of(&headers(&[longest.as_bytes()])).unwrap(),
            Some(longest)
        );
        for bad in [
            &b""[..],
            b"   ",
            "k".repeat(256).as_bytes(),
            "caf\u{e9}".as_bytes(),
            b"tab\there",
        ] {
            let problem = key_of(&headers(&[bad])).unwrap_err();
            assert_eq!(problem.code, "invalid_idempotency_key", "{bad:?}");
            assert_eq!(problem.status, 400);
        }
        assert!(key_of(&headers(&[b"a", b"a"])).is_err());
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = fingerprint(&Method::POST, "/api/v1/contacts", b"{}");
        assert_eq!(base.len(), 32);
        assert_eq!(base, fingerprint(&Method::POST, "/api/v1/contacts", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/api/v1/contacts", b"{}"));
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/api/v1/contacts?x", b"{}")
        );
        assert_ne!(base, fingerprint(&Method::POST, "/api/v1/contacts", b"{ }"));
    }
}
