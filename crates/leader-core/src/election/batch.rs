//! Coalescing: the renewals (and releases) of the elections that share one store handle travel
//! together, so a process with thousands of elections costs the store a call per batch, not a call
//! per election.
//!
//! A renew waits at most `min(10 ms, renew_interval / 50)` to be joined by others (not at all
//! while only one election uses the handle), then the whole batch goes out as one
//! [`LeaseStore::renew_batch`]. Every renewal in it counts from the batch's send time (guarantee
//! 3), and gets its own answer.
//!
//! While other elections share the handle, each renewal is also moved a little earlier onto a
//! grid of the handle's (steps of `renew_interval / 2`), so that the renewals of elections with
//! the same renew interval fall due together: about two batches per renew interval whatever the
//! number of elections, instead of one per 10 ms window that a renewal happens to fall in. Only a
//! tenure's first renewal moves (by less than a step); from then on `renew_interval` apart lands
//! on the grid again, so steady renewing costs no extra calls. Renewing early only extends a lease
//! sooner.
//!
//! Acquires cannot be batched (each may start a tenure, with its own token), but they are admitted:
//! at most [`ACQUIRES_IN_FLIGHT`] per handle at once. Thousands of elections starting together then
//! queue here, before their `operation_timeout` starts, instead of in the store's connection pool,
//! where they would time out, retry and crowd out the renewals of the elections already leading.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::leadership::lock;
use crate::{Error, Lease, LeaseStore, Renewal, Result};

/// The longest a renew waits to be joined by others.
pub(crate) const MAX_WINDOW: Duration = Duration::from_millis(10);

/// The most `try_acquire` calls one store handle has in flight (when more than one election uses
/// it): enough to keep a local store busy (PostgreSQL's default pool is 8 connections), few enough
/// that renewals and releases always find room.
pub(crate) const ACQUIRES_IN_FLIGHT: usize = 4;

/// Renew-interval fractions of the renewal grid (see the module docs).
pub(crate) const GRID_STEPS: u32 = 2;

/// How long a renew with this `renew_interval` waits to be joined: `min(10 ms, renew_interval / 50)`.
pub(crate) fn window(renew_interval: Duration) -> Duration {
    MAX_WINDOW.min(renew_interval / 50)
}

/// One store handle's batches. Shared by every election created on that handle.
pub(crate) struct Coalescer {
    store: Arc<dyn LeaseStore>,
    /// Elections using it now: while there is one, nothing waits.
    attached: AtomicUsize,
    renewals: Queue<Renewal, Option<Lease>>,
    releases: Queue<Lease, bool>,
    /// Admission of acquires (see the module docs).
    acquires: tokio::sync::Semaphore,
    /// Where the renewal grid starts.
    epoch: Instant,
}

/// Handles seen so far, by the address of their store (a clone of an `Arc` is the same handle).
static REGISTRY: LazyLock<Mutex<HashMap<usize, Weak<Coalescer>>>> = LazyLock::new(Default::default);

impl Coalescer {
    /// The coalescer of `store`'s handle, made on first use; counts one more election on it.
    pub(crate) fn attach(store: &Arc<dyn LeaseStore>) -> Arc<Coalescer> {
        let key = Arc::as_ptr(store) as *const () as usize;
        let mut registry = lock(&REGISTRY);
        let found = registry.get(&key).and_then(Weak::upgrade);
        let coalescer = found.unwrap_or_else(|| {
            registry.retain(|_, c| c.strong_count() > 0);
            let c = Arc::new(Coalescer {
                store: store.clone(),
                attached: AtomicUsize::new(0),
                renewals: Queue::new(),
                releases: Queue::new(),
                acquires: tokio::sync::Semaphore::new(ACQUIRES_IN_FLIGHT),
                epoch: Instant::now(),
            });
            registry.insert(key, Arc::downgrade(&c));
            c
        });
        coalescer.attached.fetch_add(1, Ordering::SeqCst);
        coalescer
    }

    /// One election fewer on this handle.
    pub(crate) fn detach(&self) {
        self.attached.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many elections use this handle now.
    pub(crate) fn attached(&self) -> usize {
        self.attached.load(Ordering::SeqCst)
    }

    /// The renewal due at `due`, moved earlier onto the handle's grid of `renew_interval / 2`
    /// steps while other elections share the handle; `due` itself otherwise.
    pub(crate) fn align(&self, due: Instant, renew_interval: Duration) -> Instant {
        let step = (renew_interval / GRID_STEPS).as_nanos();
        if self.attached() <= 1 || step == 0 || due <= self.epoch {
            return due;
        }
        let since = (due - self.epoch).as_nanos();
        let back = u64::try_from(since % step).unwrap_or(0);
        due - Duration::from_nanos(back)
    }

    /// A turn to send a `try_acquire` (first come, first served), held until its answer; `None`
    /// while only one election uses the handle (nothing to wait for).
    pub(crate) async fn acquire_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if self.attached() <= 1 {
            return None;
        }
        // The semaphore is never closed.
        self.acquires.acquire().await.ok()
    }

