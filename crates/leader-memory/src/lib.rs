//! `MemoryStore`: an in-process [`LeaseStore`] for tests and for several tasks of one process.
//!
//! It is the reference for the trait's semantics: strictly increasing tokens per election (kept
//! even when a lease is released or cleaned up), idempotent acquire by `instance_id`, renew and
//! release guarded by instance and token, `update_metadata`, `list`, and a `watch` that wakes
//! followers at once on release, takeover or expiry.
//!
//! It opens no connection and no file; all of its state is in this process's memory.
//!
//! Time is `tokio::time::Instant`, so tests can pause and advance it. Stores opened with the same
//! name (`memory://name` in `leader::connect`, or [`MemoryStore::named`]) share their state while any
//! handle to it lives; [`MemoryStore::new`] gives a private one. `memory://` without a name is
//! refused (see [`MemoryStore::from_url`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> leader_core::Result<()> {
//! use std::sync::Arc;
//! use leader_core::{Election, ElectionOptions, Renewal};
//! let store = Arc::new(leader_memory::MemoryStore::new());
//! let a = Election::new(store.clone(), "jobs", "a", ElectionOptions::default())?;
//! assert!(a.try_acquire().await?);
//! let b = Election::new(store, "jobs", "b", ElectionOptions::default())?;
//! assert!(!b.try_acquire().await?);
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use futures::stream::{self, BoxStream, StreamExt};
use leader_core::{
    async_trait, validate_election_name, validate_prefix, Acquire, AcquireRequest, Capabilities, ElectionOptions,
    Error, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata, Renewal, Result,
};
use tokio::sync::watch;
use tokio::time::Instant;

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["memory"];

/// An in-process lease store. Cheap to clone (clones share state).
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    elections: Mutex<BTreeMap<String, Slot>>,
}

#[derive(Default)]
struct Slot {
    lease: Option<Held>,
    /// Last token issued; never reset, so tokens grow across release and cleanup.
    last_token: u64,
    /// Bumped on every change of holder; followers' watches wait on it.
    version: Option<watch::Sender<u64>>,
}

struct Held {
    lease: Lease,
    expires: Instant,
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// A store of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store registered under `name` in this process, created if no handle to it lives.
    pub fn named(name: &str) -> Self {
        let mut reg = lock(registry());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = reg.get(name).and_then(Weak::upgrade) {
            return MemoryStore { shared };
        }
        let store = MemoryStore::new();
        reg.insert(name.to_owned(), Arc::downgrade(&store.shared));
        store
    }

    /// Opens `memory://NAME`: the store registered under `NAME` in this process (see
    /// [`named`](Self::named)).
    ///
    /// `memory://` without a name is refused: every such URL would give a private store, so two
    /// participants configured with the same URL (two `leader::Config::build`s, say) would each
    /// lead alone, silently. Name the store, or use [`MemoryStore::new`] (and clone the handle)
    /// for a private one.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for a URL that does
    /// not parse, is not `memory://`, or names no store.
    pub fn from_url(url: &str) -> Result<Self> {
        let shown = leader_core::redact::secrets(url);
        let parsed =
            url::Url::parse(url).map_err(|e| Error::invalid_argument(format!("invalid URL {shown:?}: {e}")))?;
        if parsed.scheme() != "memory" {
            return Err(Error::invalid_argument(format!("URL {shown:?} is not a memory:// URL")));
        }
        match parsed.host_str().unwrap_or("") {
            "" => Err(Error::invalid_argument(format!(
                "URL {shown:?} names no store: write memory://NAME (stores opened with the same NAME in \
                 this process share their leases); for a private store use MemoryStore::new()"
            ))),
            name => Ok(Self::named(name)),
        }
    }

    /// Test hook: expires the lease of `election` now, as if its holder had stopped renewing long
    /// ago. Watchers wake. Returns whether there was a lease.
    pub fn expire_now(&self, election: &str) -> bool {
        let mut map = lock(&self.shared.elections);
        let Some(slot) = map.get_mut(election) else { return false };
        let had = slot.lease.take().is_some();
        if had {
            slot.bump();
        }
        had
    }

    /// Removes expired leases (tokens are kept); returns how many.
    pub fn cleanup_expired_leases(&self) -> usize {
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        map.values_mut().filter(|s| s.lease.as_ref().is_some_and(|h| h.expires <= now)).fold(0, |n, s| {
            s.lease = None;
            s.bump();
            n + 1
        })
    }
}

impl Slot {
    /// The unexpired holder; an expired one is dropped (and watchers woken) first.
    fn live(&mut self, now: Instant) -> Option<&mut Held> {
        if self.lease.as_ref().is_some_and(|h| h.expires <= now) {
            self.lease = None;
            self.bump();
        }
        self.lease.as_mut()
    }

    fn bump(&mut self) {
        if let Some(v) = &self.version {
            v.send_modify(|n| *n += 1);
        }
    }
}

