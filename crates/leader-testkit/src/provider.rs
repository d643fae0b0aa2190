//! [`Provider`]: how the suite gets store handles; [`provider_url`]; the memory providers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leader_core::layer::{Intercept, InterceptLayer, LeaseStoreExt};
use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_memory::MemoryStore;

/// A store under test, as the conformance suite sees it.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use leader_core::{ElectionOptions, LeaseStore};
/// use leader_testkit::Provider;
///
/// struct Mine;
/// #[leader_core::async_trait]
/// impl Provider for Mine {
///     fn name(&self) -> &'static str { "mine" }
///     async fn store(&self) -> leader_core::Result<Arc<dyn LeaseStore>> {
///         Ok(Arc::new(leader_memory::MemoryStore::named("mine-suite")))
///     }
///     fn options(&self) -> ElectionOptions { ElectionOptions::from_lease(Duration::from_secs(2)) }
/// }
/// ```
#[leader_core::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's name, e.g. `"postgres"`: used in skip messages.
    fn name(&self) -> &'static str;

    /// A NEW independent handle on the same store (its own connection or session): each
    /// participant of a scenario gets one, and a "crash" drops it with the participant.
    async fn store(&self) -> Result<Arc<dyn LeaseStore>>;

    /// The options scenarios use: the test lease (2-3 s where the store allows, the provider's
    /// minimum where it does not) with the rest derived from it.
    fn options(&self) -> ElectionOptions;

    /// Network providers: the server's TCP address, so that partition scenarios can put a
    /// [`FaultProxy`](crate::FaultProxy) in front of it.
    fn server_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Network providers: a new handle that connects to `addr` (the fault proxy) instead of the
    /// server. `None` where the provider cannot (partition scenarios then use
    /// [`FaultLayer`](crate::FaultLayer)).
    async fn store_at(&self, _addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        None
    }

    /// Whether the store frees a lease the moment its holder's handle is gone (the kernel drops a
    /// dead process's `flock`). Such a store may hand over *before* the dead lease could have
    /// expired, which is safe (a holder that is gone cannot act), so the crash scenarios skip
    /// that one check for it; they still check the crash bound and that no tenures overlap.
    fn frees_lease_when_holder_exits(&self) -> bool {
        false
    }

    /// Takes the current lease of `election` away from its holder behind the holder's back (deletes
    /// the row, key, node or blob lease, or expires it in the store), so that the holder's next
    /// renew is answered "not yours" (`Ok(None)`). Used by the end-path scenarios to check that work
    /// is dropped at once when the store says the lease is gone. `None`: this provider cannot; the
    /// scenarios that need it print why and skip.
    async fn break_lease(&self, _election: &str) -> Option<Result<()>> {
        None
    }
}

/// The test URL of provider `name` from `LEADER_TEST_<NAME>_URL`.
///
/// When the variable is missing (or empty) it prints
/// `leader-testkit: skipping NAME suite: LEADER_TEST_NAME_URL is not set` to stderr and returns
/// `None`, unless `LEADER_TEST_REQUIRE` (a comma list such as `postgres,redis`) names the provider:
/// then it panics, so that CI cannot pass a suite that did not run.
pub fn provider_url(name: &str) -> Option<String> {
    let var = format!("LEADER_TEST_{}_URL", name.to_ascii_uppercase());
    match std::env::var(&var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if required(name) {
                panic!(
                    "leader-testkit: the {name} suite is required (LEADER_TEST_REQUIRE names it) but {var} is not set; \
                     start the server (scripts/servers up {name}) and export {var}"
                );
            }
            let line = format!("leader-testkit: skipping {name} suite: {var} is not set");
            eprintln!("{line}");
            *crate::harness::PROVIDER_NOTE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(line);
            None
        }
    }
}

fn required(name: &str) -> bool {
    std::env::var("LEADER_TEST_REQUIRE")
        .map(|list| list.split(',').any(|p| p.trim().eq_ignore_ascii_case(name)))
        .unwrap_or(false)
}

/// The in-process provider: every handle is [`MemoryStore::named`] with one name unique to this
/// provider, so all handles share state (as connections to one server do). Test lease 2 s.
pub struct MemoryProvider {
    name: String,
    /// Keeps the shared state alive while the provider lives (a crashed participant drops its own
    /// handle, which must not drop the store).
    _keep: MemoryStore,
    options: ElectionOptions,
}

impl MemoryProvider {
    /// A provider over a fresh, uniquely named memory store, with 2 s leases.
    pub fn new() -> Self {
        Self::with_options(ElectionOptions::from_lease(Duration::from_secs(2)))
    }

    /// The same with other options.
    pub fn with_options(options: ElectionOptions) -> Self {
        let name = format!("leader-testkit-{}", uuid::Uuid::new_v4().simple());
        let keep = MemoryStore::named(&name);
        MemoryProvider { name, _keep: keep, options }
    }

    /// The shared store (for test hooks such as [`MemoryStore::expire_now`]).
    pub fn memory(&self) -> MemoryStore {
        MemoryStore::named(&self.name)
    }
}

impl Default for MemoryProvider {
    fn default() -> Self {
        Self::new()
    }
}

#[leader_core::async_trait]
impl Provider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(MemoryStore::named(&self.name)))
    }
    fn options(&self) -> ElectionOptions {
        self.options.clone()
    }
    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        self.memory().expire_now(election);
        Some(Ok(()))
    }
}

/// Wraps another provider so that every handle it gives is wrapped once more in a pass-through
/// [`InterceptLayer`]: runs the suite through `Arc<dyn LeaseStore>` layering, which must change
/// nothing.
pub struct LayeredProvider {
    inner: Arc<dyn Provider>,
}

impl LayeredProvider {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        LayeredProvider { inner }
    }
}

struct PassThrough;
impl Intercept for PassThrough {}

fn pass_through(store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
    store.layer(InterceptLayer::new(Arc::new(PassThrough)))
}

#[leader_core::async_trait]
impl Provider for LayeredProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(pass_through(self.inner.store().await?))
    }
    fn options(&self) -> ElectionOptions {
        self.inner.options()
    }
    fn server_addr(&self) -> Option<SocketAddr> {
        self.inner.server_addr()
    }
    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        Some(self.inner.store_at(addr).await?.map(pass_through))
    }
    fn frees_lease_when_holder_exits(&self) -> bool {
        self.inner.frees_lease_when_holder_exits()
    }
    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        self.inner.break_lease(election).await
    }
}
