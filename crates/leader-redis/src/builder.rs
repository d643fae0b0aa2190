//! [`RedisStoreBuilder`]: where the store connects and how it names and guards its keys.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::prelude::{Builder, Config, ReconnectPolicy};
use fred::types::config::Options;
use fred::types::config::UnresponsiveConfig;
use fred::types::InfoKind;
use leader_core::{Error, Result};

use crate::clock::ServerClock;
use crate::config::RedisConfig;
use crate::error::from_fred;
use crate::keys::{validate_key_prefix, Keys, DEFAULT_KEY_PREFIX};
use crate::liveness::Liveness;
use crate::store::{Conn, Inner, RedisStore, WaitForReplicas};
use crate::subscriber::Subscriber;

/// The longest lease a store accepts unless told otherwise.
pub const DEFAULT_MAX_LEASE: Duration = Duration::from_secs(60);
/// The longest `max_lease` (and `quarantine`) a store can be given.
pub const MAX_MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// The default [`RedisStoreBuilder::unresponsive_timeout`].
pub const DEFAULT_UNRESPONSIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The default [`RedisStoreBuilder::connection_timeout`].
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// URL query parameters this crate reads (and removes before fred sees the URL).
const PARAMS: &[&str] = &["key_prefix", "max_lease", "quarantine", "wait_replicas", "wait_timeout"];

enum Source {
    Url(String),
    Config(Box<Config>),
    Client(Client),
    Pool(Pool),
}

/// Builds a [`RedisStore`]. Start from [`RedisStore::builder`] (a URL),
/// [`RedisStore::from_config`], [`RedisStore::from_client`] or [`RedisStore::from_pool`].
///
/// ```no_run
/// # async fn f() -> leader_core::Result<()> {
/// use std::time::Duration;
/// let store = leader_redis::RedisStore::builder("redis://127.0.0.1:6379/0")
///     .key_prefix("myapp:leader-election")
///     .max_lease(Duration::from_secs(30))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub struct RedisStoreBuilder {
    source: Source,
    key_prefix: String,
    max_lease: Duration,
    quarantine: Option<Duration>,
    wait: Option<WaitForReplicas>,
    unresponsive_timeout: Duration,
    connection_timeout: Duration,
    push: bool,
}

impl RedisStoreBuilder {
    fn new(source: Source) -> Self {
        RedisStoreBuilder {
            source,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            max_lease: DEFAULT_MAX_LEASE,
            quarantine: None,
            wait: None,
            unresponsive_timeout: DEFAULT_UNRESPONSIVE_TIMEOUT,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            push: true,
        }
    }

    pub(crate) fn from_url(url: &str) -> Self {
        Self::new(Source::Url(url.to_owned()))
    }
    pub(crate) fn from_config(config: Config) -> Self {
        Self::new(Source::Config(Box::new(config)))
    }
    pub(crate) fn from_client(client: Client) -> Self {
        Self::new(Source::Client(client))
    }
    pub(crate) fn from_pool(pool: Pool) -> Self {
        Self::new(Source::Pool(pool))
    }

    /// The prefix of every key and of the pub/sub channel (default `leader`): 1-64 printable ASCII
    /// characters, no spaces or braces. Stores with different prefixes never see each other's
    /// elections. URL parameter `key_prefix`.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The longest lease this store accepts (default 60 s); `check_options` refuses longer ones.
    /// URL parameter `max_lease` (e.g. `30s`).
    #[must_use]
    pub fn max_lease(mut self, max_lease: Duration) -> Self {
        self.max_lease = max_lease;
        self
    }

