//! Serving connections: hyper-util's auto (HTTP/1.1 and HTTP/2) builder with
//! a timer, so slow or silent clients cannot hold connections open.
//!
//! `axum::serve` builds hyper without a timer, so hyper's header-read timeout
//! never fires and a client that trickles header bytes (or sends nothing)
//! keeps its connection for as long as it likes. Here:
//!
//! - **header-read timeout** (`HTTP_HEADER_READ_TIMEOUT_MS`, 10 s): the whole
//!   request head must arrive within it. hyper starts the clock when it starts
//!   waiting for a head, so it also closes silent connections and keep-alive
//!   connections idle for that long between requests;
//! - **HTTP/2 keep-alive pings** every 20 s, closing a peer that does not answer
//!   within 10 s;
//! - **a cap on concurrent connections** (`HTTP_MAX_CONNECTIONS`, 1024): past it,
//!   new connections are closed at once, with one warning per episode.
//!
//! The request timeout (`REQUEST_TIMEOUT_MS`) starts once the head is read; the
//! body limit bounds the rest.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::Request, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{Service, ServiceExt};

/// How connections are served (from `ops::config`).
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

fn builder(settings: &ServeSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // More than hyper's default 100, so that a request with too many
        // headers reaches the application and gets a problem+json 431
        // (`http::head_problem`) instead of hyper's empty one.
        .max_headers(crate::http::MAX_HEADERS * 4);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(&settings));
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let full = Arc::new(AtomicBool::new(false));
    let graceful = GracefulShutdown::new();
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = settings.max_connections,
                    "connection limit reached: new connections are closed until some end \
                     (HTTP_MAX_CONNECTIONS)"
                );
            }
            drop(stream);
            continue;
        };
        full.store(false, Ordering::Relaxed);
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
            service.clone().oneshot(request)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_within = settings.header_read_timeout;
        tokio::spawn(async move {
            // The auto builder reads the first bytes to tell HTTP/1.1 from
            // HTTP/2 before hyper's header-read timer runs: a client that
            // sends nothing at all is closed here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(first_byte_within, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                tracing::debug!(%peer, "nothing received within the header-read timeout");
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), hyper_service)
                .into_owned();
            let connection = watcher.watch(connection);
            // Timeouts, resets and malformed requests end here; hyper has
            // already answered what it could.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}
