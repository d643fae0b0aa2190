//! [`observe`]: follow who leads an election without taking part (etcd's `Observe`).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use tokio::time::{sleep_until, Instant};

use crate::{validate, FencingToken, LeaderInfo, LeaseStore, Result};

/// Yields the current holder of `election` first, then the holder each time it is seen to change.
///
/// Changes between two reads may merge; tokens never go backwards (a read older than one already
/// yielded is skipped). It reads again on each push hint of the store, at the holder's
/// `expires_in` where the store does not push expiry, and at least every `poll`. Store errors are
/// yielded as `Err` items and the stream goes on; an invalid name yields one error and ends.
///
/// ```no_run
/// use futures::StreamExt;
/// # async fn demo(store: std::sync::Arc<dyn leader_core::LeaseStore>) {
/// let mut holders = leader_core::observe(store, "nightly-report", std::time::Duration::from_secs(2));
/// while let Some(Ok(holder)) = holders.next().await {
///     println!("leader: {:?}", holder.map(|h| h.participant_id));
/// }
/// # }
/// ```
pub fn observe(
    store: Arc<dyn LeaseStore>,
    election: impl Into<String>,
    poll: Duration,
) -> BoxStream<'static, Result<Option<LeaderInfo>>> {
    let election = election.into();
    if let Err(e) = validate::validate_election_name(&election) {
        return stream::once(async move { Err(e) }).boxed();
    }
    let poll = poll.max(Duration::from_millis(1));
    let state = Observer {
        store,
        election,
        poll,
        last: None,
        max_token: None,
        watch: None,
        watch_retry_at: Instant::now(),
        next_read: None,
    };
    stream::unfold(state, |mut s| async move {
        let item = s.step().await;
        Some((item, s))
    })
    .boxed()
}

struct Observer {
    store: Arc<dyn LeaseStore>,
    election: String,
    poll: Duration,
    /// What was last yielded: `None` before the first item.
    last: Option<Option<(String, FencingToken)>>,
    max_token: Option<FencingToken>,
    watch: Option<BoxStream<'static, ()>>,
    /// When a push channel that ended may be asked for again.
    watch_retry_at: Instant,
    next_read: Option<Instant>,
}

impl Observer {
    async fn step(&mut self) -> Result<Option<LeaderInfo>> {
        loop {
            if let Some(at) = self.next_read {
                self.wait(at).await;
            }
            if self.watch.is_none() && Instant::now() >= self.watch_retry_at {
                self.watch = self.store.watch(&self.election, None);
            }
            let timeout = self.poll.max(Duration::from_secs(1));
            let read = tokio::time::timeout(timeout, self.store.current(&self.election)).await;
            let holder = match read.map_err(crate::Error::from).and_then(|r| r) {
                Ok(h) => h,
                Err(e) => {
                    self.next_read = Some(Instant::now() + self.poll);
                    return Err(e);
                }
            };
            let caps = self.store.capabilities();
            let expiry = holder.as_ref().and_then(|h| h.expires_in).filter(|_| !caps.pushes_expiry);
            self.next_read = Some(Instant::now() + expiry.map_or(self.poll, |e| e.min(self.poll)));
            if let Some(h) = &holder {
                if self.max_token.is_some_and(|m| h.token < m) {
                    continue; // an older read than one already yielded
                }
                self.max_token = Some(h.token);
            }
            let key = holder.as_ref().map(|h| (h.instance_id.clone(), h.token));
            if self.last.as_ref() != Some(&key) {
                self.last = Some(key);
                return Ok(holder);
            }
        }
    }

    async fn wait(&mut self, at: Instant) {
        match self.watch.as_mut() {
            Some(w) => tokio::select! {
                _ = sleep_until(at) => {}
                hint = w.next() => if hint.is_none() {
                    self.watch = None;
                    self.watch_retry_at = Instant::now() + self.poll;
                },
            },
            None => sleep_until(at).await,
        }
    }
}
