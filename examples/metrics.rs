//! Serves an election's metrics in Prometheus text format on `/metrics` and its health report on
//! `/healthz` (200 while the store answers, 503 otherwise), with axum and
//! `metrics-exporter-prometheus`. Two participants run on the in-memory store and hand over every
//! few seconds so there is something to see.
//!
//! `cargo run --example metrics --features metrics` then `curl 127.0.0.1:9898/metrics`

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use leader::layer::{LeaseStoreExt, MetricsLayer};
use leader::{Election, ElectionOptions, HealthReport, LeaseStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The routes, for one election's health and the process's metrics.
pub fn router(election: Election, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .route("/healthz", get(healthz))
        .with_state(election)
}

async fn healthz(State(election): State<Election>) -> (StatusCode, Json<HealthReport>) {
    let report = election.health();
    let code = if report.store_reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(report))
}

/// Two participants on one in-memory store wrapped in [`MetricsLayer`].
pub async fn participants(store_name: &str) -> leader::Result<(Election, Election)> {
    let store: Arc<dyn LeaseStore> =
        leader::connect(&format!("memory://{store_name}")).await?.layer(MetricsLayer::new());
    let options = ElectionOptions::from_lease(Duration::from_secs(2));
    let a =
        Election::builder(store.clone(), "metrics-demo").participant_id("alpha").options(options.clone()).build()?;
    let b = Election::builder(store, "metrics-demo").participant_id("bravo").options(options).build()?;
    a.start().await?;
    b.start().await?;
    Ok((a, b))
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let (a, b) = participants("metrics-example").await?;
    let addr = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9898".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving http://{addr}/metrics and http://{addr}/healthz; Ctrl-C to stop");
    let app = router(a.clone(), handle);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Hand over every 5 s: the leader releases and the other takes over.
    let handoffs = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for e in [&a, &b] {
                if e.is_leader() {
                    let _ = e.release().await;
                }
            }
        }
    });
    leader::shutdown_signal().await;
    handoffs.abort();
    server.abort();
    Ok(())
}
