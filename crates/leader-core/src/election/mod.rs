//! [`Election`]: one participant in one election, driven by hand or in the background.

mod batch;
mod core;
mod driver;
mod leadership;

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::core::{Attempt, Core, HealthCheck, IN_WORK};
pub use self::core::{HealthReport, RefusedReport};
use self::leadership::lock;
pub use self::leadership::Leadership;
use crate::clock::SuspendClock;
use crate::{
    validate, ChangeReason, ElectionOptions, Error, LeaderInfo, LeadershipChanges, LeaseStore, Metadata, Result,
};

/// How many pieces of the tenure's own work the current task is inside (0 or 1).
fn inside_work(tenure: &Leadership) -> usize {
    IN_WORK.try_with(|id| usize::from(*id == tenure.id())).unwrap_or(0)
}

/// One participant in one election. Cheap to clone: clones are handles to the same participant.
///
/// Two ways to use it:
/// - **automatic**: [`start`](Election::start) campaigns, renews and watches in a background task;
///   read [`is_leader`](Election::is_leader), await [`wait_for_leadership`](Election::wait_for_leadership),
///   run work with [`run_as_leader`](Election::run_as_leader) or consume [`changes`](Election::changes);
///   [`stop`](Election::stop) releases.
/// - **manual**: call [`try_acquire`](Election::try_acquire) yourself (again before
///   `renew_deadline` passes, to renew) and [`release`](Election::release).
///
/// Dropping the last handle stops the background task without blocking and without releasing (the
/// lease then expires in the store); call `stop()` to hand over at once. A participant that was
/// following withdraws its candidacy (best effort, in a task spawned on the current tokio runtime,
/// if there is one).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use leader_core::{Election, ElectionOptions, LeaseStore};
///
/// # async fn demo(store: Arc<dyn LeaseStore>) -> leader_core::Result<()> {
/// let election = Election::builder(store, "nightly-report")
///     .options(ElectionOptions::from_lease(Duration::from_secs(15)))
///     .build()?;
/// election.start().await?;
/// let rows = election
///     .run_as_leader(|leadership| async move {
///         // every write carries leadership.token() so a deposed leader's writes are refused
///         leadership.token().get()
///     })
///     .await?;
/// election.stop().await?;
/// # let _ = rows; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Election {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("election", &self.handle.core.name)
            .field("participant_id", &self.handle.core.participant_id)
            .field("instance_id", &self.handle.core.instance_id)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}

/// Owned by every clone of one `Election`; its drop is "the last handle went away".
struct Handle {
    core: Arc<Core>,
    task: Mutex<Option<Task>>,
}

struct Task {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = task.stop.send(true);
        }
        let held = self.core.stopped(None);
        if held.is_none() {
            // A follower leaves the queue (queue stores: ZooKeeper), best effort; a leader's lease
            // is left to expire (no release without the caller's consent to wait).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let core = self.core.clone();
                runtime.spawn(async move {
                    let _ = core.call("withdraw", core.store.withdraw(&core.name, &core.instance_id)).await;
                });
            }
        }
    }
}

impl Election {
    /// A participant named `participant_id` in `election`, with `options`.
    ///
    /// # Errors
    /// [`InvalidArgument`](crate::ErrorKind::InvalidArgument) if the name, the id or the options
    /// break a rule, or the store refuses the options ([`LeaseStore::check_options`]).
    pub fn new(
        store: Arc<dyn LeaseStore>,
        election: &str,
        participant_id: &str,
        options: ElectionOptions,
    ) -> Result<Self> {
        validate::validate_election_name(election)?;
        validate::validate_participant_id(participant_id)?;
        options.validate()?;
        store.check_options(&options)?;
        Self::build(store, election, participant_id, options, None, crate::clock::system(), false)
    }

    fn build(
        store: Arc<dyn LeaseStore>,
        election: &str,
        participant_id: &str,
        options: ElectionOptions,
        health_check: Option<HealthCheck>,
        suspend: Arc<dyn SuspendClock>,
        broken_handover: bool,
    ) -> Result<Self> {
        validate::validate_election_name(election)?;
        validate::validate_participant_id(participant_id)?;
        options.validate()?;
        store.check_options(&options)?;
        let mut core = Core::new(store, election.to_owned(), participant_id.to_owned(), options, health_check, suspend);
        core.broken_handover = broken_handover;
        Ok(Election { handle: Arc::new(Handle { core: Arc::new(core), task: Mutex::new(None) }) })
    }

