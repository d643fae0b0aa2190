//! The [`LeaseStore`] trait every provider implements, and what it takes and returns.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{ElectionOptions, LeaderInfo, Lease, Metadata, Result};

/// One attempt to acquire (or, for the same `instance_id`, refresh) an election's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    /// The election's name (validated by [`validate_election_name`](crate::validate_election_name)).
    pub election: String,
    /// Who asks, as the user named the participant.
    pub participant_id: String,
    /// Random per [`Election`](crate::Election) object.
    pub instance_id: String,
    /// How long the store keeps the lease unless it is renewed.
    pub ttl: Duration,
    /// Published with the lease.
    pub metadata: Metadata,
}

/// The answer to [`LeaseStore::try_acquire`].
#[derive(Debug, Clone)]
pub enum Acquire {
    /// The lease is ours: newly acquired, or already ours (same `instance_id`), in which case the
    /// token is unchanged and the TTL fresh.
    Acquired(Lease),
    /// Another instance holds it: who, if the store says.
    Held(Option<LeaderInfo>),
    /// Nobody holds it, but the store refuses to elect anyone for now (Redis after a server
    /// restart it cannot rule out having lost a lease, for example). The election shows the
    /// refusal in [`HealthReport::refused`](crate::HealthReport::refused) and in its tracing, and
    /// tries again when it ends.
    Refused(Refusal),
}

/// Why a store refuses to elect anyone for now, and for how long: [`Acquire::Refused`].
///
/// ```
/// use std::time::Duration;
/// use leader_core::Refusal;
/// let r = Refusal::new("the server restarted; a lease from before may still be held")
///     .retry_in(Duration::from_secs(3));
/// assert_eq!(r.retry_in, Some(Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// What the store waits for, in words a user can act on (names the setting or event).
    pub reason: String,
    /// How long until the store elects again, as the store computed it when it answered (`None`:
    /// it cannot say; the election retries every `retry_interval`).
    pub retry_in: Option<Duration>,
}

impl Refusal {
    /// A refusal for `reason`, with no known end.
    pub fn new(reason: impl Into<String>) -> Self {
        Refusal { reason: reason.into(), retry_in: None }
    }

    /// Sets how long until the store elects again.
    #[must_use]
    pub fn retry_in(mut self, retry_in: Duration) -> Self {
        self.retry_in = Some(retry_in);
        self
    }
}

/// One lease of a [`LeaseStore::renew_batch`]: renew `lease` by `ttl`.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// Our own lease, as last acquired or renewed.
    pub lease: Lease,
    /// How long the store keeps it from now.
    pub ttl: Duration,
}

/// What a provider can do. Declared per provider; drives which conformance scenarios apply and what
/// the docs say.
///
/// ```
/// use leader_core::Capabilities;
/// let caps = Capabilities { push_notifications: true, ..Capabilities::default() };
/// assert_eq!(caps.reap_multiplier, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`LeaseStore::watch`] returns a stream: followers wake when the lease is released or taken.
    pub push_notifications: bool,
    /// The watch also fires when a lease expires without a release (fs, ZooKeeper, Consul, memory).
    /// Where it does not (PostgreSQL, Redis), followers also wake at the holder's `expires_in`.
    pub pushes_expiry: bool,
    /// The store expires leases by its own clock (guarantee 4).
    pub server_side_expiry: bool,
    /// Fencing tokens survive a restart of the store itself.
    pub durable_tokens: bool,
    /// Participants on different hosts can share the store (false for fs and memory).
    pub cross_host: bool,
    /// Mutual exclusion survives a failover of the store (false for Redis with async replication).
    pub survives_store_failover: bool,
    /// [`LeaseStore::list`] works.
    pub lists_elections: bool,
    /// The store reaps an abandoned lease within `reap_multiplier × lease_duration` (1 for most;
    /// Consul may take up to 2× the session TTL). The crash bound is this plus `retry_interval`.
    pub reap_multiplier: u32,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            push_notifications: false,
            pushes_expiry: false,
            server_side_expiry: false,
            durable_tokens: false,
            cross_host: false,
            survives_store_failover: false,
            lists_elections: false,
            reap_multiplier: 1,
        }
    }
}

impl Capabilities {
    /// How long after a holder crashes another participant is sure to lead (guarantee 6).
    pub fn crash_bound(&self, options: &ElectionOptions) -> Duration {
        options.lease_duration * self.reap_multiplier.max(1) + options.retry_interval
    }
}

