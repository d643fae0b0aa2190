//! [`ZooKeeperStore`]: the [`LeaseStore`] over one ZooKeeper session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use leader_core::{
    async_trait, validate_election_name, Acquire, AcquireRequest, Capabilities, ElectionOptions, Error, LeaderInfo,
    Lease, LeaseStore, Metadata, Renewal, Result,
};
use zookeeper_client::CreateMode;

use crate::config::{parse_url, ZooKeeperStoreBuilder};
use crate::nodes;
use crate::session::{zk_error, Inner};

/// A lease store on ZooKeeper: one session per store handle (clones share it), elections under a
/// root path. See the crate docs for the recipe, the tokens and the session rules.
#[derive(Clone)]
pub struct ZooKeeperStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ZooKeeperStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperStore")
            .field("root", &self.inner.root)
            .field("session_timeout", &self.inner.negotiated())
            .finish_non_exhaustive()
    }
}

/// Watch activity of one store, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchCounters {
    /// Watches set on a predecessor's node by candidates' watch streams.
    pub predecessor_watches: u64,
    /// Hints yielded because the server fired a watch (a node deleted, the election changed, the
    /// session ended).
    pub woken: u64,
    /// Sessions this store has opened (1 + the number of expiries it recovered from).
    pub sessions: u64,
}

impl ZooKeeperStore {
    /// A builder for `hosts` (`host:port[,host:port]`), to set the root path, session timeout,
    /// ACLs and credentials.
    pub fn builder(hosts: &str) -> ZooKeeperStoreBuilder {
        ZooKeeperStoreBuilder::new(hosts)
    }

    /// Connects to `zk://host:port[,host:port]/root[?session_timeout=15s]` (or `zookeeper://`).
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for a bad URL;
    /// [`Unavailable`](leader_core::ErrorKind::Unavailable) when no server answers.
    pub async fn connect(url: &str) -> Result<Self> {
        parse_url(url)?.connect().await
    }

    pub(crate) async fn open(cfg: ZooKeeperStoreBuilder) -> Result<Self> {
        Ok(ZooKeeperStore { inner: Inner::open(cfg).await? })
    }

    /// The session timeout the server granted: the `lease_duration` every election on this store
    /// must use.
    pub fn session_timeout(&self) -> Duration {
        self.inner.negotiated()
    }

    /// The id of the store's current session.
    pub fn session_id(&self) -> i64 {
        self.inner.live_session().id
    }

    /// The root path the elections live under.
    pub fn root(&self) -> &str {
        &self.inner.root
    }

    /// Watch and session counts; see [`WatchCounters`].
    pub fn watch_counters(&self) -> WatchCounters {
        let c = &self.inner.counters;
        WatchCounters {
            predecessor_watches: c.armed.load(Ordering::Relaxed),
            woken: c.woken.load(Ordering::Relaxed),
            sessions: c.sessions.load(Ordering::Relaxed),
        }
    }

    /// Test hook: ends this store's session on the server, as an expiry would (attaches a second
    /// connection to the session and closes it). Every node of the session is deleted; the store
    /// opens a new session on its next call. Returns once this store has seen its session end.
    ///
    /// # Errors
    /// When the server cannot be reached, or the session did not end within three timeouts.
    pub async fn expire_session(&self) -> Result<()> {
        self.inner.expire_session().await
    }
}

#[async_trait]
impl LeaseStore for ZooKeeperStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.inner.try_acquire(req).await
    }

    /// Verifies with one round trip through the ensemble leader (`sync` + `getData`) that our node
    /// is still there, in our session, and gives it another `ttl` before the node guard deletes it
    /// (see the crate docs, "Ensembles").
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.inner.renew(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.inner.release(lease).await
    }

    /// Verifies every lease of the batch with one `sync` and one multi-read of all their nodes
    /// (`getData` each), sent together: one round trip through the ensemble leader for the whole
    /// batch. Each lease is then judged and answered as [`renew`](Self::renew) would.
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        self.inner.renew_batch(batch).await
    }

    /// One multi-read to check the nodes, then one multi-op deleting those found ours (one by one
    /// only if that transaction fails on a node that changed meanwhile: a multi-op is
    /// all-or-nothing, and each lease must get its own answer).
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        self.inner.release_batch(leases).await
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.inner.update_metadata(lease, metadata).await
    }

    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.inner.withdraw(election, instance_id).await
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.inner.current(election).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.inner.list(prefix).await
    }

    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        if validate_election_name(election).is_err()
            || instance_id.is_some_and(|i| nodes::validate_instance_id(i).is_err())
        {
            return None;
        }
        Some(crate::watch::stream(&self.inner, election, instance_id))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: true,
            // Session expiry deletes the node, which fires the successor's watch.
            pushes_expiry: true,
            server_side_expiry: true,
            // czxid: grows for the life of the ensemble's data.
            durable_tokens: true,
            cross_host: true,
            // ZooKeeper is CP: writes and session expiry go through the quorum, and renews sync
            // through the ensemble leader (tests/topology_ensemble.rs).
            survives_store_failover: true,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        let negotiated = self.inner.negotiated();
        if options.lease_duration == negotiated {
            return Ok(());
        }
        let requested = self.inner.requested();
        let clamped = if requested == negotiated {
            String::new()
        } else {
            format!(
                " (the store asked for {} and the server clamped it to its minSessionTimeout/maxSessionTimeout)",
                humantime::format_duration(requested)
            )
        };
        Err(Error::invalid_argument(format!(
            "lease_duration {} must equal this ZooKeeper store's negotiated session timeout {}{clamped}: \
             the lease is the session; build the store with session_timeout = lease_duration \
             (URL parameter ?session_timeout=...) or use ElectionOptions::from_lease({})",
            humantime::format_duration(options.lease_duration),
            humantime::format_duration(negotiated),
            humantime::format_duration(negotiated),
        )))
    }
}

/// `leader-bench`'s floor: the raw primitive the acquire is built on.
#[async_trait]
impl leader_core::RawFloor for ZooKeeperStore {
    fn describe(&self) -> String {
        "create EPHEMERAL_SEQUENTIAL candidate node + delete it (two round trips on the store's session)".to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        nodes::validate_instance_id(instance_id)?;
        let s = self.inner.session().await?;
        let epath = self.inner.election_path(election);
        let prefix = nodes::node_prefix(&epath, instance_id);
        let opts = CreateMode::EphemeralSequential.with_acls(self.inner.acls());
        let seq = match s.client.create(&prefix, b"{}", &opts).await {
            Ok((_, seq)) => seq,
            Err(zookeeper_client::Error::NoNode) => {
                self.inner.ensure_election(&s, &epath).await?;
                s.client.create(&prefix, b"{}", &opts).await.map_err(zk_error("create", &prefix))?.1
            }
            Err(e) => return Err(zk_error("create", &prefix)(e)),
        };
        let path = format!("{prefix}{seq}");
        s.client.delete(&path, None).await.map_err(zk_error("delete", &path))
    }
}
