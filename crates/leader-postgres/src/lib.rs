#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod connection;
mod floor;
mod ident;
mod listener;
mod sql;
mod store;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use builder::{PostgresStoreBuilder, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA, DEFAULT_TABLE};
pub use connection::TlsConfig;
pub use ident::{MAX_SCHEMA_NAME, MAX_TABLE_NAME};
pub use store::PostgresStore;

/// Re-exported so that users can build a pool or a configuration of the same versions.
pub use deadpool_postgres;
/// Re-exported so that users can build a pool or a configuration of the same versions.
pub use tokio_postgres;

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["postgres", "postgresql"];

impl PostgresStore {
    /// A builder: URL, configuration or pool; schema, table, pool and TLS settings.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// A store for `postgres://` / `postgresql://` URL with the default settings (see
    /// [`PostgresStoreBuilder::url`] for the URL's parameters).
    pub fn from_url(url: &str) -> Result<Self> {
        Self::builder().url(url).build()
    }

    /// A store on an existing deadpool pool. Without a LISTEN configuration it cannot push hints
    /// (use the builder's [`listen_config`](PostgresStoreBuilder::listen_config)); followers poll.
    pub fn from_pool(pool: deadpool_postgres::Pool) -> Result<Self> {
        Self::builder().pool(pool).build()
    }
}

/// `leader::connect` entry point: opens a `postgres://` or `postgresql://` URL and makes one round
/// trip ([`PostgresStore::ping`]), so that a wrong address or login fails here.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let store = PostgresStore::from_url(url)?;
    store.ping().await?;
    Ok(Arc::new(store))
}

/// `leader-bench` entry point: the store and its raw floor (the acquire statement alone, on the
/// same pool and prepared statement).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = PostgresStore::from_url(url)?;
    // Create the schema now, so the first measured call of either side does not pay for it.
    store.ensure_schema().await?;
    Ok((Arc::new(store.clone()), Arc::new(store)))
}