    /// How long after the Redis server's start (or after a replica's promotion to primary) nobody
    /// is elected, for elections whose data is from before then; default: the lease of the
    /// election asking, which is enough when every participant of an election uses the same lease.
    /// Set it to the longest lease of an election whose participants use different leases. Zero
    /// turns the wait off: only do that where every participant restarts with the server, or in
    /// tests. See the crate docs (*Restarts and failovers*). URL parameter `quarantine` (e.g. `0s`).
    #[must_use]
    pub fn quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = Some(quarantine);
        self
    }

    /// After each acquire and renew, `WAIT replicas timeout`: the call succeeds only when at least
    /// `replicas` replicas acknowledged the write within `timeout`. See the crate docs for what this
    /// does and does not guarantee. Not available on Redis Cluster. URL parameters `wait_replicas`
    /// and `wait_timeout`.
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some(WaitForReplicas { replicas, timeout });
        self
    }

    /// A connection whose oldest unanswered command waits longer than this is closed and
    /// reconnected (default 2 s), so a half-open or black-holed TCP connection does not stall the
    /// store (nor keep it on a Sentinel primary that has since been replaced). Only for stores that
    /// make their own connection (from a URL or a `Config`); over your own client, configure
    /// fred's `UnresponsiveConfig`, which counts from the last write, so commands sent more often
    /// than its timeout keep it from firing.
    #[must_use]
    pub fn unresponsive_timeout(mut self, timeout: Duration) -> Self {
        self.unresponsive_timeout = timeout;
        self
    }

    /// How long one attempt to connect may take (default 5 s). Only for stores that make their own
    /// connection.
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Whether to open the subscriber connection for push handoff (default true). Without it
    /// `watch` answers `None` and followers poll.
    #[must_use]
    pub fn push_notifications(mut self, on: bool) -> Self {
        self.push = on;
        self
    }

    /// Connects (for URL and `Config` sources) and the subscriber connection (which subscribes to
    /// the store's channel while a `watch` stream exists), and returns the store.
    pub async fn build(mut self) -> Result<RedisStore> {
        let source = std::mem::replace(&mut self.source, Source::Url(String::new()));
        let source = match source {
            Source::Url(url) => {
                let (config, params) = parse_url(&url)?;
                for (key, value) in params {
                    self = self.apply_param(&key, &value)?;
                }
                Source::Config(Box::new(config))
            }
            other => other,
        };
        let quarantine = self.validate()?;
        let (conn, owned) = match source {
            Source::Client(client) => (Conn::Client(client), false),
            Source::Pool(pool) => (Conn::Pool(pool), false),
            Source::Config(config) => (Conn::Client(self.connect(*config).await?), true),
            Source::Url(_) => return Err(Error::invalid_argument("Redis URL could not be read")), // replaced above
        };
        self.finish(conn, owned, quarantine).await
    }

    /// Checks the settings; returns the quarantine.
    fn validate(&self) -> Result<Option<Duration>> {
        validate_key_prefix(&self.key_prefix)?;
        if self.max_lease.is_zero() || self.max_lease > MAX_MAX_LEASE {
            return Err(Error::invalid_argument(format!(
                "max_lease {} must be between 1ms and {}",
                humantime::format_duration(self.max_lease),
                humantime::format_duration(MAX_MAX_LEASE)
            )));
        }
        let quarantine = self.quarantine;
        if quarantine.is_some_and(|q| q > MAX_MAX_LEASE) {
            return Err(Error::invalid_argument(format!(
                "quarantine {} is longer than {}",
                humantime::format_duration(quarantine.unwrap_or_default()),
                humantime::format_duration(MAX_MAX_LEASE)
            )));
        }
        if let Some(wait) = &self.wait {
            if wait.replicas == 0 || wait.timeout.is_zero() {
                return Err(Error::invalid_argument(format!(
                    "wait_for_replicas({}, {}) needs at least 1 replica and a timeout above 0",
                    wait.replicas,
                    humantime::format_duration(wait.timeout)
                )));
            }
        }
        Ok(quarantine)
    }

    /// A client of our own for `config`, connected.
    async fn connect(&self, config: Config) -> Result<Client> {
        let mut builder = Builder::from_config(config);
        let (unresponsive, connect) = (self.unresponsive_timeout, self.connection_timeout);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = connect;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(unresponsive),
                    interval: (unresponsive / 4).max(Duration::from_millis(10)),
                };
            })
            // Reconnect for ever, 50 ms to 2 s apart: the store outlives outages (guarantee 7).
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        let client = builder.build().map_err(from_fred)?;
        client.init().await.map_err(from_fred)?;
        Ok(client)
    }

    async fn finish(self, conn: Conn, owned: bool, quarantine: Option<Duration>) -> Result<RedisStore> {
        let first = conn.client().clone();
        let clustered = first.is_clustered();
        let clock = ServerClock::new();
        let checked = if clustered && self.wait.is_some() {
            Err(Error::invalid_argument(
                "wait_for_replicas is not available on Redis Cluster: WAIT is not routed to the node of the election's key",
            ))
        } else {
            check_servers(&first, &clock).await
        };
        if let Err(e) = checked {
            if owned {
                let _ = first.quit().await;
            }
            return Err(e);
        }
        let keys = Keys::new(&self.key_prefix, clustered);
        let subscriber = if self.push {
            let mut builder = Builder::from_config(first.client_config());
            builder.set_connection_config(first.connection_config().clone());
            builder.set_performance_config(first.perf_config());
            builder.set_policy(
                first.client_reconnect_policy().unwrap_or(ReconnectPolicy::new_exponential(0, 50, 2_000, 2)),
            );
            let started = match builder.build_subscriber_client() {
                Ok(client) => Subscriber::start(client, keys.channel().to_owned()).await,
                Err(e) => Err(from_fred(e)),
            };
            match started {
                Ok(subscriber) => Some(subscriber),
                Err(e) => {
                    if owned {
                        let _ = first.quit().await;
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                owned,
                keys,
                max_lease: self.max_lease,
                quarantine,
                wait: self.wait,
                subscriber,
                clock,
                call_budget_us: AtomicU64::new(0),
                liveness: owned.then(|| Liveness::new(self.unresponsive_timeout)),
            }),
        })
    }

    fn apply_param(self, key: &str, value: &str) -> Result<Self> {
        let duration = || {
            humantime::parse_duration(value).map_err(|e| {
                Error::invalid_argument(format!("URL parameter {key}={value:?} is not a duration like \"30s\": {e}"))
            })
        };
        Ok(match key {
            "key_prefix" => self.key_prefix(value),
            "max_lease" => self.max_lease(duration()?),
            "quarantine" => self.quarantine(duration()?),
            "wait_replicas" => {
                let n: u32 = value.parse().map_err(|_| {
                    Error::invalid_argument(format!("URL parameter wait_replicas={value:?} is not a whole number"))
                })?;
                let timeout = self.wait.as_ref().map_or(Duration::from_millis(100), |w| w.timeout);
                self.wait_for_replicas(n, timeout)
            }
            "wait_timeout" => {
                let replicas = self.wait.as_ref().map_or(1, |w| w.replicas);
                self.wait_for_replicas(replicas, duration()?)
            }
            _ => self,
        })
    }
}

