//! Notices a connection that stopped answering although commands keep going out on it (a
//! partition that drops packets, a server or proxy that accepts and holds), and reconnects.
//!
//! fred has such a check (`UnresponsiveConfig`), but it measures from the *last* write: an
//! election that polls more often than its timeout (a follower retries every sixth of a lease)
//! restarts the clock with every new command, so a black-holed connection is never given up and
//! the store stays cut off until TCP itself gives up, minutes later. After a Sentinel failover
//! behind a partition that kept the participants away from the promoted primary for good.
//!
//! Here the clock starts at the oldest call still unanswered: any reply (a result or an error
//! reply from the server) proves the connection alive, because replies come in order. A call that
//! starts when some call has been unanswered for longer than the limit forces fred to reconnect
//! (which asks the sentinels again, or refreshes the cluster routing), and the subscriber with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::ClientLike;

pub(crate) struct Liveness {
    limit: Duration,
    unanswered_since: Mutex<Option<Instant>>,
    reconnecting: Arc<AtomicBool>,
}

impl Liveness {
    pub(crate) fn new(limit: Duration) -> Self {
        Liveness { limit, unanswered_since: Mutex::new(None), reconnecting: Arc::new(AtomicBool::new(false)) }
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.unanswered_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before a call: reconnects if a call has gone unanswered for longer than the limit. Then
    /// counts this call as unanswered until [`answered`](Self::answered).
    pub(crate) fn sending(&self, client: &Client, subscriber: Option<&SubscriberClient>) {
        let stale = {
            let mut since = self.since();
            let stale = since.is_some_and(|t| t.elapsed() > self.limit);
            if stale || since.is_none() {
                *since = Some(Instant::now());
            }
            stale
        };
        if stale && !self.reconnecting.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "redis: no answer for more than {} on a connection that keeps receiving commands; reconnecting",
                humantime::format_duration(self.limit)
            );
            let (client, subscriber, flag) = (client.clone(), subscriber.cloned(), self.reconnecting.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Some(s) = subscriber {
                        let _ = s.force_reconnection().await;
                    }
                    let _ = client.force_reconnection().await;
                    flag.store(false, Ordering::Release);
                });
            } else {
                flag.store(false, Ordering::Release);
            }
        }
    }

    /// The server answered a call: every earlier call has been answered too.
    pub(crate) fn answered(&self) {
        *self.since() = None;
    }
}
