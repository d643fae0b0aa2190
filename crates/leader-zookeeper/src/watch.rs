//! Push hints: a candidate watches only the node just below its own (no herd effect); an
//! observer, or a candidate without a node, watches the leader's node (or the children, while
//! there is none).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::stream::{self, BoxStream, StreamExt};
use leader_core::Result;
use zookeeper_client::{self as zk, EventType, OneshotWatcher, SessionState};

use crate::guard::WatcherGuard;
use crate::session::{zk_error, Counters, Inner};

/// What a watch was set on.
enum Armed {
    /// Something already changed (we are the lowest candidate now): wake at once.
    Now,
    /// The node to watch vanished between the listing and the watch: look again.
    Again,
    /// Our predecessor's node.
    Predecessor(OneshotWatcher),
    /// The leader's node, the children of the election node, or the election node's creation.
    Leader(OneshotWatcher),
}

struct State {
    inner: Weak<Inner>,
    counters: Arc<Counters>,
    election: String,
    instance: Option<String>,
    /// A candidate's stream counts as "this follower is alive" for the node guard while it is open.
    _alive: Option<WatcherGuard>,
}

pub(crate) fn stream(inner: &Arc<Inner>, election: &str, instance: Option<&str>) -> BoxStream<'static, ()> {
    let state = State {
        inner: Arc::downgrade(inner),
        counters: inner.counters.clone(),
        election: election.to_owned(),
        instance: instance.map(str::to_owned),
        _alive: instance.map(|i| inner.guards.watching(election, i)),
    };
    stream::unfold(state, |state| async move { state.next().await.map(|()| ((), state)) }).boxed()
}

impl State {
    /// The next hint; `None` ends the stream (store dropped, session closed, or the watch could
    /// not be set: the caller polls and asks again later).
    async fn next(&self) -> Option<()> {
        loop {
            // Hold the store only while setting the watch, so that a waiting stream never keeps a
            // dropped store's session alive.
            let (armed, mut created) = {
                let inner = self.inner.upgrade()?;
                let created = inner.created.subscribe();
                let limit = inner.negotiated() / 3;
                let armed = tokio::time::timeout(limit, self.arm(&inner)).await.ok()?;
                match armed {
                    Ok(a) => (a, created),
                    Err(e) => {
                        tracing::debug!(election = %self.election, error = %e, "could not set a ZooKeeper watch");
                        return None;
                    }
                }
            };
            let watcher = match armed {
                Armed::Now => return Some(()),
                Armed::Again => continue,
                Armed::Predecessor(w) => {
                    self.counters.armed.fetch_add(1, Ordering::Relaxed);
                    w
                }
                Armed::Leader(w) => w,
            };
            let own_node_may_have_changed = async {
                match self.instance {
                    // A node this store created may be ours: re-aim the watch instead of waking.
                    Some(_) => {
                        let _ = created.changed().await;
                    }
                    None => futures::future::pending().await,
                }
            };
            let event = tokio::select! {
                event = watcher.changed() => event,
                _ = own_node_may_have_changed => continue,
            };
            match (event.event_type, event.session_state) {
                (EventType::Session, SessionState::Closed | SessionState::AuthFailed) => return None,
                // Our predecessor's metadata changed: nothing for us to do.
                (EventType::NodeDataChanged, _) if self.instance.is_some() => continue,
                _ => {
                    self.counters.woken.fetch_add(1, Ordering::Relaxed);
                    return Some(());
                }
            }
        }
    }

    async fn arm(&self, inner: &Inner) -> Result<Armed> {
        let s = inner.session().await?;
        let client = &s.client;
        let epath = inner.election_path(&self.election);
        let Some(candidates) = inner.candidates(&s, &epath).await? else {
            // No election node yet: wake when it is created.
            return match client.check_and_watch_stat(&epath).await {
                Ok((Some(_), _)) => Ok(Armed::Again),
                Ok((None, w)) => Ok(Armed::Leader(w)),
                Err(e) => Err(zk_error("watch", &epath)(e)),
            };
        };
        // Our newest node: an older one with our instance id is a stale node of an earlier
        // session, which try_acquire deletes (or the server will); watching it is right too.
        let own = self.instance.as_deref().and_then(|i| candidates.iter().rev().find(|c| c.instance_id == i));
        let target = match own {
            Some(own) => match candidates.iter().rev().find(|c| c.sequence < own.sequence) {
                Some(pred) => pred,
                None => return Ok(Armed::Now),
            },
            None => match candidates.first() {
                Some(leader) => leader,
                None => {
                    return match client.get_and_watch_children(&epath).await {
                        Ok((_, _, w)) => Ok(Armed::Leader(w)),
                        Err(zk::Error::NoNode) => Ok(Armed::Again),
                        Err(e) => Err(zk_error("watch", &epath)(e)),
                    }
                }
            },
        };
        let path = format!("{epath}/{}", target.name);
        // getData rather than exists: a watch is left only on a node that exists (Curator's choice).
        match client.get_and_watch_data(&path).await {
            Ok((_, _, w)) if own.is_some() => Ok(Armed::Predecessor(w)),
            Ok((_, _, w)) => Ok(Armed::Leader(w)),
            Err(zk::Error::NoNode) => Ok(Armed::Again),
            Err(e) => Err(zk_error("watch", &path)(e)),
        }
    }
}