    /// A builder; the participant id defaults to `<host name>-<pid>-<random>`.
    pub fn builder(store: Arc<dyn LeaseStore>, election: impl Into<String>) -> ElectionBuilder {
        ElectionBuilder {
            store,
            election: election.into(),
            participant_id: None,
            options: ElectionOptions::default(),
            health_check: None,
            suspend: crate::clock::system(),
            broken_handover: false,
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// A handle that does not keep this participant alive (see [`WeakElection`]).
    pub fn downgrade(&self) -> WeakElection {
        WeakElection { handle: Arc::downgrade(&self.handle) }
    }

    /// The election's name.
    pub fn election_name(&self) -> &str {
        &self.core().name
    }

    /// This participant's id.
    pub fn participant_id(&self) -> &str {
        &self.core().participant_id
    }

    /// This `Election` object's instance id (a random UUID), as the store records it.
    pub fn instance_id(&self) -> &str {
        &self.core().instance_id
    }

    /// The options in force.
    pub fn options(&self) -> &ElectionOptions {
        &self.core().options
    }

    /// The store this election runs on.
    pub fn store(&self) -> &Arc<dyn LeaseStore> {
        &self.core().store
    }

    /// One acquire attempt (manual mode). If we already lead, this renews: same token, fresh lease,
    /// deadline moved. Returns whether we lead now.
    ///
    /// # Errors
    /// The store's error, or [`Timeout`](crate::ErrorKind::Timeout) after `operation_timeout`. An
    /// error leaves leadership as it was; it still ends at its local deadline.
    ///
    /// # Cancellation
    /// Dropping the future may leave a lease granted in the store that this participant does not
    /// know about; it is bounded by the lease duration, and the next `try_acquire` of this
    /// participant recognises it.
    pub async fn try_acquire(&self) -> Result<bool> {
        self.core().wait_for_ended_work().await;
        let _op = self.core().op_lock.lock().await;
        Ok(matches!(self.core().acquire_once().await?, Attempt::Leading(_)))
    }

    /// Hands over now: ends our tenure locally (emitting `Lost`; `lost()` fires), waits for
    /// `run_as_leader` work under it to return or be dropped (at most `lease_duration -
    /// renew_deadline - drift_allowance`), then releases the lease in the store, so that no
    /// successor runs while our work still does. Then abstains from campaigning until another
    /// participant leads or one lease plus one `retry_interval` passes (the extra retry gives a
    /// follower that polls its turn).
    ///
    /// Called from inside `run_as_leader` work, it does not wait for that work: it returns at once
    /// and the lease is released as soon as the work returns.
    ///
    /// # Errors
    /// The store's error from the release (the tenure has ended locally either way; the lease then
    /// expires in the store).
    pub async fn release(&self) -> Result<()> {
        let core = self.core();
        let Some(tenure) = core.tenure() else {
            return Ok(());
        };
        core.end_tenure(&tenure, ChangeReason::Released);
        core.wake.notify_one();
        match inside_work(&tenure) {
            0 => core.hand_over(&tenure).await,
            _ => {
                let core = core.clone();
                // Not inside the work, this task waits for it (the caller's own work included).
                tokio::spawn(async move { core.hand_over(&tenure).await });
                Ok(())
            }
        }
    }

    /// Starts campaigning, renewing and watching in a background task. Idempotent; may be called
    /// again after [`stop`](Election::stop). Needs a tokio runtime.
    pub async fn start(&self) -> Result<()> {
        let mut task = lock(&self.handle.task);
        if task.as_ref().is_some_and(|t| !t.join.is_finished()) {
            return Ok(());
        }
        let (stop, stop_rx) = watch::channel(false);
        self.core().started();
        let join = tokio::spawn(driver::run_guarded(self.core().clone(), stop_rx));
        *task = Some(Task { stop, join });
        Ok(())
    }

    /// Stops the background task and hands over: ends our tenure (emitting `Lost`), waits for
    /// `run_as_leader` work under it to return or be dropped (at most `lease_duration -
    /// renew_deadline - drift_allowance`), then releases the lease (and leaves the store's queue),
    /// so that a follower takes over at once but never while our work runs. Also releases a lease
    /// an interrupted acquire may have left in the store. Finally every [`changes`](Election::changes)
    /// stream taken before ends (after its `Lost`); if [`start`](Election::start) is called before
    /// that (from another task), they end at that `start()`.
    ///
    /// Called from inside `run_as_leader` work, it does not wait for that work: it returns once
    /// the background task has stopped (the streams taken before end then), and the release
    /// follows as soon as the work returns.
    ///
    /// # Errors
    /// The store's error from the release or the withdrawal; the election is stopped either way.
    pub async fn stop(&self) -> Result<()> {
        let core = self.core().clone();
        let run = core.begin_stop();
        // If this future is dropped before the end, acquires may lead again.
        let _cancelled = StopGuard(core.clone(), run);
        let held_before = core.tenure();
        let task = lock(&self.handle.task).take();
        if let Some(task) = task {
            let _ = task.stop.send(true);
            let _ = task.join.await;
        }
        // The tenure to hand over: the one the driver ended as it exited, one held in manual mode
        // (ended here), or one that ended just before whose work still runs out its grace.
        let ended = core.stopped(None).or(held_before).or_else(|| core.ended_with_work());
        let own = ended.as_ref().map_or(0, inside_work);
        let finish = async move {
            let mut result = Ok(());
            match &ended {
                Some(t) => result = core.hand_over(t).await,
                None => {
                    // An acquire cut off by its timeout may have left a lease of ours in the store.
                    let _op = core.op_lock.lock().await;
                    match core.call("current", core.store.current(&core.name)).await {
                        Ok(Some(h)) if h.instance_id == core.instance_id => {
                            result = core.call("release", core.store.release(&h)).await.map(drop);
                        }
                        Ok(_) => {}
                        Err(e) => result = Err(e),
                    }
                }
            }
            if let Err(e) = core.call("withdraw", core.store.withdraw(&core.name, &core.instance_id)).await {
                result = result.and(Err(e));
            }
            core.end_stopped_run(run);
            result
        };
        if own == 0 {
            finish.await
        } else {
            // The hand-over waits for the caller's work; the run's streams end now, so that a
            // stream taken after this returns follows the next start().
            self.core().end_stopped_run(run);
            tokio::spawn(finish);
            Ok(())
        }
    }

    /// Whether this participant leads now (guarantee 3): computed from the local deadline, not a
    /// cached flag, so it turns false on time even when the background task or the store is stuck.
    pub fn is_leader(&self) -> bool {
        self.core().status.borrow().leadership.as_ref().is_some_and(Leadership::is_valid)
    }

    /// The last known holder, ours or another's (`None` when nobody leads or nothing is known yet).
    pub fn current_leader(&self) -> Option<LeaderInfo> {
        self.core().holder()
    }

    /// The tenure we hold now, if any.
    pub fn leadership(&self) -> Option<Leadership> {
        self.core().status.borrow().leadership.clone().filter(Leadership::is_valid)
    }

    /// Waits until this participant leads; starts campaigning first if it was not started.
    ///
    /// # Errors
    /// [`Stopped`](crate::ErrorKind::Stopped) if the election is stopped while waiting, or its
    /// background task failed (the message says why).
    pub async fn wait_for_leadership(&self) -> Result<Leadership> {
        if lock(&self.handle.task).is_none() {
            self.start().await?;
        }
        let mut rx = self.core().status.subscribe();
        loop {
            let status = rx.wait_for(|s| s.stopped || s.leadership.as_ref().is_some_and(Leadership::is_valid)).await;
            let status = status.map_err(|_| Error::stopped("the election was dropped"))?.clone();
            if let Some(failure) = status.failure {
                return Err(Error::stopped(failure));
            }
            if status.stopped {
                return Err(Error::stopped(format!(
                    "election {:?} was stopped while waiting to lead",
                    self.core().name
                )));
            }
            match status.leadership {
                Some(l) if l.is_valid() => return Ok(l),
                _ => continue,
            }
        }
    }

    /// Waits to lead, then runs `work(leadership)` in the caller's task, and returns its output.
    ///
    /// How the work ends (guarantee 1 holds for the work, not only for the lease):
    /// - **The work returns while we lead**: the lease is released and the output returned.
    /// - **The local deadline passes** (renewals failed): `leadership.lost()` fires. The work may
    ///   run on for `lease_duration - renew_deadline - drift_allowance` after the deadline (the
    ///   earliest another participant can acquire, less a margin for clock drift); if it has not
    ///   returned by then, its future is dropped and the result is
    ///   [`LeadershipLost`](crate::ErrorKind::LeadershipLost).
    /// - **[`stop`](Election::stop), [`release`](Election::release) or a health step-down**:
    ///   `lost()` fires at once, and the lease is released in the store only after the work
    ///   returned or was dropped (after the same grace, counted from the moment it ended).
    /// - **The store says the lease is gone** (a renew answered "not yours"): someone else may
    ///   already lead, so the work is dropped at once.
    ///
    /// Once `lost()` has fired, `run_as_leader` returns as soon as the work does (it never waits
    /// on the store then). Work that ends at `lost()` returns its output as `Ok`.
    ///
    /// ```no_run
    /// # async fn demo(election: leader_core::Election) -> leader_core::Result<()> {
    /// election.run_as_leader(|l| async move {
    ///     tokio::select! {
    ///         _ = l.lost() => {}            // stop at once when leadership ends
    ///         _ = migrate(l.token()) => {}
    ///     }
    /// }).await?;
    /// # Ok(()) }
    /// # async fn migrate(_: leader_core::FencingToken) {}
    /// ```
    ///
    /// # Errors
    /// [`LeadershipLost`](crate::ErrorKind::LeadershipLost) when the work was dropped;
    /// [`Stopped`](crate::ErrorKind::Stopped) if the election stopped before it led.
    pub async fn run_as_leader<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Leadership) -> Fut,
        Fut: Future<Output = T>,
    {
        let leadership = self.wait_for_leadership().await?;
        // Declared before the work so that it drops after it: the count falls only once the
        // work's future is gone.
        let guard = leadership.enter_work();
        let mut fut = Box::pin(IN_WORK.scope(leadership.id(), work(leadership.clone())));
        let out = tokio::select! {
            biased;
            out = &mut fut => Some(out),
            _ = leadership.lost() => None,
        };
        if let Some(out) = out {
            drop(fut);
            drop(guard);
            if leadership.is_valid() {
                self.release_tenure(&leadership).await;
            }
            return Ok(out);
        }
        let result = match tokio::time::timeout_at(leadership.work_deadline(), &mut fut).await {
            Ok(out) => Ok(out),
            Err(_) => Err(Error::leadership_lost(format!(
                "leadership of {:?} (token {}) ended and the work did not return within its grace \
                 (lease_duration - renew_deadline - drift_allowance, none when the store said the lease was gone); \
                 it was cancelled",
                self.core().name,
                leadership.token()
            ))),
        };
        drop(fut);
        drop(guard);
        result
    }

    /// Releases `tenure` after its `run_as_leader` work returned while it was still valid. Best
    /// effort: the work's output matters more, and an unreleased lease still ends at its deadline
    /// here and expires in the store.
    async fn release_tenure(&self, tenure: &Leadership) {
        let core = self.core();
        if core.end_tenure(tenure, ChangeReason::Released) {
            core.wake.notify_one();
            if let Err(e) = core.hand_over(tenure).await {
                tracing::warn!(election = %core.name, error = %e, "could not release after run_as_leader work returned");
            }
        }
    }

    /// Replaces the metadata published with the lease (etcd's Proclaim). If we lead, the held
    /// lease is updated in the store at once; otherwise it is used from the next acquisition.
    ///
    /// # Errors
    /// [`InvalidArgument`](crate::ErrorKind::InvalidArgument) for metadata that breaks
    /// [`validate_metadata`](crate::validate_metadata); [`LeadershipLost`](crate::ErrorKind::LeadershipLost)
    /// if the store says the lease is no longer ours; the store's error otherwise.
    pub async fn set_metadata(&self, metadata: Metadata) -> Result<()> {
        validate::validate_metadata(&metadata)?;
        let core = self.core();
        let _op = core.op_lock.lock().await;
        core.set_metadata(metadata.clone());
        let Some(tenure) = core.tenure().filter(Leadership::is_valid) else { return Ok(()) };
        match core.call("update_metadata", core.store.update_metadata(&tenure.info(), &metadata)).await? {
            Some(lease) => {
                core.update_lease(&tenure, lease);
                Ok(())
            }
            None => {
                core.end_tenure(&tenure, ChangeReason::Expired);
                Err(Error::leadership_lost(format!("the lease of {:?} is no longer ours", core.name)))
            }
        }
    }

    /// A serialisable view for health endpoints: store reachable, age of the last successful
    /// renew, local deadline remaining, whether we lead, the current leader, the health check's
    /// last answer.
    pub fn health(&self) -> HealthReport {
        self.core().health()
    }

    /// A new subscriber's stream of changes: first the state now (`reason: Subscribed`), then every
    /// transition in order. See [`LeadershipChanges`].
    pub fn changes(&self) -> LeadershipChanges {
        self.core().subscribe()
    }
}

/// Marks a `stop()` as no longer under way when it is dropped (at its end, or cancelled).
struct StopGuard(Arc<Core>, u64);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop_cancelled(self.1);
    }
}

