//! # leader
//!
//! Distributed leader election over a store you already run — PostgreSQL, Redis, SQL Server,
//! Consul, ZooKeeper, etcd, Azure Blob Storage, a local directory, or memory — so that exactly one
//! instance of a service does the singleton work.
//!
//! This facade re-exports [`leader_core`] and each provider crate behind a cargo feature of the
//! same name, and picks a provider from a URL with [`connect`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> leader::Result<()> {
//! use std::time::Duration;
//! use leader::{Election, ElectionOptions};
//!
//! let store = leader::connect("memory://docs").await?;
//! let election = Election::builder(store, "nightly-report")
//!     .participant_id("worker-1")
//!     .options(ElectionOptions::from_lease(Duration::from_secs(3)))
//!     .build()?;
//! assert!(election.try_acquire().await?);
//! println!("leading with fencing token {}", election.leadership().unwrap().token());
//! election.stop().await?;
//! # Ok(()) }
//! ```
//!
//! See the README for the guarantees, the provider table and the test setup.

#![deny(clippy::unwrap_used, clippy::expect_used)]
pub use leader_core::*;

mod config;
pub use config::{Config, ENV_KEYS};

#[cfg(feature = "azblob")]
pub use leader_azblob as azblob;
#[cfg(feature = "consul")]
pub use leader_consul as consul;
#[cfg(feature = "etcd")]
pub use leader_etcd as etcd;
#[cfg(all(unix, feature = "fs"))]
pub use leader_fs as fs;
#[cfg(feature = "memory")]
pub use leader_memory as memory;
#[cfg(feature = "postgres")]
pub use leader_postgres as postgres;
#[cfg(feature = "redis")]
pub use leader_redis as redis;
#[cfg(feature = "sqlserver")]
pub use leader_sqlserver as sqlserver;
#[cfg(feature = "zookeeper")]
pub use leader_zookeeper as zookeeper;

use std::sync::Arc;

/// The URL schemes this build understands, by enabled feature.
pub fn supported_schemes() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut schemes: Vec<&'static str> = Vec::new();
    #[cfg(feature = "memory")]
    schemes.extend(leader_memory::SCHEMES);
    #[cfg(all(unix, feature = "fs"))]
    schemes.extend(leader_fs::SCHEMES);
    #[cfg(feature = "postgres")]
    schemes.extend(leader_postgres::SCHEMES);
    #[cfg(feature = "redis")]
    schemes.extend(leader_redis::SCHEMES);
    #[cfg(feature = "sqlserver")]
    schemes.extend(leader_sqlserver::SCHEMES);
    #[cfg(feature = "consul")]
    schemes.extend(leader_consul::SCHEMES);
    #[cfg(feature = "zookeeper")]
    schemes.extend(leader_zookeeper::SCHEMES);
    #[cfg(feature = "azblob")]
    schemes.extend(leader_azblob::SCHEMES);
    #[cfg(feature = "etcd")]
    schemes.extend(leader_etcd::SCHEMES);
    schemes
}

/// Calls `$f(url)` in the provider crate whose `SCHEMES` contain `$scheme`, for every provider
/// enabled in this build.
macro_rules! dispatch {
    ($scheme:expr, $url:expr, $f:ident) => {{
        #[cfg(feature = "memory")]
        if leader_memory::SCHEMES.contains(&$scheme) {
            return leader_memory::$f($url).await;
        }
        #[cfg(all(unix, feature = "fs"))]
        if leader_fs::SCHEMES.contains(&$scheme) {
            return leader_fs::$f($url).await;
        }
        #[cfg(all(not(unix), feature = "fs"))]
        if $scheme == "file" {
            return Err(Error::unsupported(format!(
                "{:?}: the file:// store (leader-fs) needs a Unix system (flock, FIFOs, hard links); \
                 this build targets {}",
                redact($url),
                std::env::consts::OS
            )));
        }
        #[cfg(feature = "postgres")]
        if leader_postgres::SCHEMES.contains(&$scheme) {
            return leader_postgres::$f($url).await;
        }
        #[cfg(feature = "redis")]
        if leader_redis::SCHEMES.contains(&$scheme) {
            return leader_redis::$f($url).await;
        }
        #[cfg(feature = "sqlserver")]
        if leader_sqlserver::SCHEMES.contains(&$scheme) {
            return leader_sqlserver::$f($url).await;
        }
        #[cfg(feature = "consul")]
        if leader_consul::SCHEMES.contains(&$scheme) {
            return leader_consul::$f($url).await;
        }
        #[cfg(feature = "zookeeper")]
        if leader_zookeeper::SCHEMES.contains(&$scheme) {
            return leader_zookeeper::$f($url).await;
        }
        #[cfg(feature = "azblob")]
        if leader_azblob::SCHEMES.contains(&$scheme) {
            return leader_azblob::$f($url).await;
        }
        #[cfg(feature = "etcd")]
        if leader_etcd::SCHEMES.contains(&$scheme) {
            return leader_etcd::$f($url).await;
        }
        Err(unknown_scheme(&$scheme, $url))
    }};
}

/// Opens the store a URL names, e.g. `memory://name`, `file:///var/lib/app/leases`,
/// `postgres://user@host/db`, `redis://host:6379`, `etcd://host:2379,host2:2379/prefix`.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for a URL that does not parse or a scheme this build does not
/// support (the message lists the supported ones); otherwise the provider's own errors.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let scheme = scheme_of(url)?;
    dispatch!(scheme.as_str(), url, connect)
}

/// For `leader-bench`: the store a URL names together with its [`RawFloor`] (the raw primitive
/// its acquire is built on, on the same driver and connection).
#[doc(hidden)]
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let scheme = scheme_of(url)?;
    dispatch!(scheme.as_str(), url, connect_with_floor)
}

fn unknown_scheme(scheme: &str, url: &str) -> Error {
    Error::invalid_argument(format!(
        "URL scheme {scheme:?} of {:?} is not supported by this build; supported: {} (enable the crate feature of the provider you need)",
        redact(url),
        supported_schemes().iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", ")
    ))
}

fn scheme_of(url: &str) -> Result<String> {
    match url.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Ok(scheme.to_ascii_lowercase())
        }
        _ => Err(Error::invalid_argument(format!(
            "{:?} is not a store URL; expected SCHEME://..., one of: {}",
            redact(url),
            supported_schemes().join(", ")
        ))),
    }
}

/// The URL without a password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let creds = &url[start + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..start], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
