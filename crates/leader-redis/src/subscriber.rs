//! Push handoff: one subscriber connection per store, shared by every watch stream of that store.
//! The scripts publish the election name on release, takeover and metadata change; each watch
//! stream keeps the messages for its own election.
//!
//! The channel is subscribed only while some watch stream exists: a process that only leads (or
//! only uses the store for its own commands) is not woken by every acquire and release under the
//! key prefix, its own included. A stream made while the channel is not subscribed asks for the
//! subscription and yields once when it is in place, so its follower looks again after anything
//! published before then.
//!
//! A watch stream ends when the subscriber connection drops or reconnects (messages published in
//! between are lost): the driver then polls and calls `watch` again, which answers `None` until the
//! connection is back.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::from_fred;
use leader_core::Result;

/// How long to wait before asking again after a failed SUBSCRIBE or UNSUBSCRIBE.
const RETRY: Duration = Duration::from_millis(200);

/// The subscriber connection as watch streams see it; `generation` grows each time it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    connected: bool,
    subscribed: bool,
    generation: u64,
}

pub(crate) struct Subscriber {
    client: SubscriberClient,
    channel: String,
    state: watch::Sender<State>,
    /// How many watch streams exist; the task subscribes while this is above zero.
    watchers: Arc<watch::Sender<usize>>,
    task: JoinHandle<()>,
}

/// Counts one watch stream while it lives.
struct Watcher(Arc<watch::Sender<usize>>);

impl Watcher {
    fn new(watchers: &Arc<watch::Sender<usize>>) -> Self {
        watchers.send_modify(|n| *n += 1);
        Watcher(watchers.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Subscriber {
    /// Connects `client` (not yet initialised); the channel is subscribed on the first watch.
    pub(crate) async fn start(client: SubscriberClient, channel: String) -> Result<Self> {
        // Listen for connection events before connecting, so none falls in between.
        let mut reconnects = client.reconnect_rx();
        let mut errors = client.error_rx();
        let mut unresponsive = client.unresponsive_rx();
        client.init().await.map_err(from_fred)?;
        // fred announces the first connection as a reconnect too; that one is not news.
        while reconnects.try_recv().is_ok() {}
        let state = watch::Sender::new(State { connected: true, subscribed: false, generation: 0 });
        let watchers = Arc::new(watch::Sender::new(0usize));
        let task = {
            let (client, channel, state) = (client.clone(), channel.clone(), state.clone());
            let mut wanted = watchers.subscribe();
            tokio::spawn(async move {
                let mut retry_at: Option<tokio::time::Instant> = None;
                loop {
                    // Bring the subscription in line with whether anyone watches.
                    let want = *wanted.borrow_and_update() > 0;
                    let now = *state.borrow();
                    if now.connected && want != now.subscribed && retry_at.is_none() {
                        if want {
                            match subscribe(&client, &channel).await {
                                Ok(()) => state.send_modify(|s| s.subscribed = s.connected),
                                Err(e) => {
                                    tracing::warn!(error = %e, "redis: subscribing to {channel} failed; followers poll");
                                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                                }
                            }
                        } else {
                            // Streams see `subscribed` fall before the UNSUBSCRIBE goes out.
                            state.send_modify(|s| s.subscribed = false);
                            if let Err(e) = client.unsubscribe(channel.as_str()).await {
                                tracing::debug!(error = %e, "redis: unsubscribing from {channel} failed");
                            }
                        }
                        continue;
                    }
                    let down = |connected: bool| {
                        state.send_modify(|s| *s = State { connected, subscribed: false, generation: s.generation + 1 })
                    };
                    tokio::select! {
                        changed = wanted.changed() => if changed.is_err() { break },
                        _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                            retry_at = None;
                        }
                        event = reconnects.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            // A new connection has no subscriptions: the loop subscribes again.
                            down(true);
                            retry_at = None;
                        }
                        event = errors.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            down(false);
                        }
                        event = unresponsive.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            down(false);
                        }
                    }
                }
            })
        };
        Ok(Subscriber { client, channel, state, watchers, task })
    }

    /// A stream that yields each time a script publishes `election` (and once when a subscription
    /// it had to wait for is in place); `None` while the connection is down.
    pub(crate) fn watch(&self, election: &str) -> Option<BoxStream<'static, ()>> {
        let mut state = self.state.subscribe();
        let start = *state.borrow_and_update();
        if !start.connected {
            return None;
        }
        // The receiver exists before the subscription is asked for, so nothing published after it
        // is in place can be missed.
        let messages = self.client.message_rx();
        let watcher = Watcher::new(&self.watchers);
        let channel = self.channel.clone();
        let election = election.to_owned();
        Some(
            stream::unfold((messages, state, watcher, false), move |(mut messages, mut state, watcher, mut owed)| {
                let (channel, election) = (channel.clone(), election.clone());
                async move {
                    loop {
                        let now = *state.borrow_and_update();
                        if now.generation != start.generation || !now.connected {
                            return None;
                        }
                        if !now.subscribed {
                            // Anything published until the subscription is in place is missed:
                            // owe the follower one wake-up to look again then.
                            owed = true;
                            state.changed().await.ok()?;
                            continue;
                        }
                        if owed {
                            return Some(((), (messages, state, watcher, false)));
                        }
                        tokio::select! {
                            message = messages.recv() => match message {
                                Ok(m) => {
                                    if m.channel == channel.as_str() && m.value.as_str().is_some_and(|v| v == election.as_str()) {
                                        return Some(((), (messages, state, watcher, false)));
                                    }
                                }
                                // Missed messages may include ours: wake the follower to look.
                                Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), (messages, state, watcher, false))),
                                Err(broadcast::error::RecvError::Closed) => return None,
                            },
                            changed = state.changed() => changed.ok()?,
                        }
                    }
                }
            })
            .boxed(),
        )
    }

    /// The subscriber's client (tests kill its connection).
    pub(crate) fn client(&self) -> &SubscriberClient {
        &self.client
    }
}

/// `SUBSCRIBE`, returning once the server has applied it. fred resolves `subscribe` when the
/// command is written (its confirmation arrives out of band), so a `PING` on the same connection,
/// answered in order, is what says the subscription is in place.
async fn subscribe(client: &SubscriberClient, channel: &str) -> Result<(), fred::error::Error> {
    client.subscribe(channel).await?;
    let _: fred::types::Value = client.ping(None).await?;
    Ok(())
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}
