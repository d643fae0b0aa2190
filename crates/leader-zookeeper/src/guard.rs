//! Node guards: the store deletes its own candidate nodes that nobody stands behind any more.
//!
//! A ZooKeeper node lives as long as its session, and the client keeps the session alive with
//! pings of its own, whether or not the participant still campaigns or renews. One session serves
//! every election on a store handle, so a node left behind would live as long as the handle:
//!
//! - **Leader nodes.** A holder whose calls hang (its task stuck, its store calls timing out) or
//!   that acquired in manual mode and stopped renewing would keep the election forever, although
//!   it stepped down locally at its deadline. So a node this store answered `Acquired` for is
//!   deleted unless an acquire or renew of it is answered again within `ttl` (the lease).
//!
//!   Safety: the holder's local deadline is (send time of its last successful renew) +
//!   `renew_deadline`; the guard's is (answer time of that renew) + `lease_duration`, later on the
//!   same clock of the same process. A renew and the guard's decision are serialised per node
//!   (the node is marked expired before it is deleted, and a renew answered after the mark says
//!   "no longer ours"), so no renew can succeed for a node the guard is deleting.
//!
//! - **Queued nodes.** A follower's node is created at its first attempt and reused by later ones.
//!   A caller that stopped calling `try_acquire` (manual mode), or an `Election` dropped without
//!   `stop()` (whose `withdraw` would have deleted it), leaves a node that, once it is the lowest,
//!   would hold the election up for as long as the handle's session lives. So a queued node is
//!   deleted when, for a whole `ttl`, no `try_acquire` of its instance was answered *and* no watch
//!   stream of its instance (`watch(election, Some(instance))`, which a campaigning `Election`
//!   keeps open while it follows) was alive. A live follower is never cut: its driver either holds
//!   such a stream or polls every `retry_interval`. Deleting a queued node is always safe (it
//!   leads nobody); its instance, if it comes back, queues again at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::session::Inner;

#[derive(Default)]
pub(crate) struct Guards {
    nodes: Mutex<HashMap<String, Arc<Mutex<Guard>>>>,
    /// Open watch streams per (election, instance): a follower that waits on one is alive.
    watchers: Arc<Watchers>,
}

/// Counts of open candidate watch streams, shared with the streams (which outlive nothing: they
/// hold only this, not the store).
#[derive(Default)]
pub(crate) struct Watchers {
    open: Mutex<HashMap<(String, String), usize>>,
}

/// Held by one open watch stream of a candidate; counts it in [`Watchers`] until dropped.
pub(crate) struct WatcherGuard {
    watchers: Arc<Watchers>,
    key: (String, String),
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.watchers.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

struct Guard {
    deadline: Instant,
    /// The ttl of the last acquire or renew (extends a queued node watched by a live stream).
    ttl: Duration,
    /// Answered `Acquired` at least once: only acquires and renews keep it now.
    leading: bool,
    expired: bool,
    released: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Guards {
    /// Whether the guard has given up `path` (it is being deleted; it is not ours any more).
    pub(crate) fn expired(&self, path: &str) -> bool {
        lock(&self.nodes).get(path).is_some_and(|g| lock(g).expired)
    }

    /// Forgets `path` (released or withdrawn by its holder).
    pub(crate) fn forget(&self, path: &str) {
        if let Some(g) = lock(&self.nodes).remove(path) {
            lock(&g).released = true;
        }
    }

    /// Counts a watch stream of `instance` in `election` as open until the returned guard drops.
    pub(crate) fn watching(&self, election: &str, instance: &str) -> WatcherGuard {
        let key = (election.to_owned(), instance.to_owned());
        *lock(&self.watchers.open).entry(key.clone()).or_insert(0) += 1;
        WatcherGuard { watchers: self.watchers.clone(), key }
    }

    fn is_watched(&self, election: &str, instance: &str) -> bool {
        lock(&self.watchers.open).contains_key(&(election.to_owned(), instance.to_owned()))
    }
}

/// Which node a guard watches over, and for whom.
pub(crate) struct NodeRef<'a> {
    pub(crate) path: &'a str,
    pub(crate) session_id: i64,
    pub(crate) election: &'a str,
    pub(crate) instance: &'a str,
}

impl Inner {
    /// An acquire or renew of our leader node was answered now: the node lives another `ttl`.
    /// `false` if the guard has already given it up (the caller answers "no longer ours").
    pub(crate) fn touch_leader(&self, node: &NodeRef<'_>, ttl: Duration) -> bool {
        self.touch(node, ttl, true)
    }

    /// A `try_acquire` answered `Held` for our queued node now: it lives another `ttl` (and as long
    /// as a watch stream of its instance is open). `false` if the guard has already given it up.
    pub(crate) fn touch_queued(&self, node: &NodeRef<'_>, ttl: Duration) -> bool {
        self.touch(node, ttl, false)
    }

    fn touch(&self, node: &NodeRef<'_>, ttl: Duration, leading: bool) -> bool {
        let now = Instant::now();
        let deadline = now + ttl;
        let mut nodes = lock(&self.guards.nodes);
        if let Some(g) = nodes.get(node.path) {
            let mut g = lock(g);
            if g.expired {
                return false;
            }
            if leading && !g.leading {
                // From now on only acquires and renews count, from this answer on.
                g.leading = true;
                g.deadline = deadline;
            } else {
                g.deadline = g.deadline.max(deadline);
            }
            g.ttl = ttl;
            return true;
        }
        let guard = Arc::new(Mutex::new(Guard { deadline, ttl, leading, expired: false, released: false }));
        nodes.insert(node.path.to_owned(), guard.clone());
        tokio::spawn(watchdog(
            self.me.clone(),
            node.path.to_owned(),
            node.session_id,
            (node.election.to_owned(), node.instance.to_owned()),
            guard,
        ));
        true
    }
}

async fn watchdog(
    inner: Weak<Inner>,
    path: String,
    session_id: i64,
    (election, instance): (String, String),
    guard: Arc<Mutex<Guard>>,
) {
    loop {
        let deadline = lock(&guard).deadline;
        tokio::time::sleep_until(deadline).await;
        let Some(store) = inner.upgrade() else { return };
        let mut g = lock(&guard);
        if g.released {
            return;
        }
        let now = Instant::now();
        if now < g.deadline {
            continue;
        }
        if !g.leading && store.guards.is_watched(&election, &instance) {
            // A follower waiting on its watch stream: alive. Look again one ttl later.
            g.deadline = now + g.ttl;
            continue;
        }
        g.expired = true;
        break;
    }
    // Delete the node through the session that owns it; retry while that session lives.
    loop {
        let Some(store) = inner.upgrade() else { return };
        let s = store.live_session();
        if s.id != session_id {
            break; // that session ended, and its nodes with it
        }
        match s.client.delete(&path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {
                let leading = lock(&guard).leading;
                tracing::info!(node = %path, leading, "deleted a candidate node nobody stood behind within the lease");
                break;
            }
            Err(e) if s.client.state().is_terminated() => {
                tracing::debug!(node = %path, error = %e, "session ended while deleting an abandoned node");
                break;
            }
            Err(e) => {
                tracing::debug!(node = %path, error = %e, "could not delete an abandoned node yet");
                drop(store);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if let Some(store) = inner.upgrade() {
        let mut nodes = lock(&store.guards.nodes);
        if nodes.get(&path).is_some_and(|g| Arc::ptr_eq(g, &guard)) {
            nodes.remove(&path);
        }
    }
}
