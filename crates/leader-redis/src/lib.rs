#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod clock;
mod config;
mod error;
mod floor;
mod keys;
mod liveness;
mod reply;
mod scripts;
mod store;
mod subscriber;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use builder::{
    RedisStoreBuilder, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_LEASE, DEFAULT_UNRESPONSIVE_TIMEOUT, MAX_MAX_LEASE,
};
pub use config::{RedisConfig, WaitForReplicasConfig};
/// The fred crate this store is built on, for [`RedisStore::from_client`] and friends.
pub use fred;
pub use keys::{validate_key_prefix, DEFAULT_KEY_PREFIX, MAX_KEY_PREFIX};
pub use store::RedisStore;

/// URL schemes this crate answers in `leader::connect` (fred's forms: plain, TLS, cluster, sentinel).
pub const SCHEMES: &[&str] =
    &["redis", "rediss", "redis-cluster", "rediss-cluster", "redis-sentinel", "rediss-sentinel"];

/// `leader::connect` entry point: a [`RedisStore`] for `url`.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(RedisStore::connect(url).await?))
}

/// `leader-bench` entry point: the store and its raw floor (the acquire script alone, by EVALSHA
/// on the same client).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = RedisStore::connect(url).await?;
    let floor = store.raw_floor();
    Ok((Arc::new(store), floor))
}