/// A handle to an [`Election`] that does not keep it alive (like `std::sync::Weak`): once every
/// [`Election`] handle is dropped, the participant stops and [`upgrade`](WeakElection::upgrade)
/// returns `None`. From [`Election::downgrade`].
#[derive(Clone, Debug)]
pub struct WeakElection {
    handle: std::sync::Weak<Handle>,
}

impl WeakElection {
    /// The election, if some handle still keeps it alive.
    pub fn upgrade(&self) -> Option<Election> {
        self.handle.upgrade().map(|handle| Election { handle })
    }
}

/// Builds an [`Election`]; from [`Election::builder`].
#[must_use]
pub struct ElectionBuilder {
    store: Arc<dyn LeaseStore>,
    election: String,
    participant_id: Option<String>,
    options: ElectionOptions,
    health_check: Option<HealthCheck>,
    suspend: Arc<dyn SuspendClock>,
    broken_handover: bool,
}

impl ElectionBuilder {
    /// The participant's id (default: `<host name>-<pid>-<random>`).
    pub fn participant_id(mut self, id: impl Into<String>) -> Self {
        self.participant_id = Some(id.into());
        self
    }

    /// All options at once.
    pub fn options(mut self, options: ElectionOptions) -> Self {
        self.options = options;
        self
    }