    /// Renews `renewal` in the next batch; the answer, and when the batch was sent.
    pub(crate) async fn renew(
        self: &Arc<Self>,
        renewal: Renewal,
        window: Duration,
    ) -> (Instant, Result<Option<Lease>>) {
        if self.attached() <= 1 || window.is_zero() {
            let sent = Instant::now();
            return (sent, self.store.renew(&renewal.lease, renewal.ttl).await);
        }
        let store = self.store.clone();
        self.renewals
            .submit(renewal, window, move |batch| {
                Box::pin(async move {
                    if let [one] = batch.as_slice() {
                        vec![store.renew(&one.lease, one.ttl).await]
                    } else {
                        store.renew_batch(&batch).await
                    }
                })
            })
            .await
    }

    /// Releases `lease` in the next batch.
    pub(crate) async fn release(self: &Arc<Self>, lease: Lease, window: Duration) -> Result<bool> {
        if self.attached() <= 1 || window.is_zero() {
            return self.store.release(&lease).await;
        }
        let store = self.store.clone();
        self.releases
            .submit(lease, window, move |batch| {
                Box::pin(async move {
                    if let [one] = batch.as_slice() {
                        vec![store.release(one).await]
                    } else {
                        store.release_batch(&batch).await
                    }
                })
            })
            .await
            .1
    }
}

/// Items waiting for the next batch of one kind.
struct Queue<X, T> {
    inner: Arc<QueueInner<X, T>>,
}

struct QueueInner<X, T> {
    state: Mutex<Pending<X, T>>,
    /// Pokes the flush task when a newcomer needs the batch to leave sooner.
    sooner: Notify,
}

/// Where an item's answer goes: the batch's send time and the item's own result.
type Reply<T> = oneshot::Sender<(Instant, Result<T>)>;

struct Pending<X, T> {
    items: Vec<(X, Reply<T>)>,
    /// When the batch leaves; `None`: no flush task is waiting.
    leaves_at: Option<Instant>,
}

impl<X: Send + 'static, T: Send + 'static> Queue<X, T> {
    fn new() -> Self {
        Queue {
            inner: Arc::new(QueueInner {
                state: Mutex::new(Pending { items: Vec::new(), leaves_at: None }),
                sooner: Notify::new(),
            }),
        }
    }

    /// Adds `item` to the next batch (which leaves at most `window` from now) and waits for its
    /// answer. The batch is sent by a task of its own, so a caller that gives up (its operation
    /// timeout) never strands the others.
    fn submit(
        &self,
        item: X,
        window: Duration,
        flush: impl FnOnce(Vec<X>) -> BoxFuture<'static, Vec<Result<T>>> + Send + 'static,
    ) -> impl Future<Output = (Instant, Result<T>)> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let leaves_at = Instant::now() + window;
        let first = {
            let mut st = lock(&self.inner.state);
            st.items.push((item, tx));
            match st.leaves_at {
                None => {
                    st.leaves_at = Some(leaves_at);
                    true
                }
                Some(at) => {
                    if leaves_at < at {
                        st.leaves_at = Some(leaves_at);
                        self.inner.sooner.notify_one();
                    }
                    false
                }
            }
        };
        if first {
            tokio::spawn(send_when_due(self.inner.clone(), flush));
        }
        async move {
            match rx.await {
                Ok(answer) => answer,
                Err(_) => (Instant::now(), Err(Error::unavailable("the store batch this call joined was dropped"))),
            }
        }
    }
}

/// The flush task of one batch: waits until it is due, takes everything queued, sends it as one
/// call, and hands each item its answer with the batch's send time.
async fn send_when_due<X, T>(
    queue: Arc<QueueInner<X, T>>,
    flush: impl FnOnce(Vec<X>) -> BoxFuture<'static, Vec<Result<T>>>,
) {
    loop {
        let due = lock(&queue.state).leaves_at.unwrap_or_else(Instant::now);
        if Instant::now() >= due {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = queue.sooner.notified() => {}
        }
    }
    let items = {
        let mut st = lock(&queue.state);
        st.leaves_at = None;
        std::mem::take(&mut st.items)
    };
    let (batch, replies): (Vec<X>, Vec<_>) = items.into_iter().unzip();
    let sent = Instant::now();
    let mut answers = flush(batch).await.into_iter();
    for reply in replies {
        let answer = answers
            .next()
            .unwrap_or_else(|| Err(Error::backend("the store answered a batch with fewer results than it was sent")));
        let _ = reply.send((sent, answer));
    }
}
