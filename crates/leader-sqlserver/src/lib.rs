#![doc = include_str!("../README.md")]

mod config;
mod pool;
pub mod sql;
mod store;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use config::{SqlServerConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE};
pub use store::{SqlServerStore, CAPABILITIES};

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["mssql", "sqlserver"];

/// `leader::connect` entry point: a `mssql://`/`sqlserver://` URL (or an ADO.NET connection string).
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let config = SqlServerConfig::parse(url)?;
    // With ensure_schema (the default) connecting already made a round trip.
    let checked = config.ensure_schema;
    let store = SqlServerStore::with_config(config).await?;
    if !checked {
        store.ping().await?;
    }
    Ok(Arc::new(store))
}

/// `leader-bench` entry point: the store and its raw floor (the acquire batch alone, same pool).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = SqlServerStore::connect(url).await?;
    Ok((Arc::new(store.clone()), Arc::new(store::Floor(store))))
}