/// The primitives a provider implements over its store. The election logic (campaign, renew, watch,
/// step down) lives once, in [`Election`](crate::Election); a store only answers these calls.
///
/// Object safe: `Arc<dyn LeaseStore>` is how every part of the library holds a store.
///
/// # Contract
/// - `try_acquire` takes the lease if it is free or expired and returns it with a token greater than
///   every token issued before in that election; if it is already held by the same `instance_id` it
///   refreshes the TTL and returns the same token (so a retried acquire is idempotent).
/// - `renew`, `release` and `update_metadata` act only on the caller's own tenure (same instance and
///   token); on anyone else's lease they change nothing.
/// - Expiry is judged by the store's clock where it has one.
///
/// # Cancellation
/// The driver drops these futures on `operation_timeout`. A provider must leave nothing behind that
/// it would not also leave after a lost reply: a lease granted but not returned is bounded by its TTL
/// and is recognised as ours by the next `try_acquire` of the same instance.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Acquires, or refreshes our own, lease. See the trait's contract.
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire>;

    /// Extends our own lease by `ttl`. `Ok(None)`: it is no longer ours.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>>;

    /// Gives up our own lease at once. `Ok(false)`: it was not ours (anymore); nothing changed.
    async fn release(&self, lease: &Lease) -> Result<bool>;

    /// Renews several of our own leases (of different elections) in as few round trips as the
    /// store allows: one statement, one script, one pipeline per node. Each lease gets its own
    /// answer, in order, exactly as [`renew`](LeaseStore::renew) would give it; one bad lease
    /// never fails the others. Elections sharing a store handle are renewed through this (see
    /// [`Election`](crate::Election)).
    ///
    /// The default renews them one by one, concurrently. Layers must pass a batch on as one call.
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        futures::future::join_all(batch.iter().map(|r| self.renew(&r.lease, r.ttl))).await
    }

    /// Releases several of our own leases in as few round trips as the store allows; each gets
    /// its own answer, in order, as [`release`](LeaseStore::release) would give it. The default
    /// releases them one by one, concurrently. Layers must pass a batch on as one call.
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        futures::future::join_all(leases.iter().map(|l| self.release(l))).await
    }

    /// Replaces the metadata of our own lease. `Ok(None)`: it is no longer ours.
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>>;

    /// Leaves the queue of `election` (stores with candidate queues, such as ZooKeeper); stores
    /// without a queue do nothing. No default, so that no wrapper can forget to pass it on.
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()>;

    /// The unexpired holder, or `None`.
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>>;

    /// Every unexpired holder whose election name starts with `prefix`, sorted by election.
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) where the store cannot list.
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>>;

    /// A push hint that the lease (or, for queues, this instance's predecessor) changed; `None`
    /// means the caller polls. A stream that ends means the push channel is down: poll, and call
    /// `watch` again later. Items carry no data: read the state with `current`/`try_acquire`.
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>>;

    /// What this store can do.
    fn capabilities(&self) -> Capabilities;

    /// Refuses options outside the store's limits (Azure 15-60 s leases, Consul TTL >= 10 s,
    /// ZooKeeper session bounds) with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument).
    fn check_options(&self, options: &ElectionOptions) -> Result<()>;

    /// This store as [`Any`], so that [`downcast_ref`](trait.LeaseStore.html#method.downcast_ref)
    /// can reach the provider's own type. Providers return `Some(self)`; the default `None` makes
    /// the store opaque.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// The store this one wraps, for layers (`None` for a provider's own store), so that
    /// [`downcast_ref`](trait.LeaseStore.html#method.downcast_ref) sees through layers.
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        None
    }
}

impl dyn LeaseStore {
    /// The provider's own store type behind an `Arc<dyn LeaseStore>`, looking through any layers
    /// (retry, metrics, ...) wrapped around it: how to reach provider features (the PostgreSQL
    /// fenced-write function, the ZooKeeper session timeout) from a store `leader::connect` gave.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use leader_core::layer::{LeaseStoreExt, RetryLayer};
    /// use leader_core::LeaseStore;
    /// use leader_memory::MemoryStore;
    ///
    /// let store: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    /// let store = store.layer(RetryLayer::new());
    /// assert!(store.downcast_ref::<MemoryStore>().is_some());
    /// ```
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        let mut store: &dyn LeaseStore = self;
        loop {
            if let Some(found) = store.as_any().and_then(|a| a.downcast_ref::<T>()) {
                return Some(found);
            }
            store = store.inner_store()?;
        }
    }
}

/// A shared, type-erased store: what [`Election`](crate::Election) and `leader::connect` use.
pub type DynLeaseStore = Arc<dyn LeaseStore>;

#[async_trait]
impl<T: LeaseStore + ?Sized> LeaseStore for Arc<T> {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        (**self).try_acquire(req).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        (**self).renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        (**self).release(lease).await
    }
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        (**self).renew_batch(batch).await
    }
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        (**self).release_batch(leases).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        (**self).update_metadata(lease, metadata).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        (**self).withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        (**self).current(election).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        (**self).list(prefix).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        (**self).watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        (**self).check_options(options)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        (**self).as_any()
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        (**self).inner_store()
    }
}
