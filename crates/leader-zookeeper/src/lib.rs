#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod guard;
mod nodes;
mod recipe;
mod session;
mod store;
mod watch;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use config::{ZooKeeperStoreBuilder, DEFAULT_ROOT, DEFAULT_SESSION_TIMEOUT, SCHEMES};
pub use store::{WatchCounters, ZooKeeperStore};
/// ACL types for [`ZooKeeperStoreBuilder::acls`], from the `zookeeper-client` crate.
pub use zookeeper_client::{Acl, AuthId, Permission};

/// `leader::connect` entry point: opens a `zk://host:port[,host:port]/root` URL.
///
/// # Errors
/// See [`ZooKeeperStore::connect`].
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(ZooKeeperStore::connect(url).await?))
}

/// `leader-bench` entry point: the store and its raw floor (create an ephemeral sequential node
/// and delete it, on the store's own session).
///
/// # Errors
/// See [`ZooKeeperStore::connect`].
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = ZooKeeperStore::connect(url).await?;
    Ok((Arc::new(store.clone()), Arc::new(store)))
}
