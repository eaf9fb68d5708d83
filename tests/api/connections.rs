//! Connection hygiene over real sockets (`http::serve`): slow and silent
//! clients are disconnected, the connection cap holds, and oversized request
//! heads get problem+json answers.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use minicrm::http::serve::{serve, ServeSettings};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::TestApp;

/// A real server for `app` on a free port, with these limits.
async fn listen(
    app: &TestApp,
    header_read_timeout: Duration,
    max_connections: usize,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServeSettings {
        header_read_timeout,
        max_connections,
    };
    tokio::spawn(serve(
        listener,
        app.router.clone(),
        settings,
        std::future::pending(),
    ));
    addr
}

/// Reads until the peer closes (Ok with what it sent) or `limit` passes (Err).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection; the raw answer.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn healthz() -> &'static str {
    "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
}

#[tokio::test]
async fn silent_and_trickling_clients_are_disconnected_while_others_are_served() {
    let app = TestApp::spawn().await;
    let addr = listen(&app, Duration::from_millis(800), 64).await;
    let started = Instant::now();

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut trickling = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        // One header byte every 100 ms: never a whole head.
        for byte in
            b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
        {
            if trickling.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read_to_close(&mut trickling, Duration::from_secs(10)).await
    });
    // Meanwhile, normal clients are served.
    for _ in 0..3 {
        let answer = request(addr, healthz()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert!(
        read_to_close(&mut silent, Duration::from_secs(10))
            .await
            .is_ok(),
        "the silent client stayed"
    );
    assert!(
        trickle.await.unwrap().is_ok(),
        "the trickling client stayed"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );
    let answer = request(addr, healthz()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let app = TestApp::spawn().await;
    let addr = listen(&app, Duration::from_millis(500), 64).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("the idle connection stayed open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let app = TestApp::spawn().await;
    let addr = listen(&app, Duration::from_secs(30), 2).await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(healthz().as_bytes()).await;
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("closed at once");
    assert!(
        answer.is_empty(),
        "served past the cap: {}",
        String::from_utf8_lossy(&answer)
    );
    // A slot that frees up is used again.
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = request(addr, healthz()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn assert_problem(answer: &str, status: &str, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
}

#[tokio::test]
async fn oversized_request_heads_get_problems() {
    let app = TestApp::spawn().await;
    let addr = listen(&app, Duration::from_secs(10), 64).await;
    // 150 headers.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = request(
        addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{many}\r\n"),
    )
    .await;
    assert_problem(&answer, "431", "headers_too_large");
    // 40 KB of one header.
    let big = "a".repeat(40 * 1024);
    let answer = request(
        addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert_problem(&answer, "431", "headers_too_large");
    // A 20 KB target.
    let long = "a".repeat(20 * 1024);
    let answer = request(
        addr,
        &format!("GET /healthz?q={long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_problem(&answer, "414", "uri_too_long");
    // Past 64 KiB hyper answers itself, before the application can (README, Errors).
    let huge = "a".repeat(150 * 1024);
    let answer = request(
        addr,
        &format!("GET /healthz?q={huge} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    // And normal requests are unaffected.
    let answer = request(addr, healthz()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
