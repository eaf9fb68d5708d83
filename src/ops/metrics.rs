//! Observability: the request id, one log line per request, and the counters
//! behind `GET /metrics` in the Prometheus text format (the `prometheus` crate).
//!
//! Every request passes through [`Observe`], the outermost layer: it settles
//! the request id (a sane incoming `X-Request-Id` or a new UUID), runs the
//! request inside a `request` span carrying `request_id`, `method` and `route`
//! (the matched path template, never the raw URI), then counts it, logs one
//! INFO line with `status` and `latency_ms`, and returns the id in the
//! response's `X-Request-Id`. Neither headers nor bodies are ever logged.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use prometheus::{
    core::Collector, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tower::{Layer, Service};
use tracing::Instrument;
use uuid::Uuid;

use crate::db::DbErrorKind;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request that matched no route (a 404 from the
/// fallback): raw paths would make the label set unbounded.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds (seconds) of the request duration histogram's buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The counters of one application instance, kept by the `prometheus` crate
/// (label sets appear on first use; every later request bumps atomics).
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    db_errors: IntCounterVec,
    pool: [IntGauge; 4],
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "minicrm_http_requests_total",
                "HTTP requests answered, by matched route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("a valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "minicrm_http_request_duration_seconds",
                "Time to the response head, by matched route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid metric");
        let db_errors = IntCounterVec::new(
            Opts::new(
                "minicrm_db_errors_total",
                "Database errors turned into problems, by kind.",
            ),
            &["kind"],
        )
        .expect("a valid metric");
        for kind in DbErrorKind::ALL {
            db_errors.with_label_values(&[kind.label()]);
        }
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("a valid metric");
        let pool = [
            gauge(
                "minicrm_db_pool_size",
                "Connections the pool holds now (idle and in use).",
            ),
            gauge(
                "minicrm_db_pool_max_size",
                "The most connections the pool may hold (DB_POOL_SIZE).",
            ),
            gauge(
                "minicrm_db_pool_available",
                "Idle connections ready for a request.",
            ),
            gauge(
                "minicrm_db_pool_waiting",
                "Requests waiting for a connection.",
            ),
        ];
        let collectors: [Box<dyn Collector>; 7] = [
            Box::new(requests.clone()),
            Box::new(durations.clone()),
            Box::new(db_errors.clone()),
            Box::new(pool[0].clone()),
            Box::new(pool[1].clone()),
            Box::new(pool[2].clone()),
            Box::new(pool[3].clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("distinct metric names");
        }
        Self {
            registry,
            requests,
            durations,
            db_errors,
            pool,
        }
    }
}

impl Metrics {
    pub fn record_request(
        &self,
        route: &str,
        method: &'static str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        // `as_str`: the code's digits as a static string, no allocation.
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.durations
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_db_error(&self, kind: DbErrorKind) {
        self.db_errors.with_label_values(&[kind.label()]).inc();
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, pool: deadpool_postgres::Status) -> String {
        let [size, max_size, available, waiting] = &self.pool;
        size.set(pool.size as i64);
        max_size.set(pool.max_size as i64);
        available.set(pool.available as i64);
        waiting.set(pool.waiting as i64);
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// The request id to use: the client's, when it is a sane token (1 to 64
/// characters of `[A-Za-z0-9._-]`), otherwise a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers
        .get(&REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(is_sane_request_id))
    {
        return id.clone();
    }
    let mut text = Uuid::encode_buffer();
    let text = Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // A UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"))
}

pub fn is_sane_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The method label: the standard methods by name, anything else `other`
/// (extension methods would make the label set unbounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A check made before the request goes in: a response instead of it (the
/// head limits, `http::head_problem`), inside the request's observation.
pub type Refuse = fn(&Request) -> Option<Response>;

/// The outermost layer: request id, span, metrics and the per-request log
/// line. A tower service rather than `middleware::from_fn`: axum applies
/// `Router::layer` to every route, and each `from_fn` layer clones the boxed
/// service under it and boxes its future on every request (with the five
/// layers given one by one, `GET /deals/{id}` cloned 42 boxed services per
/// request). This one calls its inner service in place and boxes one future.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    refuse: Refuse,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>, refuse: Refuse) -> Self {
        Self { metrics, refuse }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            refuse: self.refuse,
        }
    }
}

/// What [`Observe`] waits for: the inner service's answer, or the refusal.
enum Answer<F> {
    Inner(F),
    Refused(Response),
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    refuse: Refuse,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(req.headers());
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let label = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            request_id = %id.to_str().unwrap_or_default(),
            method = %method,
            route = %label
        );
        // The inner services' synchronous part runs in the span too.
        let answer = span.in_scope(|| match (self.refuse)(&req) {
            Some(refused) => Answer::Refused(refused),
            None => Answer::Inner(self.inner.call(req)),
        });
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let mut response = match answer {
                Answer::Inner(future) => match future.instrument(span.clone()).await {
                    Ok(response) => response.into_response(),
                    Err(never) => match never {},
                },
                Answer::Refused(refused) => refused,
            };
            let elapsed = started.elapsed();
            let status = response.status();
            let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            metrics.record_request(route, method, status, elapsed);
            if let Some(kind) = response.extensions().get::<DbErrorKind>() {
                metrics.record_db_error(*kind);
            }
            let latency_ms = elapsed.as_micros() as f64 / 1000.0;
            let status = status.as_u16();
            span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
            response.headers_mut().insert(REQUEST_ID, id);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_short_plain_tokens() {
        assert!(is_sane_request_id("abc-DEF_1.2"));
        assert!(is_sane_request_id(&"a".repeat(64)));
        assert!(!is_sane_request_id(&"a".repeat(65)));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("a b"));
        assert!(!is_sane_request_id("a\"b"));
        assert!(!is_sane_request_id("é"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        let (ok, failed) = (StatusCode::OK, StatusCode::INTERNAL_SERVER_ERROR);
        m.record_request("/x", "GET", ok, Duration::from_micros(500));
        m.record_request("/x", "GET", ok, Duration::from_millis(30));
        m.record_request("/x", "GET", failed, Duration::from_secs(9));
        m.record_db_error(DbErrorKind::Timeout);
        let text = m.render(deadpool_postgres::Status {
            max_size: 4,
            size: 2,
            available: 1,
            waiting: 0,
        });
        for line in [
            "minicrm_http_requests_total{method=\"GET\",route=\"/x\",status=\"200\"} 2",
            "minicrm_http_requests_total{method=\"GET\",route=\"/x\",status=\"500\"} 1",
            "minicrm_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.001\"} 1",
            "minicrm_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.025\"} 1",
            "minicrm_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.05\"} 2",
            "minicrm_http_request_duration_seconds_bucket{route=\"/x\",le=\"5\"} 2",
            "minicrm_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3",
            "minicrm_http_request_duration_seconds_count{route=\"/x\"} 3",
            "minicrm_db_pool_size 2",
            "minicrm_db_pool_available 1",
            "minicrm_db_errors_total{kind=\"timeout\"} 1",
            "minicrm_db_errors_total{kind=\"internal\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
