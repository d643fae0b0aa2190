//! [`FaultLayer`]: a store layer that injects outages, latency, errors, hangs and lost replies,
//! controlled from the test through a shared [`FaultControl`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use leader_core::layer::{Intercept, Intercepted, Layer, Op};
use leader_core::{
    Acquire, AcquireRequest, Capabilities, ElectionOptions, Error, LeaderInfo, Lease, LeaseStore, Metadata, Result,
};
use tokio::sync::watch;

/// The switches of one or more [`FaultLayer`]s. Shared (`Arc`); every wrapped handle that uses the
/// same control sees the same faults, so one control can take "the store" down for everyone or,
/// given to one participant only, cut that participant off.
///
/// Faults apply before the call reaches the store (outage, error every Nth call, latency, hang),
/// except [`lose_replies`](FaultControl::lose_replies) and
/// [`set_reply_latency`](FaultControl::set_reply_latency), which let the call through and then
/// drop or delay its answer: the store applied it, the caller does not know.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use leader_core::{ErrorKind, LeaseStore};
/// use leader_testkit::{FaultControl, FaultLayer};
/// use leader_core::layer::LeaseStoreExt;
///
/// let control = FaultControl::new();
/// let store: Arc<dyn LeaseStore> = Arc::new(leader_memory::MemoryStore::new());
/// let store = store.layer(FaultLayer::new(control.clone()));
/// control.set_unavailable(true);
/// assert_eq!(store.current("jobs").await.unwrap_err().kind(), ErrorKind::Unavailable);
/// assert!(store.watch("jobs", None).is_none(), "watch is refused during an outage");
/// control.set_unavailable(false);
/// assert!(store.current("jobs").await.unwrap().is_none());
/// # }
/// ```
pub struct FaultControl {
    unavailable: watch::Sender<bool>,
    latency: Mutex<Latency>,
    fail_every: AtomicU64,
    calls: AtomicU64,
    /// Ops whose calls block until `release_hang`.
    hang: watch::Sender<Vec<Op>>,
    lose: Mutex<HashMap<Op, u64>>,
    lost: watch::Sender<u64>,
}

#[derive(Default)]
struct Latency {
    all: Option<Duration>,
    per_op: HashMap<Op, Duration>,
    reply: HashMap<Op, Duration>,
}

impl FaultControl {
    /// A control with every fault off.
    pub fn new() -> Arc<Self> {
        Arc::new(FaultControl {
            unavailable: watch::Sender::new(false),
            latency: Mutex::new(Latency::default()),
            fail_every: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            hang: watch::Sender::new(Vec::new()),
            lose: Mutex::new(HashMap::new()),
            lost: watch::Sender::new(0),
        })
    }

    /// Outage on/off: every call fails with [`ErrorKind::Unavailable`](leader_core::ErrorKind),
    /// `watch` is refused, and watch streams opened before end (the push channel is down).
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.send_replace(on);
    }

    /// Whether the outage is on.
    pub fn is_unavailable(&self) -> bool {
        *self.unavailable.borrow()
    }

    /// Latency added before every call (`None`: none).
    pub fn set_latency(&self, latency: Option<Duration>) {
        lock(&self.latency).all = latency;
    }

    /// Latency added before every call of `op` (on top of [`set_latency`](Self::set_latency)).
    pub fn set_op_latency(&self, op: Op, latency: Option<Duration>) {
        let mut l = lock(&self.latency);
        match latency {
            Some(d) => l.per_op.insert(op, d),
            None => l.per_op.remove(&op),
        };
    }

    /// Latency added after the store answered a call of `op` and before the caller gets the
    /// answer: a cancelled caller leaves an applied call behind.
    pub fn set_reply_latency(&self, op: Op, latency: Option<Duration>) {
        let mut l = lock(&self.latency);
        match latency {
            Some(d) => l.reply.insert(op, d),
            None => l.reply.remove(&op),
        };
    }

    /// Every `n`th call (counted over all ops) fails with `Unavailable`; 0 turns it off.
    pub fn fail_every(&self, n: u64) {
        self.fail_every.store(n, Ordering::SeqCst);
    }

    /// Calls of these ops block before reaching the store until [`release_hang`](Self::release_hang)
    /// (a stuck connection, a paused process). Callers' timeouts still apply.
    pub fn hang(&self, ops: &[Op]) {
        self.hang.send_replace(ops.to_vec());
    }

    /// Every call blocks, as [`hang`](Self::hang) with every op.
    pub fn hang_all(&self) {
        self.hang(&Op::ALL);
    }

    /// Lets hung calls through.
    pub fn release_hang(&self) {
        self.hang.send_replace(Vec::new());
    }

    /// The next `n` calls of `op` reach the store and are applied, but their answer is replaced by
    /// an `Unavailable` error (an ambiguous call: the reply was lost).
    pub fn lose_replies(&self, op: Op, n: u64) {
        lock(&self.lose).insert(op, n);
    }

    /// How many replies were lost so far.
    pub fn lost_replies(&self) -> u64 {
        *self.lost.borrow()
    }

    /// Waits until at least `n` replies were lost.
    pub async fn wait_lost_replies(&self, n: u64) {
        let mut rx = self.lost.subscribe();
        let _ = rx.wait_for(|lost| *lost >= n).await;
    }

    /// Calls seen so far (over all ops, including refused ones).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn take_lost_reply(&self, op: Op) -> bool {
        let mut lose = lock(&self.lose);
        match lose.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.lost.send_modify(|l| *l += 1);
                true
            }
            _ => false,
        }
    }

    fn reply_latency(&self, op: Op) -> Option<Duration> {
        lock(&self.latency).reply.get(&op).copied()
    }
}

