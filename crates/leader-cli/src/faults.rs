//! Fault hooks for the CLI's own tests. They exist only in a build with the cargo feature
//! `test-faults` (never enable it in a build you deploy); without it [`init`] ignores the
//! environment and every hook is off.
//!
//! `LEADER_TEST_CLI_FAULTS` holds a comma-separated list of:
//! - `watchdog-spawn`: the watchdog cannot be started (its executable does not exist);
//! - `watchdog-inert`: the watchdog never kills anything (to test the parent-death signal alone);
//! - `refuse=DURATION`: the store answers `Acquire::Refused` for DURATION after it was opened;
//! - `outage-after-acquire`: every store call fails once this process acquired the lease;
//! - `store-down`: every store call fails.
//!
//! The variable is named `LEADER_TEST_*` so that `leader::Config::from_env` in a command run by
//! `leader run` ignores it.

use std::sync::{Arc, OnceLock};
#[cfg(feature = "test-faults")]
use std::time::Duration;

use leader::LeaseStore;

/// The environment variable the hooks are read from.
#[cfg(feature = "test-faults")]
pub(crate) const ENV: &str = "LEADER_TEST_CLI_FAULTS";

/// The faults this process was asked for.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    /// The watchdog cannot be started.
    pub(crate) watchdog_spawn: bool,
    /// The watchdog never kills anything.
    pub(crate) watchdog_inert: bool,
    /// The store refuses to elect for this long after it was opened.
    #[cfg(feature = "test-faults")]
    refuse_for: Option<Duration>,
    /// Every store call fails once this process acquired.
    #[cfg(feature = "test-faults")]
    outage_after_acquire: bool,
    /// Every store call fails.
    #[cfg(feature = "test-faults")]
    store_down: bool,
}

static FAULTS: OnceLock<Faults> = OnceLock::new();

/// Reads the faults from the environment (a build with `test-faults` only); an unknown fault is an
/// error naming it.
pub(crate) fn init() -> leader::Result<()> {
    #[cfg(feature = "test-faults")]
    {
        let faults = match std::env::var(ENV) {
            Ok(list) => parse(&list)?,
            Err(_) => Faults::default(),
        };
        let _ = FAULTS.set(faults);
    }
    Ok(())
}

/// The faults in force (none unless [`init`] found some).
pub(crate) fn get() -> &'static Faults {
    FAULTS.get_or_init(Faults::default)
}

#[cfg(feature = "test-faults")]
fn parse(list: &str) -> leader::Result<Faults> {
    let mut f = Faults::default();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            None if item == "watchdog-spawn" => f.watchdog_spawn = true,
            None if item == "watchdog-inert" => f.watchdog_inert = true,
            None if item == "outage-after-acquire" => f.outage_after_acquire = true,
            None if item == "store-down" => f.store_down = true,
            Some(("refuse", d)) => {
                f.refuse_for = Some(crate::args::duration(d).map_err(|e| leader::Error::invalid_argument(format!("{ENV}: {e}")))?)
            }
            _ => {
                return Err(leader::Error::invalid_argument(format!(
                    "{ENV}: unknown fault {item:?}; known: watchdog-spawn, watchdog-inert, refuse=DURATION, outage-after-acquire, store-down"
                )))
            }
        }
    }
    Ok(f)
}

/// The store with the store faults in force wrapped around it.
pub(crate) fn wrap(store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
    #[cfg(feature = "test-faults")]
    {
        let f = get();
        if f.refuse_for.is_some() || f.outage_after_acquire || f.store_down {
            return Arc::new(store::FaultStore::new(store, f));
        }
    }
    store
}

#[cfg(feature = "test-faults")]
mod store {
    use std::any::Any;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use leader::{
        Acquire, AcquireRequest, BoxStream, Capabilities, ElectionOptions, Error, LeaderInfo, Lease, LeaseStore,
        Metadata, Refusal, Result,
    };

    use super::Faults;

    /// A store that refuses to elect, or fails every call, as the faults say.
    pub(super) struct FaultStore {
        inner: Arc<dyn LeaseStore>,
        refuse_until: Option<Instant>,
        outage_after_acquire: bool,
        store_down: bool,
        acquired: AtomicBool,
    }

    impl FaultStore {
        pub(super) fn new(inner: Arc<dyn LeaseStore>, f: &Faults) -> Self {
            FaultStore {
                inner,
                refuse_until: f.refuse_for.map(|d| Instant::now() + d),
                outage_after_acquire: f.outage_after_acquire,
                store_down: f.store_down,
                acquired: AtomicBool::new(false),
            }
        }

        fn check(&self) -> Result<()> {
            if self.store_down || (self.outage_after_acquire && self.acquired.load(Ordering::SeqCst)) {
                return Err(Error::unavailable("test fault: the store is down"));
            }
            Ok(())
        }

        fn refusing(&self) -> Option<Duration> {
            let left = self.refuse_until?.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(left)
        }
    }

    #[leader::async_trait]
    impl LeaseStore for FaultStore {
        async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
            self.check()?;
            if let Some(left) = self.refusing() {
                return Ok(Acquire::Refused(Refusal::new("test fault: refusing to elect").retry_in(left)));
            }
            let answer = self.inner.try_acquire(req).await?;
            if matches!(answer, Acquire::Acquired(_)) {
                self.acquired.store(true, Ordering::SeqCst);
            }
            Ok(answer)
        }
        async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
            self.check()?;
            self.inner.renew(lease, ttl).await
        }
        async fn release(&self, lease: &Lease) -> Result<bool> {
            self.check()?;
            self.inner.release(lease).await
        }
        async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
            self.check()?;
            self.inner.update_metadata(lease, metadata).await
        }
        async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
            self.check()?;
            self.inner.withdraw(election, instance_id).await
        }
        async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
            self.check()?;
            self.inner.current(election).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
            self.check()?;
            self.inner.list(prefix).await
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
        fn as_any(&self) -> Option<&dyn Any> {
            None
        }
        fn inner_store(&self) -> Option<&dyn LeaseStore> {
            Some(&*self.inner)
        }
    }
}
