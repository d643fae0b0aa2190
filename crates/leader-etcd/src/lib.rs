#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod endpoints;
mod error;
mod floor;
mod store;
mod watch;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use config::{
    EtcdConfig, EtcdStoreBuilder, TlsFiles, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT, DEFAULT_PREFIX,
    DEFAULT_REQUEST_TIMEOUT, SCHEMES,
};
/// Re-exported so that users can make TLS options and raw clients of the same version.
pub use etcd_client;
pub use store::EtcdStore;

/// `leader::connect` entry point: opens an `etcd://host:port[,host:port]/prefix` URL (`etcds://`
/// for TLS).
///
/// # Errors
/// See [`EtcdStore::connect`].
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(EtcdStore::connect(url).await?))
}

/// `leader-bench` entry point: the store and its raw floor (the acquire transaction alone, on the
/// same client).
///
/// # Errors
/// See [`EtcdStore::connect`].
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = EtcdStore::connect(url).await?;
    Ok((Arc::new(store.clone()), Arc::new(floor::Floor::new(store))))
}
