//! [`Config`]: which store, how many iterations, and the per-provider defaults (lease duration,
//! iteration counts), plus the command line that fills it.

use std::path::PathBuf;
use std::time::Duration;

use leader::{Error, Result};

/// What one bench run measures, and how much.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store URL, as `leader::connect` takes it.
    pub store: String,
    /// Lease duration of every election the bench runs.
    pub lease: Duration,
    /// Uncontended acquire/renew/release iterations.
    pub iterations: usize,
    /// Graceful handoffs with the store's push channel.
    pub handoffs: usize,
    /// Graceful handoffs with the push channel hidden (each waits up to a lease or so).
    pub poll_handoffs: usize,
    /// Crash-failover runs.
    pub crash_runs: usize,
    /// Largest K of the many-elections section (K = 1, 100, 1000, ... up to this).
    pub max_elections: usize,
    /// Window over which idle cost is counted.
    pub idle_window: Duration,
    /// Window over which each K of the many-elections section is counted.
    pub many_window: Duration,
    /// Tiny N everywhere (for the smoke test).
    pub quick: bool,
    /// Run only the many-elections section (section 5).
    pub many_only: bool,
    /// The executable re-run as the crash-failover holder (`__hold` mode); `None`: this process's
    /// own executable. Unused for memory://, whose crash is simulated in-process.
    pub hold_exe: Option<PathBuf>,
    /// Print one line per section to stderr while running.
    pub progress: bool,
}

impl Config {
    /// Defaults for `store`: a URL, or a provider name alone (`memory`, `fs`, `postgres`, ...), which
    /// reads `LEADER_TEST_<PROVIDER>_URL` (see [`resolve_store`]).
    ///
    /// # Errors
    /// [`InvalidArgument`](leader::ErrorKind::InvalidArgument) when a provider name's variable is unset.
    pub fn for_store(store: &str) -> Result<Config> {
        let url = resolve_store(store)?;
        let provider = provider_of(&url);
        let lease = default_lease(provider);
        let iterations = if matches!(provider, "memory" | "fs") { 1000 } else { 300 };
        Ok(Config {
            store: url,
            lease,
            iterations,
            handoffs: 50,
            poll_handoffs: default_poll_handoffs(lease),
            crash_runs: 5,
            max_elections: 1000,
            idle_window: lease * 3,
            many_window: lease * 2,
            quick: false,
            many_only: false,
            hold_exe: None,
            progress: false,
        })
    }

    /// Tiny N everywhere: a run that proves every section works, in seconds on memory.
    #[must_use]
    pub fn quick(mut self) -> Config {
        self.quick = true;
        self.iterations = 30;
        self.handoffs = 3;
        self.poll_handoffs = 3;
        self.crash_runs = 2;
        self.max_elections = 10;
        self.idle_window = self.lease;
        self.many_window = self.lease;
        self
    }

    /// A different lease; the windows that are counted in leases follow it.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Config {
        let leases = |w: Duration, old: Duration| w.as_secs_f64() / old.as_secs_f64().max(1e-9);
        self.idle_window = lease.mul_f64(leases(self.idle_window, self.lease));
        self.many_window = lease.mul_f64(leases(self.many_window, self.lease));
        self.lease = lease;
        if !self.quick {
            self.poll_handoffs = default_poll_handoffs(lease);
        }
        self
    }

    /// The provider the URL's scheme names (`memory`, `fs`, `postgres`, ...; `unknown` otherwise).
    pub fn provider(&self) -> &'static str {
        provider_of(&self.store)
    }

    /// The URL's scheme, lower case (`memory`, `file`, `postgres`, ...).
    pub fn scheme(&self) -> String {
        scheme_of(&self.store)
    }

    /// The K values of the many-elections section: 1, 100, 1000, ... up to `max_elections`, and
    /// `max_elections` itself.
    pub fn election_counts(&self) -> Vec<usize> {
        let max = self.max_elections.max(1);
        let mut ks = vec![1];
        let mut k = 100;
        while k <= max {
            ks.push(k);
            k *= 10;
        }
        if !ks.contains(&max) {
            ks.push(max);
        }
        ks
    }

    /// Checks the numbers (each at least 1, lease and windows not zero).
    ///
    /// # Errors
    /// [`InvalidArgument`](leader::ErrorKind::InvalidArgument) naming the option.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--iterations", self.iterations),
            ("--handoffs", self.handoffs),
            ("--poll-handoffs", self.poll_handoffs),
            ("--crash-runs", self.crash_runs),
            ("--max-elections", self.max_elections),
        ] {
            if v == 0 {
                return Err(Error::invalid_argument(format!("{name} is 0; it must be at least 1")));
            }
        }
        if self.lease < Duration::from_millis(60) {
            return Err(Error::invalid_argument(format!(
                "--lease {} is too short; it must be at least 60ms (the driver derives timeouts of lease/6)",
                humantime::format_duration(self.lease)
            )));
        }
        if self.idle_window.is_zero() || self.many_window.is_zero() {
            return Err(Error::invalid_argument("the idle and many-elections windows must be longer than zero"));
        }
        Ok(())
    }
}

/// The default lease per provider: 2 s where the store allows it (etcd's smallest lease TTL with
/// its default election timeout is 2 s), ZooKeeper's 4 s session timeout, Consul's 10 s minimum
/// TTL, Azure's 15 s minimum lease.
pub fn default_lease(provider: &str) -> Duration {
    Duration::from_secs(match provider {
        "zookeeper" => 4,
        "consul" => 10,
        "azblob" => 15,
        _ => 2,
    })
}

