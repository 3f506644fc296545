//! `skiplock serve` against clients that connect and stall, as a hostile prober would: raw
//! sockets on loopback that send part of a request and wait. The server must close them on
//! its own, keep a cap on how many it holds, and keep answering `/healthz` meanwhile.
//!
//! Every loop here is bounded in count and time and talks only to 127.0.0.1. Settings go
//! through environment variables, as a deployment would give them.

mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Backend, TestStore};
use support::{serve_env, Served};

/// Opens a connection and sends one header line of a request, never its end.
async fn stall(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    s
}

/// Whether the server closes `s` (end of stream or reset) within `within`; whatever it
/// sends first (an error status, say) is read and ignored.
async fn closed_by_server(mut s: TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async move {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// `/healthz` on a fresh connection, answered within `within`.
async fn healthy(server: &Served, within: Duration) -> bool {
    let http = reqwest::Client::builder().timeout(within).build().unwrap();
    match http.get(format!("{}/healthz", server.base)).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

/// Resident memory of the server in KiB, for information only: the allocator decides when
/// freed memory goes back to the system, so no test asserts on it.
fn rss_kib(server: &Served) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_healthz_keeps_answering() {
    let db = TestStore::new(Backend::Postgres).await;
    let server = serve_env(&db, &[], &[("SKIPLOCK_HEADER_TIMEOUT_MS", "1000")]).await;
    let before = rss_kib(&server);

    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(stall(server.addr()).await);
    }
    for _ in 0..5 {
        assert!(
            healthy(&server, Duration::from_secs(5)).await,
            "/healthz answers beside 300 stalled connections"
        );
    }
    let during = rss_kib(&server);

    let closed = futures::future::join_all(
        stalled
            .into_iter()
            .map(|s| closed_by_server(s, Duration::from_secs(15))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of 300 stalled connections were never closed"
    );
    assert!(healthy(&server, Duration::from_secs(5)).await);
    eprintln!(
        "server RSS: {before} KiB before, {during} KiB with 300 stalled, {} KiB after",
        rss_kib(&server)
    );
    let status = server.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let db = TestStore::new(Backend::Postgres).await;
    // A long header timeout, so only the cap can hold the next connection back.
    let env = [
        ("SKIPLOCK_MAX_CONNECTIONS", "8"),
        ("SKIPLOCK_HEADER_TIMEOUT_MS", "60000"),
    ];
    let server = serve_env(&db, &[], &env).await;
    assert!(healthy(&server, Duration::from_secs(5)).await);

    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stall(server.addr()).await);
    }
    // Every slot is held: a ninth connection waits instead of being served.
    assert!(
        !healthy(&server, Duration::from_millis(1500)).await,
        "a connection beyond the cap was served"
    );
    // Hanging up frees slots; the next connection is served.
    stalled.truncate(4);
    assert!(
        healthy(&server, Duration::from_secs(10)).await,
        "a freed slot is used"
    );
    drop(stalled);
    let status = server.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_and_an_idle_keep_alive_connection_are_closed() {
    let db = TestStore::new(Backend::Postgres).await;
    let env = [
        ("SKIPLOCK_HEADER_TIMEOUT_MS", "1000"),
        ("SKIPLOCK_IDLE_TIMEOUT_MS", "1000"),
    ];
    let server = serve_env(&db, &[], &env).await;

    // A complete head that promises a body, then a few bytes of it and silence.
    let mut body = TcpStream::connect(server.addr()).await.unwrap();
    body.write_all(
        b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"type\":",
    )
    .await
    .unwrap();
    // One request answered, then the connection kept open with nothing more.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let (body_closed, idle_closed) = tokio::join!(
        closed_by_server(body, Duration::from_secs(15)),
        closed_by_server(idle, Duration::from_secs(15)),
    );
    assert!(
        body_closed,
        "a body that stopped arriving holds its connection"
    );
    assert!(idle_closed, "an idle keep-alive connection is never closed");
    assert_eq!(
        db.count_status("pending").await,
        0,
        "the partial job was not inserted"
    );
    let status = server.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}