/// Checks every primary the client talks to (each primary of a Cluster) before the store is
/// made: its `maxmemory-policy` must not evict (see [`check_eviction_policy`]), and its clock
/// seeds `clock`. One round trip per primary (`INFO memory`, `TIME`).
async fn check_servers(client: &Client, clock: &ServerClock) -> Result<()> {
    let nodes = if client.is_clustered() { client.active_connections() } else { Vec::new() };
    let targets: Vec<Option<fred::types::config::Server>> =
        if nodes.is_empty() { vec![None] } else { nodes.into_iter().map(Some).collect() };
    for node in targets {
        let options = Options { cluster_node: node.clone(), ..Default::default() };
        let on = client.with_options(&options);
        let memory: String = on.info(Some(InfoKind::Memory)).await.map_err(from_fred)?;
        let name = node.map_or_else(|| "the Redis server".to_owned(), |n| format!("Redis node {n}"));
        check_eviction_policy(&name, &memory)?;
        let time: Vec<String> = on
            .custom(
                fred::types::CustomCommand::new_static("TIME", fred::types::ClusterHash::Random, false),
                Vec::<String>::new(),
            )
            .await
            .map_err(from_fred)?;
        if let [secs, micros] = time.as_slice() {
            if let (Ok(s), Ok(us)) = (secs.parse::<u64>(), micros.parse::<u64>()) {
                clock.observe(s.saturating_mul(1_000_000).saturating_add(us));
            }
        }
    }
    Ok(())
}

/// Refuses a `maxmemory-policy` (from `INFO memory` text; managed services refuse `CONFIG GET`)
/// under which Redis may evict a lease before it ends: `volatile-*` evicts keys with a TTL first,
/// and the lease keys are the only keys of this store with one; `allkeys-*` evicts any key.
pub(crate) fn check_eviction_policy(server: &str, info_memory: &str) -> Result<()> {
    let policy = info_memory
        .lines()
        .find_map(|l| l.trim().strip_prefix("maxmemory_policy:"))
        .map(str::trim)
        .unwrap_or("noeviction");
    if policy == "noeviction" {
        return Ok(());
    }
    let what = if policy.starts_with("volatile-") {
        "evicts keys that have a TTL, and the lease keys are the only keys of this store with one"
    } else {
        "may evict any key, leases and their records included"
    };
    let maxmemory =
        info_memory.lines().find_map(|l| l.trim().strip_prefix("maxmemory_human:")).map(str::trim).unwrap_or("?");
    Err(Error::invalid_argument(format!(
        "{server} has maxmemory-policy {policy} (maxmemory {maxmemory}): under memory pressure it {what}, so a \
         lease could vanish while its holder still leads and a second leader be elected; set maxmemory-policy to \
         noeviction (CONFIG SET maxmemory-policy noeviction, or the managed service's parameter group)"
    )))
}

