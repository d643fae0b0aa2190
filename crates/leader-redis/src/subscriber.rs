//! Push handoff: one subscriber connection per store, subscribed to the store's channel, shared by
//! every watch stream of that store. The scripts publish the election name on release, takeover
//! and metadata change; each watch stream keeps the messages for its own election.
//!
//! A watch stream ends when the subscriber connection drops or reconnects (messages published in
//! between are lost): the driver then polls and calls `watch` again, which answers `None` until the
//! channel is subscribed again.

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::from_fred;
use leader_core::Result;

/// Whether the channel is subscribed now; `generation` grows each time the connection drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    up: bool,
    generation: u64,
}

pub(crate) struct Subscriber {
    client: SubscriberClient,
    channel: String,
    state: watch::Sender<State>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Connects `client` (not yet initialised) and subscribes to `channel`.
    pub(crate) async fn start(client: SubscriberClient, channel: String) -> Result<Self> {
        // Listen for connection events before subscribing, so none falls in between.
        let mut reconnects = client.reconnect_rx();
        let mut errors = client.error_rx();
        let mut unresponsive = client.unresponsive_rx();
        client.init().await.map_err(from_fred)?;
        if let Err(e) = client.subscribe(channel.as_str()).await {
            let _ = client.quit().await;
            return Err(from_fred(e));
        }
        let state = watch::Sender::new(State { up: true, generation: 0 });
        let task = {
            let (client, channel, state) = (client.clone(), channel.clone(), state.clone());
            tokio::spawn(async move {
                let down = || state.send_modify(|s| *s = State { up: false, generation: s.generation + 1 });
                loop {
                    tokio::select! {
                        event = reconnects.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            down();
                            match client.subscribe(channel.as_str()).await {
                                Ok(()) => state.send_modify(|s| s.up = true),
                                Err(e) => tracing::warn!(error = %e, "redis: resubscribing to {channel} failed; followers poll"),
                            }
                        }
                        event = errors.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            down();
                        }
                        event = unresponsive.recv() => {
                            if matches!(event, Err(broadcast::error::RecvError::Closed)) { break; }
                            down();
                        }
                    }
                }
            })
        };
        Ok(Subscriber { client, channel, state, task })
    }

    /// A stream that yields each time a script publishes `election`; `None` while the channel is
    /// not subscribed.
    pub(crate) fn watch(&self, election: &str) -> Option<BoxStream<'static, ()>> {
        let mut state = self.state.subscribe();
        let start = *state.borrow_and_update();
        if !start.up {
            return None;
        }
        let messages = self.client.message_rx();
        let channel = self.channel.clone();
        let election = election.to_owned();
        Some(
            stream::unfold((messages, state), move |(mut messages, mut state)| {
                let (channel, election) = (channel.clone(), election.clone());
                async move {
                    loop {
                        tokio::select! {
                            message = messages.recv() => match message {
                                Ok(m) => {
                                    if m.channel == channel.as_str() && m.value.as_str().is_some_and(|v| v == election.as_str()) {
                                        return Some(((), (messages, state)));
                                    }
                                }
                                // Missed messages may include ours: wake the follower to look.
                                Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), (messages, state))),
                                Err(broadcast::error::RecvError::Closed) => return None,
                            },
                            changed = state.changed() => {
                                changed.ok()?;
                                if *state.borrow_and_update() != start {
                                    return None;
                                }
                            }
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