#[leader_core::async_trait]
impl Intercept for FaultControl {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.is_unavailable() {
            return Err(Error::unavailable(format!("injected outage ({})", op.as_str())));
        }
        let every = self.fail_every.load(Ordering::SeqCst);
        if every > 0 && n % every == 0 {
            return Err(Error::unavailable(format!("injected error on call {n} ({})", op.as_str())));
        }
        let delay = {
            let l = lock(&self.latency);
            l.all.unwrap_or_default() + l.per_op.get(&op).copied().unwrap_or_default()
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut hang = self.hang.subscribe();
        let _ = hang.wait_for(|ops| !ops.contains(&op)).await;
        if self.is_unavailable() {
            return Err(Error::unavailable(format!("injected outage ({})", op.as_str())));
        }
        Ok(())
    }

    fn allow_watch(&self, _election: &str) -> bool {
        !self.is_unavailable()
    }
}

/// The [`Layer`] that wraps a store in [`FaultStore`] under a shared [`FaultControl`].
/// Apply it with [`LeaseStoreExt::layer`](leader_core::layer::LeaseStoreExt::layer) or
/// [`FaultLayer::wrap`].
#[derive(Clone)]
pub struct FaultLayer {
    control: Arc<FaultControl>,
}

impl FaultLayer {
    /// A layer driven by `control`.
    pub fn new(control: Arc<FaultControl>) -> Self {
        FaultLayer { control }
    }

    /// The control.
    pub fn control(&self) -> &Arc<FaultControl> {
        &self.control
    }

    /// `store` wrapped.
    pub fn wrap(&self, store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        self.layer(store)
    }
}

impl Layer for FaultLayer {
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        Arc::new(FaultStore { inner: Intercepted::new(inner, self.control.clone()), control: self.control.clone() })
    }
}

/// A store with faults injected by a [`FaultControl`]: pre-call faults through the core's
/// [`Intercepted`] plumbing, lost and delayed replies after it. Every trait method is passed on.
pub struct FaultStore {
    inner: Intercepted<FaultControl>,
    control: Arc<FaultControl>,
}

impl FaultStore {
    async fn reply<T>(&self, op: Op, result: Result<T>) -> Result<T> {
        if let Some(d) = self.control.reply_latency(op) {
            tokio::time::sleep(d).await;
        }
        if result.is_ok() && self.control.take_lost_reply(op) {
            return Err(Error::unavailable(format!("injected lost reply ({}; the store applied it)", op.as_str())));
        }
        result
    }
}

#[leader_core::async_trait]
impl LeaseStore for FaultStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        Some(&self.inner)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let r = self.inner.try_acquire(req).await;
        self.reply(Op::TryAcquire, r).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let r = self.inner.renew(lease, ttl).await;
        self.reply(Op::Renew, r).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        let r = self.inner.release(lease).await;
        self.reply(Op::Release, r).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let r = self.inner.update_metadata(lease, metadata).await;
        self.reply(Op::UpdateMetadata, r).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        let r = self.inner.withdraw(election, instance_id).await;
        self.reply(Op::Withdraw, r).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        let r = self.inner.current(election).await;
        self.reply(Op::Current, r).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        let r = self.inner.list(prefix).await;
        self.reply(Op::List, r).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        let stream = self.inner.watch(election, instance_id)?;
        // An outage ends the push channel, as a dropped connection would.
        let mut down = self.control.unavailable.subscribe();
        Some(
            stream
                .take_until(async move {
                    let _ = down.wait_for(|u| *u).await;
                })
                .boxed(),
        )
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