/// A builder for `config.url` with the settings of `config` (see [`RedisConfig`]).
impl From<RedisConfig> for RedisStoreBuilder {
    fn from(config: RedisConfig) -> Self {
        let mut builder = RedisStoreBuilder::from_url(&config.url)
            .key_prefix(config.key_prefix)
            .max_lease(config.max_lease)
            .unresponsive_timeout(config.unresponsive_timeout)
            .connection_timeout(config.connection_timeout)
            .push_notifications(config.push_notifications);
        if let Some(quarantine) = config.quarantine {
            builder = builder.quarantine(quarantine);
        }
        if let Some(wait) = config.wait_for_replicas {
            builder = builder.wait_for_replicas(wait.replicas, wait.timeout);
        }
        builder
    }
}

/// Splits our parameters off the URL and lets fred parse the rest.
pub(crate) fn parse_url(url: &str) -> Result<(Config, Vec<(String, String)>)> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid_argument(format!("invalid Redis URL {:?}: {e}", redact(url))))?;
    if !crate::SCHEMES.contains(&parsed.scheme()) {
        return Err(Error::invalid_argument(format!(
            "URL scheme {:?} is not a Redis scheme; use one of {}",
            parsed.scheme(),
            crate::SCHEMES.join(", ")
        )));
    }
    let (ours, rest): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| PARAMS.contains(&k.as_str()));
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    if parsed.scheme().starts_with("rediss") {
        // See Cargo.toml: fred asks rustls for the process default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let config = Config::from_url(parsed.as_str())
        .map_err(|e| Error::invalid_argument(format!("invalid Redis URL {:?}: {}", redact(url), e.details())))?;
    Ok((config, ours))
}

/// The URL without its password, for error messages: the one redaction every crate uses.
pub(crate) fn redact(url: &str) -> String {
    leader_core::redact::secrets(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_ours_and_the_rest_is_fred_s() {
        let (config, params) = parse_url("redis://127.0.0.1:56379/2?key_prefix=app&quarantine=0s").unwrap();
        assert_eq!(config.database, Some(2));
        assert_eq!(params.len(), 2);
        let (config, _) = parse_url("redis-cluster://127.0.0.1:30001?node=127.0.0.1:30002").unwrap();
        assert!(config.server.is_clustered());
        let (config, _) = parse_url("redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster").unwrap();
        assert!(config.server.is_sentinel());
        let (config, _) = parse_url("rediss://127.0.0.1:6380").unwrap();
        assert!(config.tls.is_some());
    }

    #[test]
    fn a_builder_from_a_config_has_its_settings() {
        let mut config = RedisConfig::new("redis://127.0.0.1:56379");
        config.key_prefix = "app".into();
        config.max_lease = Duration::from_secs(30);
        config.quarantine = Some(Duration::ZERO);
        config.wait_for_replicas =
            Some(crate::WaitForReplicasConfig { replicas: 2, timeout: Duration::from_millis(250) });
        config.unresponsive_timeout = Duration::from_millis(800);
        config.connection_timeout = Duration::from_secs(1);
        config.push_notifications = false;
        let b = config.builder();
        assert!(matches!(&b.source, Source::Url(url) if url == "redis://127.0.0.1:56379"));
        assert_eq!(
            (b.key_prefix.as_str(), b.max_lease, b.quarantine),
            ("app", Duration::from_secs(30), Some(Duration::ZERO))
        );
        assert_eq!(b.wait.map(|w| (w.replicas, w.timeout)), Some((2, Duration::from_millis(250))));
        assert_eq!(
            (b.unresponsive_timeout, b.connection_timeout, b.push),
            (Duration::from_millis(800), Duration::from_secs(1), false)
        );
        let d = RedisConfig::new("redis://h").builder();
        assert_eq!(
            (d.key_prefix.as_str(), d.max_lease, d.quarantine, d.push),
            (DEFAULT_KEY_PREFIX, DEFAULT_MAX_LEASE, None, true)
        );
    }

    #[test]
    fn only_noeviction_passes_the_policy_check() {
        let info = |p: &str| {
            format!("# Memory\r\nused_memory:1\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:{p}\r\n")
        };
        assert!(check_eviction_policy("s", &info("noeviction")).is_ok());
        assert!(check_eviction_policy("s", "# Memory\r\n").is_ok(), "no policy shown: nothing to refuse");
        for policy in ["volatile-lru", "volatile-ttl", "allkeys-lru", "allkeys-random", "volatile-lfu"] {
            let err = check_eviction_policy("s", &info(policy)).unwrap_err();
            assert_eq!(err.kind(), leader_core::ErrorKind::InvalidArgument);
            let text = err.to_string();
            assert!(
                text.contains("maxmemory-policy") && text.contains(policy) && text.contains("noeviction"),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_urls_name_the_value() {
        let err = parse_url("postgres://x").unwrap_err();
        assert_eq!(err.kind(), leader_core::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("postgres"));
        let err = parse_url("redis://user:secret@[::1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
