#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod auth;
mod config;
mod floor;
mod listing;
mod record;
mod rest;
mod store;

use std::sync::Arc;

use leader_core::{LeaseStore, RawFloor, Result};

pub use auth::{Credential, TokenProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
pub use config::{validate_container, AzureBlobStoreBuilder, DEFAULT_CONTAINER, DEFAULT_POOL_SIZE};
pub use store::{AzureBlobStore, MAX_LEASE, MIN_LEASE};

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["azblob", "azure"];

/// `leader::connect` entry point: opens an `azblob://` / `azure://` URL (or a connection string)
/// and makes one round trip ([`AzureBlobStore::ping`]), so that a wrong address or key fails here.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let store = AzureBlobStore::from_url(url)?;
    store.ping().await?;
    Ok(Arc::new(store))
}

/// `leader-bench` entry point: the store and its raw floor, one Acquire Lease request on the same
/// HTTP client.
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = AzureBlobStore::from_url(url)?;
    let floor = store.raw_floor();
    Ok((Arc::new(store), Arc::new(floor)))
}

impl AzureBlobStore {
    fn raw_floor(&self) -> floor::LeaseFloor {
        floor::LeaseFloor { rest: self.rest.clone(), blob_prefix: self.blob_name("") }
    }
}
