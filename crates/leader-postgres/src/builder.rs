//! [`PostgresStoreBuilder`]: where the connections come from, which table, pool and TLS settings.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use deadpool_postgres::{Pool, Runtime};
use leader_core::{Error, Result};
use tokio_postgres::Config;

use crate::connection::{apply_defaults, choose_tls, manager, parse_url, Tls, TlsConfig};
use crate::ident::Names;
use crate::listener::Listener;
use crate::sql::Statements;
use crate::store::{Inner, PostgresStore};

/// Default schema of the lease table.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default lease table.
pub const DEFAULT_TABLE: &str = "leader_leases";
/// Default largest number of pooled connections per store.
pub const DEFAULT_POOL_SIZE: usize = 8;

enum Source {
    None,
    Url(String),
    Config(Box<Config>),
    Pool(Pool),
}

/// Builds a [`PostgresStore`].
///
/// ```no_run
/// # fn main() -> leader_core::Result<()> {
/// use leader_postgres::PostgresStore;
/// let store = PostgresStore::builder()
///     .url("postgres://app@db.internal/app?sslmode=require")
///     .schema("coordination")
///     .table("leases")
///     .pool_max_size(4)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct PostgresStoreBuilder {
    source: Source,
    listen_config: Option<Config>,
    schema: Option<String>,
    table: Option<String>,
    pool_max_size: Option<usize>,
    pool_wait_timeout: Duration,
    ensure_schema: bool,
    notifications: bool,
    tls: Option<TlsConfig>,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("pool_max_size", &self.pool_max_size)
            .finish_non_exhaustive()
    }
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            source: Source::None,
            listen_config: None,
            schema: None,
            table: None,
            pool_max_size: None,
            pool_wait_timeout: Duration::from_secs(5),
            ensure_schema: true,
            notifications: true,
            tls: None,
        }
    }
}

impl PostgresStoreBuilder {
    /// Connect with a `postgres://` or `postgresql://` URL (libpq's parameters, plus `schema`,
    /// `table` and `pool_size`, which the builder's own settings override).
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Connect with a tokio-postgres configuration.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.source = Source::Config(Box::new(config));
        self
    }

    /// Run on an existing deadpool pool. A pool cannot lend the dedicated connection LISTEN needs
    /// (deadpool would recycle it), so give [`listen_config`](Self::listen_config) too for push
    /// hints; without it followers poll.
    #[must_use]
    pub fn pool(mut self, pool: Pool) -> Self {
        self.source = Source::Pool(pool);
        self
    }

    /// The configuration of the LISTEN connection, for a store built on an existing pool.
    #[must_use]
    pub fn listen_config(mut self, config: Config) -> Self {
        self.listen_config = Some(config);
        self
    }

    /// Schema of the lease table (default `public`): 1-63 characters of `a-z 0-9 _`, not starting
    /// with a digit or `pg_`.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Name of the lease table (default `leader_leases`): 1-53 characters of `a-z 0-9 _`, not
    /// starting with a digit. The sequence `<table>_token_seq` and the function `<table>_holds`
    /// are named after it.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Largest number of pooled connections (default 8; the LISTEN connection is extra).
    #[must_use]
    pub fn pool_max_size(mut self, size: usize) -> Self {
        self.pool_max_size = Some(size);
        self
    }

    /// How long a call waits for a free pooled connection (default 5 s).
    #[must_use]
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// Whether the first operation creates the schema when it is missing (default true). When
    /// false, call [`PostgresStore::ensure_schema`] yourself or have an administrator run it.
    #[must_use]
    pub fn ensure_schema(mut self, on_first_use: bool) -> Self {
        self.ensure_schema = on_first_use;
        self
    }

    /// Whether followers get push hints through LISTEN/NOTIFY (default true). Without them they
    /// wake at the holder's expiry or every `retry_interval`.
    #[must_use]
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }

    /// Connect with TLS using this rustls configuration (custom roots, client certificates),
    /// unless `sslmode=disable`. Without it, `sslmode=require` uses rustls with the Mozilla roots.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: impl Into<TlsConfig>) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Builds the store. Nothing is sent to the server yet: the pool connects on the first
    /// operation, and the listener when a follower first watches. Must be called inside a tokio
    /// runtime only for use, not for building.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for a bad URL,
    /// schema or table name, pool size, or `sslmode=require` without the `tls` feature.
    pub fn build(self) -> Result<PostgresStore> {
        let mut url_opts = crate::connection::UrlOptions::default();
        let (pool, listen, tls) = match self.source {
            Source::None => {
                return Err(Error::invalid_argument(
                    "PostgresStore::builder() needs a URL, a tokio-postgres Config or a deadpool Pool",
                ))
            }
            Source::Pool(pool) => {
                // The pool's own TLS is not visible; the LISTEN configuration's is the best guess
                // for cancel requests, and without one they are not sent.
                let tls = match &self.listen_config {
                    Some(config) => Some(choose_tls(config, self.tls.clone())?),
                    None => None,
                };
                (pool, self.listen_config, tls)
            }
            Source::Url(url) => {
                let (config, opts) = parse_url(&url)?;
                url_opts = opts;
                let size = self.pool_max_size.or(url_opts.pool_size).unwrap_or(DEFAULT_POOL_SIZE);
                let (pool, config, tls) = new_pool(config, self.tls.clone(), size, self.pool_wait_timeout)?;
                (pool, Some(config), Some(tls))
            }
            Source::Config(config) => {
                let size = self.pool_max_size.unwrap_or(DEFAULT_POOL_SIZE);
                let (pool, config, tls) = new_pool(*config, self.tls.clone(), size, self.pool_wait_timeout)?;
                (pool, Some(config), Some(tls))
            }
        };
        let endpoint = listen.as_ref().map_or_else(|| "the pool's server".to_owned(), endpoint_of);
        let schema = self.schema.or(url_opts.schema).unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        let table = self.table.or(url_opts.table).unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        let names = Names::new(&schema, &table)?;
        let listener = match (self.notifications, listen) {
            (true, Some(mut config)) => {
                apply_defaults(&mut config);
                let tls = choose_tls(&config, self.tls)?;
                Some(Listener::new(config, tls, names.channel.clone()))
            }
            _ => None,
        };
        Ok(PostgresStore::from_inner(Inner {
            pool,
            sql: Statements::new(&names),
            names,
            auto_schema: self.ensure_schema,
            schema_ready: AtomicBool::new(false),
            schema_lock: tokio::sync::Mutex::new(()),
            listener,
            tls,
            endpoint,
        }))
    }
}

fn new_pool(mut config: Config, tls: Option<TlsConfig>, size: usize, wait: Duration) -> Result<(Pool, Config, Tls)> {
    if size == 0 || size > 1000 {
        return Err(Error::invalid_argument(format!("pool size {size} must be from 1 to 1000")));
    }
    apply_defaults(&mut config);
    let tls = choose_tls(&config, tls)?;
    let connect = config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(5));
    let pool = Pool::builder(manager(config.clone(), &tls))
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .build()
        .map_err(|e| Error::invalid_argument(format!("the PostgreSQL pool cannot be built: {e}")))?;
    Ok((pool, config, tls))
}

/// `host:port` of every host a configuration names (a Unix socket as its directory), for messages.
pub(crate) fn endpoint_of(config: &Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            tokio_postgres::config::Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", port(i)),
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{}", port(i)),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => format!("{}/.s.PGSQL.{}", path.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        // libpq's default: the local socket, here as TCP on localhost (tokio-postgres's default).
        format!("localhost:{}", port(0))
    } else {
        hosts.join(",")
    }
}
