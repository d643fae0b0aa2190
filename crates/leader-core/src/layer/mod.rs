//! Store layers: wrap any `Arc<dyn LeaseStore>` and get one back, in the manner of tower and
//! OpenDAL. [`Intercepted`] is the shared plumbing: an [`Intercept`] hook runs before and after
//! every store call and every trait method is passed on, so a layer only writes its hook.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use leader_core::layer::{Intercept, InterceptLayer, LeaseStoreExt, Op};
//! use leader_core::LeaseStore;
//!
//! #[derive(Default)]
//! struct Count(AtomicU64);
//! #[leader_core::async_trait]
//! impl Intercept for Count {
//!     fn after(&self, _op: Op, _election: &str, _ok: bool, _elapsed: Duration) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//! # fn wrap(store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
//! let counter = Arc::new(Count::default());
//! store.layer(InterceptLayer::new(counter.clone()))
//! # }
//! ```

mod circuit_breaker;
#[cfg(feature = "metrics")]
mod metrics;
mod retry;

use std::sync::Arc;
use std::time::Duration;

pub use self::circuit_breaker::CircuitBreakerLayer;
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsLayer;
pub use self::retry::RetryLayer;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::time::Instant;

use crate::{
    Acquire, AcquireRequest, Capabilities, ElectionOptions, Error, LeaderInfo, Lease, LeaseStore, Metadata, Renewal,
    Result,
};

/// The store operations, as layers see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`LeaseStore::try_acquire`].
    TryAcquire,
    /// [`LeaseStore::renew`].
    Renew,
    /// [`LeaseStore::release`].
    Release,
    /// [`LeaseStore::update_metadata`].
    UpdateMetadata,
    /// [`LeaseStore::withdraw`].
    Withdraw,
    /// [`LeaseStore::current`].
    Current,
    /// [`LeaseStore::list`].
    List,
    /// [`LeaseStore::renew_batch`]: one call for many leases (its election is `"*"`).
    RenewBatch,
    /// [`LeaseStore::release_batch`]: one call for many leases (its election is `"*"`).
    ReleaseBatch,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 9] = [
        Op::TryAcquire,
        Op::Renew,
        Op::Release,
        Op::UpdateMetadata,
        Op::Withdraw,
        Op::Current,
        Op::List,
        Op::RenewBatch,
        Op::ReleaseBatch,
    ];

    /// The one-lease operation a batch operation stands for (itself for the others): how fault
    /// settings for `Renew` also reach renewals that travel in a batch.
    pub fn single(self) -> Op {
        match self {
            Op::RenewBatch => Op::Renew,
            Op::ReleaseBatch => Op::Release,
            other => other,
        }
    }

    /// A short name, e.g. `"try_acquire"` (used as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::TryAcquire => "try_acquire",
            Op::Renew => "renew",
            Op::Release => "release",
            Op::UpdateMetadata => "update_metadata",
            Op::Withdraw => "withdraw",
            Op::Current => "current",
            Op::List => "list",
            Op::RenewBatch => "renew_batch",
            Op::ReleaseBatch => "release_batch",
        }
    }
}

/// Wraps a store in another; applied with [`LeaseStoreExt::layer`].
pub trait Layer {
    /// Returns `inner` wrapped.
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore>;
}

/// `store.layer(l)` for any `Arc<dyn LeaseStore>`.
pub trait LeaseStoreExt {
    /// Wraps this store in `layer`.
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn LeaseStore>;
}

impl LeaseStoreExt for Arc<dyn LeaseStore> {
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn LeaseStore> {
        layer.layer(self)
    }
}

/// A hook around every store call of an [`Intercepted`] store.
#[async_trait]
pub trait Intercept: Send + Sync + 'static {
    /// Runs before the call, inside the caller's `operation_timeout`. An error is returned instead
    /// of making the call (an outage, an open circuit); a delay here is a slow store.
    async fn before(&self, _op: Op, _election: &str) -> Result<()> {
        Ok(())
    }

    /// Runs after the call (or after `before` refused it) with its outcome and duration. A call
    /// whose future was dropped before it finished (the caller's timeout) is reported as failed.
    fn after(&self, _op: Op, _election: &str, _ok: bool, _elapsed: Duration) {}

    /// Whether `watch` is passed on; `false` makes the store look push-less (callers poll).
    fn allow_watch(&self, _election: &str) -> bool {
        true
    }
}

