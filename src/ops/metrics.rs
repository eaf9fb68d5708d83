//! Observability: the request id, one log line per request, and `GET /metrics`
//! in the Prometheus text format (hand-rolled: a few counters and a histogram
//! need no crate).
//!
//! Every request passes through [`observe`], the outermost layer: it settles
//! the request id (a sane incoming `X-Request-Id` or a new UUID), runs the
//! request inside a `request` span carrying `request_id`, `method` and `route`
//! (the matched path template, never the raw URI), then counts it, logs one
//! INFO line with `status` and `latency_ms`, and returns the id in the
//! response's `X-Request-Id`. Neither headers nor bodies are ever logged.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method},
    middleware::Next,
    response::Response,
};
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

#[derive(Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`] (not cumulative), then the `+Inf` overflow.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

type RequestKey = (String, &'static str, u16);

/// The counters of one application instance. Series appear on first use; the
/// write lock is taken only then, every later request just bumps atomics.
#[derive(Default)]
pub struct Metrics {
    requests: RwLock<HashMap<RequestKey, Arc<AtomicU64>>>,
    durations: RwLock<HashMap<String, Arc<Histogram>>>,
    db_errors: [AtomicU64; DbErrorKind::ALL.len()],
}

fn entry<K, V>(map: &RwLock<HashMap<K, Arc<V>>>, key: &K) -> Arc<V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Default,
{
    if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return v.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .clone()
}

impl Metrics {
    pub fn record_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        entry(&self.requests, &(route.to_owned(), method, status)).fetch_add(1, Relaxed);
        entry(&self.durations, &route.to_owned()).observe(elapsed);
    }

    pub fn record_db_error(&self, kind: DbErrorKind) {
        let i = DbErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.db_errors[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, pool: deadpool_postgres::Status) -> String {
        let mut out = String::with_capacity(4096);

        out.push_str("# HELP minicrm_http_requests_total HTTP requests answered, by matched route, method and status.\n");
        out.push_str("# TYPE minicrm_http_requests_total counter\n");
        let mut requests: Vec<(RequestKey, u64)> = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Relaxed)))
            .collect();
        requests.sort();
        for ((route, method, status), n) in requests {
            let _ = writeln!(
                out,
                "minicrm_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(&route)
            );
        }

        out.push_str("# HELP minicrm_http_request_duration_seconds Time to the response head, by matched route.\n");
        out.push_str("# TYPE minicrm_http_request_duration_seconds histogram\n");
        let mut durations: Vec<(String, Arc<Histogram>)> = self
            .durations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        durations.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, h) in durations {
            let route = escape(&route);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "minicrm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += h.buckets[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                out,
                "minicrm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "minicrm_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            // The count is the +Inf bucket, read once so the two always agree.
            let _ = writeln!(
                out,
                "minicrm_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
            );
        }

        let gauges = [
            (
                "minicrm_db_pool_size",
                "Connections the pool holds now (idle and in use).",
                pool.size,
            ),
            (
                "minicrm_db_pool_max_size",
                "The most connections the pool may hold (DB_POOL_SIZE).",
                pool.max_size,
            ),
            (
                "minicrm_db_pool_available",
                "Idle connections ready for a request.",
                pool.available,
            ),
            (
                "minicrm_db_pool_waiting",
                "Requests waiting for a connection.",
                pool.waiting,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }

        out.push_str(
            "# HELP minicrm_db_errors_total Database errors turned into problems, by kind.\n",
        );
        out.push_str("# TYPE minicrm_db_errors_total counter\n");
        for (i, kind) in DbErrorKind::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "minicrm_db_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.db_errors[i].load(Relaxed)
            );
        }
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The request id to use: the client's, when it is a sane token (1 to 64
/// characters of `[A-Za-z0-9._-]`), otherwise a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
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

/// The outermost layer: request id, span, metrics and the per-request log line.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    // A sane id or a UUID is always a valid header value.
    let id_value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID, id_value.clone());
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);

    let mut response = next.run(req).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.record_request(&route, method, status, elapsed);
    if let Some(kind) = response.extensions().get::<DbErrorKind>() {
        metrics.record_db_error(*kind);
    }
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
    response.headers_mut().insert(REQUEST_ID, id_value);
    response
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
        m.record_request("/x", "GET", 200, Duration::from_micros(500));
        m.record_request("/x", "GET", 200, Duration::from_millis(30));
        m.record_request("/x", "GET", 500, Duration::from_secs(9));
        m.record_db_error(DbErrorKind::Timeout);
        let text = m.render(deadpool_postgres::Status {
            max_size: 4,
            size: 2,
            available: 1,
            waiting: 0,
        });
        for line in [
            "minicrm_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 2",
            "minicrm_http_requests_total{route=\"/x\",method=\"GET\",status=\"500\"} 1",
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
