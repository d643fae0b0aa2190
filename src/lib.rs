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
//! use leader::prelude::*; // Election, ElectionOptions, the stream traits (StreamExt, ...)
//!
//! let store = leader::connect("memory://docs").await?;
//! let election = Election::builder(store, "nightly-report")
//!     .participant_id("worker-1")
//!     .options(ElectionOptions::from_lease(Duration::from_secs(3)))
//!     .build()?;
//! assert!(election.try_acquire().await?);
//! println!("leading with fencing token {}", election.leadership().unwrap().token());
//! let mut changes = election.changes(); // a Stream: `next()` comes from the prelude's StreamExt
//! election.stop().await?;
//! while let Some(change) = changes.next().await {
//!     println!("{:?} {:?}", change.kind, change.reason);
//! }
//! # Ok(()) }
//! ```
//!
//! See the README for the guarantees, the provider table and the test setup.

#![deny(clippy::unwrap_used, clippy::expect_used)]
pub use leader_core::*;

mod config;
mod unreachable;
pub use config::{Config, ENV_KEYS};

/// Re-exported so that [`Election::changes`] streams can be consumed (`.next().await`) without a
/// direct dependency on `futures`.
pub use futures::StreamExt;

/// What most programs need, in one import: `use leader::prelude::*;`.
///
/// The election types, the error types, and the stream traits that [`Election::changes`] needs:
/// [`StreamExt`] (`next`, `filter`, ...) and [`LeadershipStreamExt`]
/// (`distinct_until_changed`, `while_leader`, ...).
pub mod prelude {
    pub use crate::{
        connect, ChangeKind, ChangeReason, Election, ElectionOptions, Error, ErrorKind, LeadershipChange,
        LeadershipStreamExt, LeaseStore, Result,
    };
    pub use futures::StreamExt;
}

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

/// Returns `$f(url)` of the provider crate whose `SCHEMES` contain `$scheme`, for every provider
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
/// `postgres://user@host/db`, `redis://host:6379`, `zk://host:2181/root`,
/// `etcd://host:2379,host2:2379/prefix`,
/// `azblob://account@host/container`, or an Azure Storage connection string
/// (`DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=...`,
/// `UseDevelopmentStorage=true`; the container is the string's `Container=NAME`, this library's
/// addition, else `leader-elections`).
///
/// Every server provider makes one round trip before answering, so that a wrong address, a
/// closed port or a refused credential fails here, the same way everywhere: with
/// [`ErrorKind::Unavailable`] whose message names the endpoint (`host:port`) and the operating
/// system's cause (`Connection refused (os error 111)`), or the provider's authentication error.
/// No message, here or from any provider, contains a password or key (see
/// [`redact::secrets`]).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for a URL that does not parse or a scheme this build does not
/// support (the message lists the supported ones); [`ErrorKind::Unavailable`] for a store that
/// cannot be reached; otherwise the provider's own errors.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    let target = target_of(url)?;
    match connect_target(&target, url).await {
        Err(e) => Err(scrubbed(unreachable::explain(&target, url, e).await, url)),
        ok => ok,
    }
}

/// The error with any secret of `url` taken out of its message (a provider that echoed part of
/// the URL unredacted).
fn scrubbed(err: Error, url: &str) -> Error {
    let message = redact::scrub(err.message(), url);
    if message == err.message() {
        err
    } else {
        err.with_message(message)
    }
}

async fn connect_target(target: &Target, url: &str) -> Result<Arc<dyn LeaseStore>> {
    match target {
        Target::Scheme(scheme) => dispatch!(scheme.as_str(), url, connect),
        Target::AzureConnectionString => azure_connection_string(url).await,
    }
}

#[cfg(feature = "azblob")]
async fn azure_connection_string(input: &str) -> Result<Arc<dyn LeaseStore>> {
    leader_azblob::connect(input).await
}

#[cfg(not(feature = "azblob"))]
async fn azure_connection_string(input: &str) -> Result<Arc<dyn LeaseStore>> {
    Err(Error::invalid_argument(format!(
        "{:?} is an Azure Storage connection string; this build lacks the `azblob` feature that opens it",
        redact::secrets(input)
    )))
}

/// For `leader-bench`: the store a URL names together with its [`RawFloor`] (the raw primitive
/// its acquire is built on, on the same driver and connection).
#[doc(hidden)]
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let result = async {
        match target_of(url)? {
            Target::Scheme(scheme) => dispatch!(scheme.as_str(), url, connect_with_floor),
            Target::AzureConnectionString => {
                #[cfg(feature = "azblob")]
                return leader_azblob::connect_with_floor(url).await;
                #[cfg(not(feature = "azblob"))]
                return Err(Error::invalid_argument("Azure Storage connection strings need the `azblob` feature"));
            }
        }
    }
    .await;
    result.map_err(|e| scrubbed(e, url))
}

/// What `connect` was given.
pub(crate) enum Target {
    /// `scheme://...`, the scheme in lower case.
    Scheme(String),
    /// `Key=Value;...` with Azure Storage's keys.
    AzureConnectionString,
}

fn unknown_scheme(scheme: &str, url: &str) -> Error {
    Error::invalid_argument(format!(
        "URL scheme {scheme:?} of {:?} is not supported by this build; supported: {} (enable the crate feature of the provider you need)",
        redact::secrets(url),
        supported_schemes().iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", ")
    ))
}

/// Keys of an Azure Storage connection string (any one of them makes the input one).
const AZURE_KEYS: &[&str] = &[
    "defaultendpointsprotocol",
    "accountname",
    "accountkey",
    "blobendpoint",
    "sharedaccesssignature",
    "usedevelopmentstorage",
];

fn target_of(url: &str) -> Result<Target> {
    if let Some((scheme, _)) = url.split_once("://") {
        if !scheme.is_empty()
            && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Ok(Target::Scheme(scheme.to_ascii_lowercase()));
        }
    }
    let azure = url
        .split(';')
        .filter_map(|part| part.split_once('='))
        .any(|(k, _)| AZURE_KEYS.contains(&k.trim().to_ascii_lowercase().as_str()));
    if azure {
        return Ok(Target::AzureConnectionString);
    }
    Err(Error::invalid_argument(format!(
        "{:?} is not a store URL; expected SCHEME://..., one of: {} (or an Azure Storage connection string)",
        redact::secrets(url),
        supported_schemes().join(", ")
    )))
}