/// The [`Layer`] that wraps a store in [`Intercepted`] with a shared hook.
pub struct InterceptLayer<I: ?Sized> {
    hook: Arc<I>,
}

impl<I: Intercept + ?Sized> InterceptLayer<I> {
    /// A layer that runs `hook` around every call.
    pub fn new(hook: Arc<I>) -> Self {
        InterceptLayer { hook }
    }
}

impl<I: Intercept + ?Sized> Layer for InterceptLayer<I> {
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        Arc::new(Intercepted { inner, hook: self.hook.clone() })
    }
}

/// A store whose every call runs through an [`Intercept`] hook; every trait method is passed on.
pub struct Intercepted<I: ?Sized> {
    inner: Arc<dyn LeaseStore>,
    hook: Arc<I>,
}

impl<I: Intercept + ?Sized> Intercepted<I> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LeaseStore>, hook: Arc<I>) -> Self {
        Intercepted { inner, hook }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn LeaseStore> {
        &self.inner
    }

    async fn run<T>(&self, op: Op, election: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        // A call the caller cuts off (its operation_timeout) is reported too, as a failure:
        // otherwise a store that hangs instead of failing would never open a circuit breaker.
        let mut pending = Pending { hook: &*self.hook, op, election, start: Instant::now(), done: false };
        let result = match self.hook.before(op, election).await {
            Ok(()) => call.await,
            Err(e) => Err(e),
        };
        pending.done = true;
        self.hook.after(op, election, result.is_ok(), pending.start.elapsed());
        result
    }
}

impl<I: Intercept + ?Sized> Intercepted<I> {
    /// A batch call, through the hook once: refused as a whole (every item gets the error), and
    /// reported as failed when every item failed.
    async fn run_batch<T>(
        &self,
        op: Op,
        len: usize,
        call: impl std::future::Future<Output = Vec<Result<T>>>,
    ) -> Vec<Result<T>> {
        let mut pending = Pending { hook: &*self.hook, op, election: "*", start: Instant::now(), done: false };
        let results = match self.hook.before(op, "*").await {
            Ok(()) => call.await,
            Err(e) => (0..len).map(|_| Err(replicate(&e))).collect(),
        };
        pending.done = true;
        let ok = results.is_empty() || results.iter().any(Result::is_ok);
        self.hook.after(op, "*", ok, pending.start.elapsed());
        results
    }
}

/// The same error again (kind and message), for each item of a batch refused as a whole.
pub(crate) fn replicate(e: &Error) -> Error {
    Error::new(e.kind(), e.to_string())
}

/// Reports a call to `after` as failed if its future is dropped before it finishes.
struct Pending<'a, I: Intercept + ?Sized> {
    hook: &'a I,
    op: Op,
    election: &'a str,
    start: Instant,
    done: bool,
}

impl<I: Intercept + ?Sized> Drop for Pending<'_, I> {
    fn drop(&mut self) {
        if !self.done {
            self.hook.after(self.op, self.election, false, self.start.elapsed());
        }
    }
}

#[async_trait]
impl<I: Intercept + ?Sized> LeaseStore for Intercepted<I> {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.run(Op::TryAcquire, &req.election, self.inner.try_acquire(req)).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.run(Op::Renew, &lease.election, self.inner.renew(lease, ttl)).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.run(Op::Release, &lease.election, self.inner.release(lease)).await
    }
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        self.run_batch(Op::RenewBatch, batch.len(), self.inner.renew_batch(batch)).await
    }
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        self.run_batch(Op::ReleaseBatch, leases.len(), self.inner.release_batch(leases)).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.run(Op::UpdateMetadata, &lease.election, self.inner.update_metadata(lease, metadata)).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.run(Op::Withdraw, election, self.inner.withdraw(election, instance_id)).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.run(Op::Current, election, self.inner.current(election)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.run(Op::List, prefix, self.inner.list(prefix)).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        if self.hook.allow_watch(election) {
            self.inner.watch(election, instance_id)
        } else {
            None
        }
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        Some(&*self.inner)
    }
}
