//! The store's one ZooKeeper session, replaced by a fresh one when it expires, and the mapping of
//! ZooKeeper errors onto [`leader_core::Error`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use leader_core::{Error, Result};
use zookeeper_client::{self as zk, Acl, Acls, Client, CreateMode, CreateOptions, SessionState};

use crate::config::ZooKeeperStoreBuilder;
use crate::guard::Guards;

/// One live (or last known) session and its id.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) id: i64,
}

/// Counts kept for tests and monitoring; see [`WatchCounters`](crate::WatchCounters).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) armed: AtomicU64,
    pub(crate) woken: AtomicU64,
    pub(crate) sessions: AtomicU64,
}

/// What every clone of a store shares.
pub(crate) struct Inner {
    /// Ourselves, for the tasks we spawn (they must not keep a dropped store alive).
    pub(crate) me: Weak<Inner>,
    hosts: String,
    pub(crate) root: String,
    requested_timeout: Duration,
    acls: Vec<Acl>,
    auth: Vec<(String, Vec<u8>)>,
    current: Mutex<Arc<Session>>,
    /// Serialises the creation of a replacement session.
    reconnect: tokio::sync::Mutex<()>,
    negotiated_ms: AtomicU64,
    /// Ids of this store's earlier sessions (the last few): their nodes are ours and dead to us.
    past: Mutex<Vec<i64>>,
    /// Bumped after this store creates a candidate node: a watch stream that looked for its own
    /// node before the node existed looks again instead of waking its follower for nothing.
    pub(crate) created: tokio::sync::watch::Sender<u64>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) guards: Guards,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Connects the first session and creates the root path.
    pub(crate) async fn open(cfg: ZooKeeperStoreBuilder) -> Result<Arc<Inner>> {
        let session = connect(&cfg.hosts, cfg.session_timeout, &cfg.auth).await?;
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            hosts: cfg.hosts,
            root: cfg.root,
            requested_timeout: cfg.session_timeout,
            acls: cfg.acls,
            auth: cfg.auth,
            negotiated_ms: AtomicU64::new(millis(session.client.session_timeout())),
            current: Mutex::new(Arc::new(session)),
            reconnect: tokio::sync::Mutex::new(()),
            past: Mutex::new(Vec::new()),
            created: tokio::sync::watch::Sender::new(0),
            counters: Arc::new(Counters { sessions: AtomicU64::new(1), ..Counters::default() }),
            guards: Guards::default(),
        });
        let session = inner.live_session();
        inner.ensure_root(&session).await?;
        Ok(inner)
    }

    pub(crate) fn live_session(&self) -> Arc<Session> {
        lock(&self.current).clone()
    }

    /// The session timeout the server granted (the latest session's).
    pub(crate) fn negotiated(&self) -> Duration {
        Duration::from_millis(self.negotiated_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn requested(&self) -> Duration {
        self.requested_timeout
    }

    /// The live session; after an expiry (or a failed authentication) a fresh one. Every node of
    /// the old session is gone then, and every lease handle names the old session, so renew,
    /// release and update_metadata of all elections on this store answer "no longer ours", and
    /// their participants campaign again with new nodes.
    pub(crate) async fn session(&self) -> Result<Arc<Session>> {
        let cur = self.live_session();
        if !cur.client.state().is_terminated() {
            return Ok(cur);
        }
        let _guard = self.reconnect.lock().await;
        let cur = self.live_session();
        if !cur.client.state().is_terminated() {
            return Ok(cur);
        }
        let old = cur.id;
        let fresh = Arc::new(connect(&self.hosts, self.requested_timeout, &self.auth).await?);
        tracing::info!(old = %zk::SessionId(old), new = %zk::SessionId(fresh.id), "ZooKeeper session expired; opened a new one");
        self.negotiated_ms.store(millis(fresh.client.session_timeout()), Ordering::Relaxed);
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        *lock(&self.current) = fresh.clone();
        let mut past = lock(&self.past);
        past.push(old);
        if past.len() > 16 {
            past.remove(0);
        }
        Ok(fresh)
    }

    /// Whether `owner` is one of this store's earlier sessions. We never use such a session
    /// again (it expired, or the client gave up on it), and every lease on it ended locally.
    pub(crate) fn is_past_session(&self, owner: i64) -> bool {
        lock(&self.past).contains(&owner)
    }

    pub(crate) fn acls(&self) -> Acls<'_> {
        if self.acls.is_empty() {
            Acls::anyone_all()
        } else {
            Acls::new(&self.acls)
        }
    }

    pub(crate) fn election_path(&self, election: &str) -> String {
        format!("{}/{election}", self.root)
    }

    async fn ensure_root(&self, s: &Session) -> Result<()> {
        let opts = CreateMode::Persistent.with_acls(self.acls());
        s.client.mkdir(&self.root, &opts).await.map_err(zk_error("create root", &self.root))
    }

    /// Creates the election node (a container: the server removes it once it has been empty for
    /// a while), and the root first if it was deleted from outside.
    pub(crate) async fn ensure_election(&self, s: &Session, path: &str) -> Result<()> {
        let opts: CreateOptions<'_> = CreateMode::Container.with_acls(self.acls());
        for _ in 0..3 {
            match s.client.create(path, &[], &opts).await {
                Ok(_) | Err(zk::Error::NodeExists) => return Ok(()),
                Err(zk::Error::NoNode) => self.ensure_root(s).await?,
                Err(e) => return Err(zk_error("create election node", path)(e)),
            }
        }
        Err(Error::backend(format!("could not create {path}: its parent kept disappearing")))
    }

    /// Test hook behind [`ZooKeeperStore::expire_session`](crate::ZooKeeperStore::expire_session).
    pub(crate) async fn expire_session(&self) -> Result<()> {
        let s = self.live_session();
        let mut state = s.client.state_watcher();
        let info = s.client.session().clone();
        let hosts = self.hosts.clone();
        let close = async move {
            // Attaching makes the server drop our own connection, which reconnects at once and may
            // in turn knock the attaching one off before it could close the session: try again.
            loop {
                let attached = Client::connector().with_session(info.clone()).with_fail_eagerly().connect(&hosts).await;
                match attached {
                    // Dropping the only handle of the second client closes the session on the
                    // server, which deletes its ephemeral nodes; our client learns it on reconnect.
                    Ok(hijack) => drop(hijack),
                    Err(zk::Error::SessionExpired) => {}
                    Err(e) => tracing::debug!(error = %e, "could not attach to the session yet"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let expired = async {
            while !state.peek_state().is_terminated() {
                state.changed().await;
            }
        };
        tokio::select! {
            _ = close => Ok(()),
            r = tokio::time::timeout(self.negotiated() * 3, expired) => r
                .map_err(|_| Error::timeout("the session did not end after it was closed from another connection")),
        }
    }
}

async fn connect(hosts: &str, timeout: Duration, auth: &[(String, Vec<u8>)]) -> Result<Session> {
    // Detached: dropping the store does not close the session. A store dropped without
    // `Election::stop` (a crash, as far as the election can tell) keeps its nodes until the
    // server expires the session, as a crashed process's would; `stop` releases explicitly.
    let mut connector = Client::connector().with_session_timeout(timeout).with_fail_eagerly().with_detached();
    for (scheme, bytes) in auth {
        connector = connector.with_auth(scheme, bytes);
    }
    let client = connector.connect(hosts).await.map_err(|e| {
        let err = Error::unavailable(format!("could not open a ZooKeeper session with {hosts}")).with_source(e.clone());
        if matches!(e, zk::Error::AuthFailed) {
            Error::backend(format!("ZooKeeper at {hosts} refused the credentials")).with_source(e)
        } else {
            err
        }
    })?;
    if client.state() == SessionState::ConnectedReadOnly {
        return Err(Error::unavailable(format!("ZooKeeper at {hosts} offered only a read-only session")));
    }
    let id = client.session_id().0;
    Ok(Session { client, id })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Maps a ZooKeeper error: the server's own answers (no node, bad version, no auth, ...) are
/// `Backend`; everything else is connection or session trouble (lost or timed-out connection,
/// expired session, the client's own "no response from connection" errors), `Unavailable`, which
/// the driver retries and reports as `StoreUnavailable`. The message names the operation and node.
pub(crate) fn zk_error<'a>(op: &'static str, path: &'a str) -> impl FnOnce(zk::Error) -> Error + 'a {
    move |e| {
        let msg = format!("ZooKeeper {op} {path}");
        match e {
            zk::Error::NoNode
            | zk::Error::NodeExists
            | zk::Error::BadVersion
            | zk::Error::NotEmpty
            | zk::Error::NoAuth
            | zk::Error::AuthFailed
            | zk::Error::InvalidAcl
            | zk::Error::BadArguments(_)
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::QuotaExceeded
            | zk::Error::MarshallingError
            | zk::Error::Unimplemented
            | zk::Error::ReconfigDisabled
            | zk::Error::NoWatcher
            | zk::Error::RuntimeInconsistent
            | zk::Error::UnexpectedErrorCode(_) => Error::backend(msg).with_source(e),
            _ => Error::unavailable(msg).with_source(e),
        }
    }
}
