//! The lease guard: the store deletes its own leader node when the holder has not renewed it
//! within the lease.
//!
//! A ZooKeeper node lives as long as its session, and the client keeps the session alive with
//! pings of its own, whether or not the participant still renews. A holder whose calls hang (its
//! task stuck, its store calls timing out) or that acquired in manual mode and stopped renewing
//! would keep the election forever, although it stepped down locally at its deadline. So each
//! node this store answered `Acquired` for is guarded: unless an acquire or renew of it is answered
//! again within `ttl` (the lease), the store deletes it, and the successor's watch fires.
//!
//! Safety: the holder's local deadline is (send time of its last successful renew) +
//! `renew_deadline`; the guard's is (answer time of that renew) + `lease_duration`, later on the
//! same clock of the same process. A renew and the guard's decision are serialised per node (the
//! node is marked expired before it is deleted, and a renew answered after the mark says "no
//! longer ours"), so no renew can succeed for a node the guard is deleting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::session::Inner;

#[derive(Default)]
pub(crate) struct Guards {
    nodes: Mutex<HashMap<String, Arc<Mutex<Guard>>>>,
}

struct Guard {
    deadline: Instant,
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
}

impl Inner {
    /// An acquire or renew of our node `path` was answered now: the node lives another `ttl`.
    /// `false` if the guard has already given it up (the caller answers "no longer ours").
    pub(crate) fn touch(&self, path: &str, session_id: i64, ttl: Duration) -> bool {
        let deadline = Instant::now() + ttl;
        let mut nodes = lock(&self.guards.nodes);
        if let Some(g) = nodes.get(path) {
            let mut g = lock(g);
            if g.expired {
                return false;
            }
            g.deadline = g.deadline.max(deadline);
            return true;
        }
        let guard = Arc::new(Mutex::new(Guard { deadline, expired: false, released: false }));
        nodes.insert(path.to_owned(), guard.clone());
        tokio::spawn(watchdog(self.me.clone(), path.to_owned(), session_id, guard));
        true
    }
}

async fn watchdog(inner: Weak<Inner>, path: String, session_id: i64, guard: Arc<Mutex<Guard>>) {
    loop {
        let deadline = lock(&guard).deadline;
        tokio::time::sleep_until(deadline).await;
        let mut g = lock(&guard);
        if g.released {
            return;
        }
        if Instant::now() >= g.deadline {
            g.expired = true;
            break;
        }
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
                tracing::info!(node = %path, "deleted a leader node its holder did not renew within the lease");
                break;
            }
            Err(e) if s.client.state().is_terminated() => {
                tracing::debug!(node = %path, error = %e, "session ended while deleting an unrenewed node");
                break;
            }
            Err(e) => {
                tracing::debug!(node = %path, error = %e, "could not delete an unrenewed node yet");
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
