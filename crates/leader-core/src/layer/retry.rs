//! [`RetryLayer`]: bounded, jittered retries of transient errors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{Layer, Op};
use crate::{
    Acquire, AcquireRequest, Capabilities, ElectionOptions, LeaderInfo, Lease, LeaseStore, Metadata, Renewal, Result,
};

/// Retries transient errors ([`Error::is_transient`](crate::Error::is_transient)) a bounded number
/// of times with jittered exponential backoff.
///
/// # Which operations are retried, and why that is safe
/// By the [`LeaseStore`] contract every operation is safe to repeat: `try_acquire` is idempotent per
/// `instance_id` (a repeat that finds our own lease returns it with the same token, never a second
/// lease), `renew`, `release` and `update_metadata` act only on our own (instance, token), and
/// `current`, `list` and `withdraw` change nothing or nothing twice. So all operations are retried by
/// default; [`RetryLayer::ops`] narrows that.
///
/// Retries happen inside the caller's `operation_timeout`, and the election measures its local
/// deadline from the send time of the *first* attempt, so a retried renew never extends leadership
/// beyond what the store granted. A retried `release` whose first attempt succeeded answers
/// `false` (the lease was no longer there).
///
/// ```
/// # fn wrap(store: std::sync::Arc<dyn leader_core::LeaseStore>) {
/// use leader_core::layer::{LeaseStoreExt, RetryLayer};
/// let store = store.layer(RetryLayer::new().max_retries(2));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    ops: Vec<Op>,
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// 3 retries, backoff from 20 ms doubling up to 500 ms (each jittered 50-100 %), every op.
    pub fn new() -> Self {
        RetryLayer {
            max_retries: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            ops: Op::ALL.to_vec(),
        }
    }

    /// How many times a failed call is repeated at most.
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff and its ceiling.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Retry only these operations.
    #[must_use]
    pub fn ops(mut self, ops: &[Op]) -> Self {
        self.ops = ops.to_vec();
        self
    }
}

impl Layer for RetryLayer {
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        Arc::new(Retry { inner, policy: self.clone() })
    }
}

struct Retry {
    inner: Arc<dyn LeaseStore>,
    policy: RetryLayer,
}

impl Retry {
    async fn run<T, F, Fut>(&self, op: Op, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let retries = if self.policy.ops.contains(&op) { self.policy.max_retries } else { 0 };
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && attempt < retries => {
                    attempt += 1;
                    tracing::debug!(op = op.as_str(), attempt, error = %e, "retrying store call");
                    tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
                other => return other,
            }
        }
    }
}

impl Retry {
    /// A batch: the items that failed with a transient error are sent again, as one smaller batch,
    /// with the same backoff as single calls.
    async fn run_batch<T, X, F, Fut>(&self, op: Op, items: &[X], mut call: F) -> Vec<Result<T>>
    where
        X: Clone + Send + Sync,
        F: FnMut(Vec<X>) -> Fut + Send,
        Fut: std::future::Future<Output = Vec<Result<T>>> + Send,
    {
        let retries = if self.policy.ops.contains(&op) { self.policy.max_retries } else { 0 };
        let mut results: Vec<Option<Result<T>>> = (0..items.len()).map(|_| None).collect();
        let mut todo: Vec<usize> = (0..items.len()).collect();
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 0;
        loop {
            let answers = call(todo.iter().map(|&i| items[i].clone()).collect()).await;
            let mut again = Vec::new();
            for (&i, answer) in todo.iter().zip(answers) {
                match answer {
                    Err(e) if e.is_transient() && attempt < retries => {
                        again.push(i);
                        results[i] = Some(Err(e));
                    }
                    other => results[i] = Some(other),
                }
            }
            if again.is_empty() {
                break;
            }
            attempt += 1;
            tracing::debug!(op = op.as_str(), attempt, items = again.len(), "retrying part of a store batch");
            tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
            todo = again;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(crate::Error::backend("the store answered a batch with fewer results"))))
            .collect()
    }
}

#[async_trait]
impl LeaseStore for Retry {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.run(Op::TryAcquire, || self.inner.try_acquire(req)).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.run(Op::Renew, || self.inner.renew(lease, ttl)).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.run(Op::Release, || self.inner.release(lease)).await
    }
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let inner = &self.inner;
        self.run_batch(Op::RenewBatch, batch, |items| async move { inner.renew_batch(&items).await }).await
    }
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let inner = &self.inner;
        self.run_batch(Op::ReleaseBatch, leases, |items| async move { inner.release_batch(&items).await }).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.run(Op::UpdateMetadata, || self.inner.update_metadata(lease, metadata)).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.run(Op::Withdraw, || self.inner.withdraw(election, instance_id)).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.run(Op::Current, || self.inner.current(election)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.run(Op::List, || self.inner.list(prefix)).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
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