/// Polled handoffs by default: a polled handoff takes up to about a lease, so 50 of them is a
/// couple of minutes at 2 s but most of an hour at Azure's 15 s.
pub fn default_poll_handoffs(lease: Duration) -> usize {
    if lease <= Duration::from_secs(5) {
        50
    } else {
        10
    }
}

/// A `--store` value as a URL: a URL is kept; `memory` is `memory://leader-bench`; `fs` (or `file`) is
/// `file://<temp dir>/leader-bench-fs`; any other provider name reads `LEADER_TEST_<NAME>_URL`.
///
/// # Errors
/// [`InvalidArgument`](leader::ErrorKind::InvalidArgument) for an empty value or an unset variable.
pub fn resolve_store(store: &str) -> Result<String> {
    let store = store.trim();
    if store.contains("://") {
        return Ok(store.to_owned());
    }
    match store.to_ascii_lowercase().as_str() {
        "" => Err(Error::invalid_argument(
            "--store is empty; give a store URL (memory://, file:///dir, postgres://...) or a provider name",
        )),
        "memory" => Ok("memory://leader-bench".to_owned()),
        "fs" | "file" => Ok(format!("file://{}", std::env::temp_dir().join("leader-bench-fs").display())),
        name => {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::invalid_argument(format!(
                    "--store {store:?} is neither a URL (SCHEME://...) nor a provider name (letters and digits, e.g. postgres)"
                )));
            }
            let var = format!("LEADER_TEST_{}_URL", name.to_ascii_uppercase());
            match std::env::var(&var) {
                Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_owned()),
                _ => Err(Error::invalid_argument(format!(
                    "--store {store}: {var} is not set; start the server with `scripts/servers up {name}` and \
                     `eval \"$(scripts/servers env)\"`, or pass the store URL itself"
                ))),
            }
        }
    }
}

/// The lower-case scheme of a URL (`""` when it has none).
pub fn scheme_of(url: &str) -> String {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default()
}

/// The provider a URL's scheme belongs to, by the schemes each provider crate of this build
/// declares, then by the usual names.
pub fn provider_of(url: &str) -> &'static str {
    let scheme = scheme_of(url);
    let s = scheme.as_str();
    #[cfg(feature = "memory")]
    if leader::memory::SCHEMES.contains(&s) {
        return "memory";
    }
    #[cfg(feature = "fs")]
    if leader::fs::SCHEMES.contains(&s) {
        return "fs";
    }
    #[cfg(feature = "postgres")]
    if leader::postgres::SCHEMES.contains(&s) {
        return "postgres";
    }
    #[cfg(feature = "redis")]
    if leader::redis::SCHEMES.contains(&s) {
        return "redis";
    }
    #[cfg(feature = "zookeeper")]
    if leader::zookeeper::SCHEMES.contains(&s) {
        return "zookeeper";
    }
    #[cfg(feature = "azblob")]
    if leader::azblob::SCHEMES.contains(&s) {
        return "azblob";
    }
    #[cfg(feature = "sqlserver")]
    if leader::sqlserver::SCHEMES.contains(&s) {
        return "sqlserver";
    }
    #[cfg(feature = "consul")]
    if leader::consul::SCHEMES.contains(&s) {
        return "consul";
    }
    #[cfg(feature = "etcd")]
    if leader::etcd::SCHEMES.contains(&s) {
        return "etcd";
    }
    match s {
        "memory" => "memory",
        "file" | "fs" => "fs",
        "postgres" | "postgresql" => "postgres",
        "redis" | "rediss" => "redis",
        "zookeeper" | "zk" => "zookeeper",
        "azblob" | "azure" | "azureblob" => "azblob",
        "sqlserver" | "mssql" => "sqlserver",
        "consul" => "consul",
        "etcd" | "etcds" => "etcd",
        _ => "unknown",
    }
}

/// The store URL without its credentials, for the report and messages (the one redaction of
/// `leader-core`).
pub use leader::redact::secrets as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_resolve() {
        assert_eq!(resolve_store("memory").ok().as_deref(), Some("memory://leader-bench"));
        assert!(resolve_store("fs").is_ok_and(|u| u.starts_with("file://")));
        let err = resolve_store("nosuchprovider").unwrap_err();
        assert!(err.to_string().contains("LEADER_TEST_NOSUCHPROVIDER_URL"), "{err}");
        assert!(resolve_store("a b").is_err());
    }

    #[test]
    fn defaults_per_provider() {
        assert_eq!(default_lease("zookeeper"), Duration::from_secs(4));
        assert_eq!(default_lease("azblob"), Duration::from_secs(15));
        assert_eq!(default_lease("postgres"), Duration::from_secs(2));
        assert_eq!(provider_of("postgresql://x/y"), "postgres");
        assert_eq!(provider_of("file:///tmp/x"), "fs");
        assert_eq!(provider_of("etcd://127.0.0.1:2379/p"), "etcd");
        assert_eq!(default_lease("etcd"), Duration::from_secs(2));
        let c = Config::for_store("memory://bench-config").map(Config::quick);
        assert!(c.is_ok_and(|c| c.election_counts() == vec![1, 10]));
        let c = Config::for_store("memory://bench-config");
        assert!(c.is_ok_and(|c| c.election_counts() == vec![1, 100, 1000] && c.iterations == 1000));
        let c = Config::for_store("azblob://a@127.0.0.1:1/c");
        assert!(c.is_ok_and(|c| c.lease == Duration::from_secs(15) && c.poll_handoffs == 10 && c.iterations == 300));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("memory://x"), "memory://x");
        assert_eq!(redact("azblob://a@h/c?sas=sv%3D1%26sig%3Dx"), "azblob://a@h/c?sas=***");
    }
}
