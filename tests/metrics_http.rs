//! Scrapes the metrics example over HTTP during a handoff: every documented metric is served.
#![cfg(all(feature = "metrics", feature = "memory"))]

#[path = "../examples/metrics.rs"]
mod example;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_during_a_handoff() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().unwrap();
    let (a, b) = example::participants("metrics-http-test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::router(a.clone(), handle);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if a.is_leader() {
                break a.clone();
            }
            if b.is_leader() {
                break b.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let other = if first.participant_id() == "alpha" { b.clone() } else { a.clone() };
    first.stop().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), other.wait_for_leadership()).await.unwrap().unwrap();

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    for name in [
        "leader_is_leader",
        "leader_acquisitions_total",
        "leader_losses_total",
        "leader_leadership_duration_seconds",
        "leader_store_operations_total",
        "leader_store_operation_duration_seconds",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    assert!(body.contains("reason=\"stopped\""), "the handoff's loss is counted: {body}");
    let (code, health) = get(addr, "/healthz").await;
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"store_reachable\":true"), "{health}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