impl Held {
    fn view(&self, now: Instant) -> Lease {
        let left = self.expires.saturating_duration_since(now);
        Lease { expires_in: Some(left), expires_at: Some(SystemTime::now() + left), ..self.lease.clone() }
    }
}

fn ours(held: &Held, lease: &Lease) -> bool {
    held.lease.instance_id == lease.instance_id && held.lease.token == lease.token
}

fn renew_in(map: &mut BTreeMap<String, Slot>, lease: &Lease, ttl: Duration, now: Instant) -> Option<Lease> {
    let held = map.get_mut(&lease.election).and_then(|s| s.live(now))?;
    if !ours(held, lease) {
        return None;
    }
    held.expires = now + ttl;
    Some(held.view(now))
}

fn release_in(map: &mut BTreeMap<String, Slot>, lease: &Lease, now: Instant) -> bool {
    let Some(slot) = map.get_mut(&lease.election) else { return false };
    if !slot.live(now).is_some_and(|h| ours(h, lease)) {
        return false;
    }
    slot.lease = None;
    slot.bump();
    true
}

#[async_trait]
impl LeaseStore for MemoryStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        let slot = map.entry(req.election.clone()).or_default();
        if let Some(held) = slot.live(now) {
            if held.lease.instance_id != req.instance_id {
                return Ok(Acquire::Held(Some(held.view(now))));
            }
            held.expires = now + req.ttl;
            held.lease.metadata = req.metadata.clone();
            return Ok(Acquire::Acquired(held.view(now)));
        }
        slot.last_token += 1;
        let lease = Lease {
            election: req.election.clone(),
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            token: FencingToken::new(slot.last_token),
            acquired_at: Some(SystemTime::now()),
            expires_at: None,
            expires_in: None,
            metadata: req.metadata.clone(),
            handle: Default::default(),
        };
        let held = Held { lease, expires: now + req.ttl };
        let view = held.view(now);
        slot.lease = Some(held);
        slot.bump();
        Ok(Acquire::Acquired(view))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let now = Instant::now();
        Ok(renew_in(&mut lock(&self.shared.elections), lease, ttl, now))
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let now = Instant::now();
        Ok(release_in(&mut lock(&self.shared.elections), lease, now))
    }

    /// One pass under one lock.
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        batch.iter().map(|r| Ok(renew_in(&mut map, &r.lease, r.ttl, now))).collect()
    }

    /// One pass under one lock.
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        leases.iter().map(|l| Ok(release_in(&mut map, l, now))).collect()
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        let Some(held) = map.get_mut(&lease.election).and_then(|s| s.live(now)) else { return Ok(None) };
        if !ours(held, lease) {
            return Ok(None);
        }
        held.lease.metadata = metadata.clone();
        Ok(Some(held.view(now)))
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        Ok(map.get_mut(election).and_then(|s| s.live(now)).map(|h| h.view(now)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let now = Instant::now();
        let mut map = lock(&self.shared.elections);
        Ok(map
            .range_mut(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .filter_map(|(_, slot)| slot.live(now).map(|h| h.view(now)))
            .collect())
    }

    fn watch(&self, election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        let rx = {
            let mut map = lock(&self.shared.elections);
            let slot = map.entry(election.to_owned()).or_default();
            slot.version.get_or_insert_with(|| watch::Sender::new(0)).subscribe()
        };
        // Wakes on every change of holder, and at the holder's expiry (this store pushes expiry).
        let store = self.clone();
        let election = election.to_owned();
        Some(
            stream::unfold((rx, store, election), |(mut rx, store, election)| async move {
                let expires = {
                    let map = lock(&store.shared.elections);
                    map.get(&election).and_then(|s| s.lease.as_ref()).map(|h| h.expires)
                };
                let expiry = async {
                    match expires {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => futures::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = expiry => {
                        // Let the expiry take effect, so the woken follower sees it.
                        let mut map = lock(&store.shared.elections);
                        if let Some(slot) = map.get_mut(&election) { slot.live(Instant::now()); }
                        rx.borrow_and_update();
                    }
                }
                Some(((), (rx, store, election)))
            })
            .boxed(),
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: true,
            pushes_expiry: true,
            server_side_expiry: true,
            durable_tokens: false,
            cross_host: false,
            survives_store_failover: false,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, _options: &ElectionOptions) -> Result<()> {
        Ok(())
    }
}

/// `leader::connect` entry point: opens a `memory://` URL.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(MemoryStore::from_url(url)?))
}

/// `leader-bench` entry point: the store and its raw floor (one mutex-guarded map update, the
/// primitive `try_acquire` is built on).
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn leader_core::RawFloor>)> {
    let store = MemoryStore::from_url(url)?;
    Ok((Arc::new(store.clone()), Arc::new(store)))
}

#[async_trait]
impl leader_core::RawFloor for MemoryStore {
    fn describe(&self) -> String {
        "one mutex-guarded map entry update".to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        let mut map = lock(&self.shared.elections);
        let slot = map.entry(election.to_owned()).or_default();
        slot.last_token += 1;
        std::hint::black_box((&slot.last_token, instance_id));
        Ok(())
    }
}
