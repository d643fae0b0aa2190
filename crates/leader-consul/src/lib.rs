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

/// `leader::connect` entry point: a `consul://host:port?token=...&dc=...&prefix=...` URL.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(ConsulStore::connect(url)?))
}

/// `leader-bench` entry point: the store and its raw floor (the lock transaction alone).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = ConsulStore::connect(url)?;
    let floor = store::Floor { store: store.clone(), session: tokio::sync::OnceCell::new() };
    Ok((Arc::new(store), Arc::new(floor)))
}
