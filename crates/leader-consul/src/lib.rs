#![doc = include_str!("../README.md")]

pub mod api;
mod config;
mod http;
mod store;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use config::{ConsulConfig, DEFAULT_LOCK_DELAY, DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, DEFAULT_WAIT};
pub use store::{ConsulStore, CAPABILITIES, MAX_TTL, MIN_TTL};

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["consul"];

/// `leader::connect` entry point: a `consul://host:port?token=...&dc=...&prefix=...` URL. Makes
/// one round trip ([`ping`]), so that a wrong address or token fails here.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let store = ConsulStore::connect(url)?;
    ping(store.config()).await?;
    Ok(Arc::new(store))
}

/// One round trip to the agent: a read of a key under the configured prefix (which need not
/// exist), with the configured token and datacenter.
///
/// # Errors
/// `Unavailable` naming the agent and the OS's cause when it cannot be reached; `Backend` when it
/// refuses the token (HTTP 403) or answers otherwise unexpectedly.
pub async fn ping(config: &ConsulConfig) -> Result<()> {
    let http = http::Http::new(http::https_client()?, Arc::new(config.clone()));
    let url = http.url(&format!("kv/{}", config.key("leader-connect-check")), &[]);
    let response = http.send(hyper::Method::GET, url, Vec::new(), http.timeout()).await?;
    match response.status {
        200 | 404 => Ok(()),
        403 => Err(leader_core::Error::backend(format!(
            "Consul at {} refused the ACL token (HTTP 403) for a read under {:?}; the token needs key read and write \
             and session write there",
            config.address(),
            config.key("")
        ))),
        status => Err(leader_core::Error::backend(format!(
            "Consul at {} answered HTTP {status} to a key read: {}",
            config.address(),
            String::from_utf8_lossy(&response.body).chars().take(200).collect::<String>()
        ))),
    }
}

/// `leader-bench` entry point: the store and its raw floor (the lock transaction alone).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = ConsulStore::connect(url)?;
    let floor = store::Floor { store: store.clone(), session: tokio::sync::OnceCell::new() };
    Ok((Arc::new(store), Arc::new(floor)))
}