    /// The lease duration, with the other timings derived from it ([`ElectionOptions::from_lease`]).
    /// Keeps metadata set before.
    pub fn lease_duration(mut self, lease: std::time::Duration) -> Self {
        let metadata = std::mem::take(&mut self.options.metadata);
        self.options = ElectionOptions::from_lease(lease).with_metadata(metadata);
        self
    }

    /// One metadata entry published with the lease.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.metadata.insert(key.into(), value.into());
        self
    }

    /// A health check run before each renew and each campaign attempt (under
    /// `operation_timeout`; no answer in time counts as unhealthy). When it answers `false` the
    /// leader releases at once (`Lost` with reason `Unhealthy`) and the participant does not
    /// campaign until the check passes again.
    ///
    /// ```no_run
    /// # fn demo(store: std::sync::Arc<dyn leader_core::LeaseStore>) -> leader_core::Result<()> {
    /// let election = leader_core::Election::builder(store, "jobs")
    ///     .health_check(|| async { std::path::Path::new("/run/app/ready").exists() })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn health_check<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.health_check = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// The clock that tells how long the host was suspended (default: the platform's, see
    /// [`clock`](crate::clock)). For tests and simulations that make a host "sleep".
    pub fn suspend_clock(mut self, clock: Arc<dyn SuspendClock>) -> Self {
        self.suspend = clock;
        self
    }

    /// A deliberately broken driver, for test harnesses that must show they catch one: a tenure
    /// ended by `stop()`, `release()` or a health step-down is released in the store at once,
    /// without waiting for its `run_as_leader` work. Never use it outside such a test.
    #[doc(hidden)]
    pub fn broken_release_before_work_ends(mut self) -> Self {
        self.broken_handover = true;
        self
    }

    /// Builds it; see [`Election::new`] for the errors.
    pub fn build(self) -> Result<Election> {
        let id = self.participant_id.unwrap_or_else(default_participant_id);
        Election::build(
            self.store,
            &self.election,
            &id,
            self.options,
            self.health_check,
            self.suspend,
            self.broken_handover,
        )
    }
}

/// `<host name>-<pid>-<4 random hex digits>`: unique per process by default (section (b) 30).
pub fn default_participant_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() { "host".to_owned() } else { host };
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}
