//! The HTTP layer: the router, its middleware, extractors, problems, the
//! OpenAPI document and one module per resource.

pub mod cache;
pub mod csv;
pub mod cursor;
pub mod etag;
pub mod extract;
pub mod idempotency;
pub mod list;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod serve;

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    http::{problem::Problem, routes::*},
    ops::{config::CorsOrigins, metrics::ObserveLayer},
    state::AppState,
};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longer request targets are refused with 414 (`uri_too_long`). hyper itself
/// refuses targets over 64 KiB, with an empty 414, before we see them.
pub const MAX_URI: usize = 8 * 1024;
/// More request headers than this, or more than [`MAX_HEADER_BYTES`] of
/// them, are refused with 431 (`headers_too_large`).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every route, each registered with its OpenAPI operation: a route cannot
/// exist undocumented, and the document's paths are the router's paths.
pub fn registry() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(organizations::router())
        .merge(invitations::router())
        .merge(contacts::router())
        .merge(pipelines::router())
        .merge(deals::router())
        .merge(activities::router())
        .merge(tasks::router())
        .merge(trash::router())
        .merge(analytics::router())
        .merge(events::router())
        .merge(webhooks::router());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(health::router())
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = registry().split_for_parts();
    openapi::finish(doc)
}

/// The whole HTTP application, so tests can drive it in-process.
///
/// The middleware is one `Router::layer` call: axum wraps every route in
/// each layer given to it, boxing the result, so every layer given
/// separately was one more boxed service to clone (and, for `from_fn`, one
/// more boxed future) on every request. Outermost first:
///
/// 1. [`ObserveLayer`]: request id, span, metrics and the log line, so they
///    cover every answer, the timeout's, the preflights' and the fallbacks';
///    inside it, the head limits (414, 431: [`head_problem`]);
/// 2. CORS, when configured: preflights are answered before routing (no 405
///    for OPTIONS);
/// 3. compression;
/// 4. the request time limit (a problem, where tower-http's TimeoutLayer
///    answers with an empty body; an import's is longer: [`TimeLimit`]);
/// 5. the body limit.
pub fn app(state: AppState) -> Router {
    let request_timeout = state.config.request_timeout;
    let (routes, doc) = registry().split_for_parts();
    let middleware = ServiceBuilder::new()
        .layer(ObserveLayer::new(state.metrics.clone(), head_problem))
        .option_layer(state.config.cors_allowed_origins.as_ref().map(cors))
        .layer(compression())
        .layer(TimeLimitLayer {
            limit: request_timeout,
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    routes
        .merge(openapi::docs(openapi::finish(doc)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// gzip or br when the client accepts it; tower-http's default predicate
/// never compresses `text/event-stream` (nor images, gRPC, bodies under 32 bytes).
pub fn compression() -> CompressionLayer {
    CompressionLayer::new().gzip(true).br(true)
}

/// CORS for browser front ends on the configured origins. Tokens travel in
/// `Authorization`, never in cookies, so credentials are not allowed.
fn cors(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        // `*` is never sent (SPEC §15): any origin is echoed back, with `Vary: Origin`.
        CorsOrigins::Any => AllowOrigin::mirror_request(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static(extract::ORG_HEADER),
            crate::ops::metrics::REQUEST_ID,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            crate::ops::metrics::REQUEST_ID,
            routes::auth::RATELIMIT_LIMIT,
            routes::auth::RATELIMIT_REMAINING,
            routes::auth::RATELIMIT_RESET,
            HeaderName::from_static("x-cache"),
            idempotency::REPLAYED_HEADER,
        ])
        .max_age(Duration::from_secs(3600))
}

/// 414 and 431 as problems. hyper answers these itself, with an empty body,
/// only past its own (higher) limits: 64 KiB of target, 400 headers
/// (`serve`), ~400 KiB of head.
fn head_problem(req: &Request) -> Option<Response> {
    if uri_len(req.uri()) > MAX_URI {
        return Some(
            Problem::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request target is longer than {MAX_URI} bytes"),
            )
            .into_response(),
        );
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(
            Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "at most {MAX_HEADERS} request headers of at most {MAX_HEADER_BYTES} bytes in all"
                ),
            )
            .into_response(),
        );
    }
    None
}

/// The length of the target as written out (`Uri`'s `Display`), without
/// building the string on every request.
fn uri_len(uri: &axum::http::Uri) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = std::fmt::write(&mut count, format_args!("{uri}"));
    count.0
}

/// A request that takes longer than its limit is answered 503 rather than
/// left hanging; the database's statement_timeout bounds any work left
/// behind. The limit is `REQUEST_TIMEOUT_MS`, or for a CSV import (up to
/// 50,000 rows, each written with every rule) at least
/// [`csv::IMPORT_TIME_LIMIT`]. A concrete future, not a boxed one: this runs
/// on every request.
#[derive(Clone, Copy)]
struct TimeLimitLayer {
    limit: Duration,
}

impl<S> tower::Layer<S> for TimeLimitLayer {
    type Service = TimeLimit<S>;
    fn layer(&self, inner: S) -> TimeLimit<S> {
        TimeLimit {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
struct TimeLimit<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for TimeLimit<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TimeLimited<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let limit = if req.uri().path() == routes::contacts::IMPORT_PATH {
            self.limit.max(csv::IMPORT_TIME_LIMIT)
        } else {
            self.limit
        };
        TimeLimited {
            inner: tokio::time::timeout(limit, self.inner.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    struct TimeLimited<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
    }
}

impl<F> std::future::Future for TimeLimited<F>
where
    F: std::future::Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match std::task::ready!(self.project().inner.poll(cx)) {
            Ok(response) => std::task::Poll::Ready(response),
            Err(_) => std::task::Poll::Ready(Ok(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "the request took too long; try again",
            )
            .into_response())),
        }
    }
}

async fn not_found() -> impl IntoResponse {
    Problem::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
