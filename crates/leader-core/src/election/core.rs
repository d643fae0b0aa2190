//! The state one election shares between its handles, its driver task and its tenure watchdogs:
//! the election's [`Phase`] (changed in one place, [`Core::set_phase`]), who leads, and the one
//! place where changes are emitted.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::batch::{self, Coalescer};
use super::leadership::{lock, Leadership, Stamp};
use crate::change::Event;
use crate::clock::SuspendClock;
use crate::{
    Acquire, AcquireRequest, Capabilities, ChangeKind, ChangeReason, ElectionOptions, Error, ErrorKind, FencingToken,
    LeaderInfo, LeadershipChange, LeadershipChanges, Lease, LeaseStore, Metadata, Refusal, Renewal, Result,
};

tokio::task_local! {
    /// Set while `run_as_leader` polls its work: the id of the tenure the work runs under, so that
    /// a `stop()`/`release()` called from inside the work does not wait for itself.
    pub(crate) static IN_WORK: usize;
}

/// Where one participant stands. Changed only by [`Core::set_phase`].
///
/// ```text
///  Stopped ─start()─▶ Follower ─acquire: Acquired─▶ Leader ─deadline, renew "not yours"─▶ Follower
///                        ▲                            │ release()
///                        └─ another leads, or one ── Abstaining
///                           lease + retry passed
///  stop() from any phase ─▶ Stopped
/// ```
#[derive(Clone)]
pub(crate) enum Phase {
    /// Not started, or stopped: no background task campaigns (manual `try_acquire` still works).
    Stopped,
    /// Campaigning (or, in manual mode, between attempts).
    Follower,
    /// Holding this tenure.
    Leader(Leadership),
    /// After `release()`: not campaigning until this instant unless another participant leads.
    Abstaining(Instant),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Follower => "follower",
            Phase::Leader(_) => "leader",
            Phase::Abstaining(_) => "abstaining",
        }
    }
}

/// What `is_leader`, `leadership` and `wait_for_leadership` read: a mirror of the phase.
#[derive(Clone, Default)]
pub(crate) struct Status {
    pub(crate) leadership: Option<Leadership>,
    pub(crate) stopped: bool,
    /// Why the background task ended on its own (it panicked), if it did.
    pub(crate) failure: Option<String>,
}

struct State {
    phase: Phase,
    /// The last tenure that ended: its work may still run out its grace.
    ended: Option<Leadership>,
    /// Counts `stop()`s: a `changes()` stream belongs to the run it was taken in, and ends when
    /// that run is stopped.
    run: u64,
    /// The run a `stop()` is ending, while that `stop()` is under way: until its streams are ended
    /// (when its hand-over is done; a `stop()` from inside the work, when it returns; or at a
    /// `start()` from another task that comes first), or the `stop()` is cancelled.
    stopping: Option<u64>,
    /// Last known holder, ours or another's.
    holder: Option<LeaderInfo>,
    /// Highest token of a tenure we ended locally: a later acquire that returns this lease again
    /// (the store still had it) must not resume it.
    last_lost: Option<FencingToken>,
    /// Kind of the last failed store call since the last success, to name why a deadline passed.
    last_error: Option<ErrorKind>,
    /// When a store call last succeeded.
    last_ok: Option<Instant>,
    /// Send time of the last successful acquire or renew of our lease.
    last_renewed: Option<Instant>,
    /// The user's health check's last answer (`None`: no check, or not run yet).
    healthy: Option<bool>,
    /// The store's last answer was [`Acquire::Refused`]: why, and until when (local clock).
    refused: Option<(Refusal, Option<Instant>)>,
}

impl State {
    fn tenure(&self) -> Option<Leadership> {
        match &self.phase {
            Phase::Leader(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Stopped,
            ended: None,
            run: 0,
            stopping: None,
            holder: None,
            last_lost: None,
            last_error: None,
            last_ok: None,
            last_renewed: None,
            healthy: None,
            refused: None,
        }
    }
}

/// A user health check: runs before each renew and each campaign attempt.
pub(crate) type HealthCheck = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// A point-in-time view of one participant, for health endpoints ([`Election::health`](crate::Election::health)).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthReport {
    /// The election's name.
    pub election: String,
    /// This participant's id.
    pub participant_id: String,
    /// Whether the last store call succeeded.
    pub store_reachable: bool,
    /// Time since the last successful acquire or renew was sent (`None`: never).
    #[serde(with = "humantime_serde::option")]
    pub last_renew_age: Option<Duration>,
    /// Time left before the local deadline (`None`: not leading).
    #[serde(with = "humantime_serde::option")]
    pub deadline_remaining: Option<Duration>,
    /// Whether this participant leads now.
    pub is_leader: bool,
    /// `"stopped"`, `"follower"`, `"leader"` or `"abstaining"` (after a release).
    pub phase: &'static str,
    /// The last known holder.
    pub current_leader: Option<LeaderInfo>,
    /// The user health check's last answer (`None`: no check configured or not run yet).
    pub healthy: Option<bool>,
    /// Set while the store refuses to elect anyone ([`Acquire::Refused`]): why, and until when.
    pub refused: Option<RefusedReport>,
}

/// A store's refusal to elect anyone, as [`HealthReport::refused`] shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusedReport {
    /// The store's reason, naming the setting or event it waits on.
    pub reason: String,
    /// When the store expects to elect again (wall clock, for display; `None`: it cannot say).
    #[serde(with = "humantime_serde::option")]
    pub until: Option<SystemTime>,
    /// How long from now that is.
    #[serde(with = "humantime_serde::option")]
    pub remaining: Option<Duration>,
}

pub(crate) struct Core {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) name: String,
    pub(crate) participant_id: String,
    pub(crate) instance_id: String,
    pub(crate) options: ElectionOptions,
    pub(crate) caps: Capabilities,
    metadata: Mutex<Metadata>,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    pub(crate) suspend: Arc<dyn SuspendClock>,
    /// The batches of the store handle this election shares with others.
    pub(crate) coalescer: Arc<Coalescer>,
    pub(crate) status: watch::Sender<Status>,
    /// Serialises the calls that change our lease (driver, manual `try_acquire`, `release`,
    /// `set_metadata`), so that a renew never races a release of the same lease.
    pub(crate) op_lock: tokio::sync::Mutex<()>,
    /// Pokes the driver to re-evaluate (after `release`, `set_metadata`).
    pub(crate) wake: tokio::sync::Notify,
    /// Wakes every acquire waiting for its turn on the handle when a `stop()` begins.
    stop_begun: tokio::sync::Notify,
    health_check: Option<HealthCheck>,
    /// A deliberately broken hand-over that does not wait for work
    /// ([`ElectionBuilder::broken_release_before_work_ends`](crate::ElectionBuilder::broken_release_before_work_ends)).
    pub(crate) broken_handover: bool,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.coalescer.detach();
    }
}

/// What one acquire attempt found.
pub(crate) enum Attempt {
    Leading(Leadership),
    Follower(Option<LeaderInfo>),
    /// The store refuses to elect anyone for now (see [`Acquire::Refused`]).
    Refused(Refusal),
}

impl Core {
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        name: String,
        participant_id: String,
        options: ElectionOptions,
        health_check: Option<HealthCheck>,
        suspend: Arc<dyn SuspendClock>,
    ) -> Self {
        let caps = store.capabilities();
        let coalescer = Coalescer::attach(&store);
        let (events, _) = broadcast::channel(options.event_buffer);
        Core {
            store,
            name,
            participant_id,
            instance_id: uuid::Uuid::new_v4().to_string(),
            metadata: Mutex::new(options.metadata.clone()),
            options,
            caps,
            state: Mutex::new(State::default()),
            events,
            suspend,
            coalescer,
            status: watch::Sender::new(Status { stopped: true, ..Status::default() }),
            op_lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            stop_begun: tokio::sync::Notify::new(),
            health_check,
            broken_handover: false,
        }
    }

    /// Runs the user's health check (under `operation_timeout`; no answer in time is unhealthy).
    /// `true` without a check.
    pub(crate) async fn check_health(&self) -> bool {
        let Some(check) = &self.health_check else { return true };
        let healthy = tokio::time::timeout(self.options.operation_timeout, check()).await.unwrap_or(false);
        let mut st = lock(&self.state);
        if st.healthy != Some(healthy) {
            tracing::info!(election = %self.name, participant = %self.participant_id, healthy, "health check changed");
        }
        st.healthy = Some(healthy);
        healthy
    }

    pub(crate) fn health(&self) -> HealthReport {
        let st = lock(&self.state);
        let now = Instant::now();
        let leading = st.tenure().filter(|t| t.is_valid());
        HealthReport {
            election: self.name.clone(),
            participant_id: self.participant_id.clone(),
            store_reachable: st.last_error.is_none() && st.last_ok.is_some(),
            last_renew_age: st.last_renewed.map(|t| now.saturating_duration_since(t)),
            deadline_remaining: leading.as_ref().map(|t| t.valid_until().saturating_duration_since(now)),
            is_leader: leading.is_some(),
            phase: st.phase.name(),
            current_leader: st.holder.clone(),
            healthy: st.healthy,
            refused: st.refused.as_ref().map(|(r, until)| {
                let remaining = until.map(|u| u.saturating_duration_since(now));
                RefusedReport { reason: r.reason.clone(), until: remaining.map(|d| SystemTime::now() + d), remaining }
            }),
        }
    }

    /// Runs one store call under `operation_timeout`, in a tracing span, and records its outcome.
    pub(crate) async fn call<T>(&self, op: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let span = tracing::debug_span!("leader.store", op, election = %self.name, participant = %self.participant_id);
        let result = match tokio::time::timeout(self.options.operation_timeout, fut).instrument(span).await {
            Ok(r) => r,
            Err(elapsed) => Err(Error::from(elapsed)),
        };
        let mut st = lock(&self.state);
        match &result {
            Ok(_) => {
                st.last_error = None;
                st.last_ok = Some(Instant::now());
            }
            Err(e) => {
                tracing::debug!(op, election = %self.name, error = %e, "store call failed");
                st.last_error = Some(e.kind());
            }
        }
        result
    }

    pub(crate) fn request(&self) -> AcquireRequest {
        AcquireRequest {
            election: self.name.clone(),
            participant_id: self.participant_id.clone(),
            instance_id: self.instance_id.clone(),
            ttl: self.options.lease_duration,
            metadata: lock(&self.metadata).clone(),
        }
    }

    pub(crate) fn set_metadata(&self, metadata: Metadata) {
        *lock(&self.metadata) = metadata;
    }

    pub(crate) fn tenure(&self) -> Option<Leadership> {
        lock(&self.state).tenure()
    }

    pub(crate) fn holder(&self) -> Option<LeaderInfo> {
        lock(&self.state).holder.clone()
    }

    /// The one place the phase changes: keeps the status watch (what `is_leader`,
    /// `wait_for_leadership` and friends read) in step, and traces the transition.
    fn set_phase(&self, st: &mut State, phase: Phase) {
        if st.phase.name() != phase.name() {
            tracing::debug!(election = %self.name, participant = %self.participant_id, from = st.phase.name(), to = phase.name(), "phase");
        }
        let leadership = match &phase {
            Phase::Leader(t) => Some(t.clone()),
            _ => None,
        };
        let stopped = matches!(phase, Phase::Stopped);
        st.phase = phase;
        self.status.send_modify(|s| {
            s.leadership = leadership;
            s.stopped = stopped;
            if !stopped {
                s.failure = None;
            }
        });
    }

    /// `start()`: from Stopped to Follower (keeps a manual-mode tenure).
    pub(crate) fn started(&self) {
        let mut st = lock(&self.state);
        // A `stop()` (from another task) whose hand-over is still running: its run's streams end
        // now, so that the run starting here has streams of its own.
        if let Some(run) = st.stopping.take() {
            self.end_run_locked(&mut st, run);
        }
        if matches!(st.phase, Phase::Stopped) {
            self.set_phase(&mut st, Phase::Follower);
        }
    }

    /// `stop()` (or the background task failing): ends our tenure (emitting `Lost`) and moves to
    /// Stopped. Returns the tenure it ended.
    pub(crate) fn stopped(&self, failure: Option<String>) -> Option<Leadership> {
        let mut st = lock(&self.state);
        let tenure = st.tenure();
        if let Some(t) = &tenure {
            self.end_locked(&mut st, t, ChangeReason::Stopped);
        }
        self.set_phase(&mut st, Phase::Stopped);
        if failure.is_some() {
            self.status.send_modify(|s| s.failure = failure);
        }
        tenure
    }

    /// Ends every `changes()` stream of the current run (after the items already sent) and
    /// starts a new run: streams taken from now on see the next `start()`.
    pub(crate) fn end_run(&self) {
        let mut st = lock(&self.state);
        st.stopping = None;
        let run = st.run;
        self.end_run_locked(&mut st, run);
    }

    /// `stop()` begins: returns the run it ends (see [`end_stopped_run`](Self::end_stopped_run)).
    pub(crate) fn begin_stop(&self) -> u64 {
        let run = {
            let mut st = lock(&self.state);
            st.stopping = Some(st.run);
            st.run
        };
        self.stop_begun.notify_waiters();
        run
    }

    /// Whether a `stop()` is under way (no acquire may begin a tenure then).
    fn stopping(&self) -> bool {
        lock(&self.state).stopping.is_some()
    }

    /// A `stop()` of `run` was cancelled before its end: acquires may lead again.
    pub(crate) fn stop_cancelled(&self, run: u64) {
        let mut st = lock(&self.state);
        if st.stopping == Some(run) {
            st.stopping = None;
        }
    }

    /// `stop()`'s hand-over is done: ends the streams of `run`, unless a `start()` did already.
    pub(crate) fn end_stopped_run(&self, run: u64) {
        let mut st = lock(&self.state);
        if st.stopping == Some(run) {
            st.stopping = None;
            self.end_run_locked(&mut st, run);
        }
    }

    fn end_run_locked(&self, st: &mut State, run: u64) {
        if st.run == run {
            let _ = self.events.send(Event::End { run });
            st.run += 1;
        }
    }

    /// While abstaining after a release: until when (`None` once it is over).
    pub(crate) fn abstaining_until(&self) -> Option<Instant> {
        let mut st = lock(&self.state);
        match st.phase {
            Phase::Abstaining(t) if t > Instant::now() => Some(t),
            Phase::Abstaining(_) => {
                self.set_phase(&mut st, Phase::Follower);
                None
            }
            _ => None,
        }
    }

    /// The last ended tenure, while work under it may still run.
    pub(crate) fn ended_with_work(&self) -> Option<Leadership> {
        lock(&self.state).ended.clone().filter(Leadership::has_work)
    }

    /// Waits (at most until its work deadline plus the drift allowance) for work still running
    /// under the last ended tenure, so that no new campaign (and no release of a lease we still
    /// hold in the store) lets a successor in while it runs.
    pub(crate) async fn wait_for_ended_work(&self) {
        if let Some(t) = self.ended_with_work() {
            let until = t.work_deadline() + self.options.drift_allowance;
            if !t.works_ended(0, until).await {
                tracing::warn!(election = %self.name, participant = %self.participant_id, token = %t.token(),
                    "work of an ended tenure is still running after its grace (its task does not yield?)");
            }
        }
    }

    /// A stamp for a request about to be sent.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp { sent: Instant::now(), suspended: self.suspend.suspended() }
    }

    /// One acquire attempt (campaign, or refresh of our own lease in manual mode). The caller holds
    /// `op_lock`.
    pub(crate) async fn acquire_once(self: &Arc<Self>) -> Result<Attempt> {
        let req = self.request();
        for _ in 0..2 {
            // Our turn among the handle's acquires, waited for before the call's timeout starts;
            // a stop() begun meanwhile ends the wait.
            let stop_begun = self.stop_begun.notified();
            tokio::pin!(stop_begun);
            stop_begun.as_mut().enable();
            if self.stopping() {
                return Ok(Attempt::Follower(None));
            }
            let _turn = tokio::select! {
                turn = self.coalescer.acquire_turn() => turn,
                () = stop_begun => return Ok(Attempt::Follower(None)),
            };
            let stamp = self.stamp();
            let answer = self.call("try_acquire", self.store.try_acquire(&req)).await?;
            self.note_refusal(match &answer {
                Acquire::Refused(r) => Some(r),
                _ => None,
            });
            match answer {
                Acquire::Refused(refusal) => {
                    if let Some(t) = self.tenure() {
                        self.end_tenure(&t, ChangeReason::Expired);
                    }
                    self.observe_holder(None);
                    return Ok(Attempt::Refused(refusal));
                }
                Acquire::Held(holder) => {
                    if let Some(t) = self.tenure() {
                        self.end_tenure(&t, ChangeReason::Expired);
                    }
                    self.observe_holder(holder.clone());
                    return Ok(Attempt::Follower(holder));
                }
                Acquire::Acquired(lease) => {
                    if let Some(t) = self.tenure() {
                        if t.token() == lease.token && self.renewed(&t, lease.clone(), stamp) {
                            return Ok(Attempt::Leading(t));
                        }
                        self.end_tenure(&t, ChangeReason::Expired);
                    }
                    let stopping = self.stopping();
                    if stopping || self.is_stale(&lease) {
                        // We gave this tenure up locally; resuming it would emit a second Acquired
                        // for one token. Release it (its work has ended: the driver waits for that
                        // before campaigning) and campaign afresh for a new token. While a stop()
                        // is under way (this call was in flight when it began), lead no more:
                        // release what we got and stop here.
                        self.call("release", self.store.release(&lease)).await?;
                        if stopping {
                            return Ok(Attempt::Follower(None));
                        }
                        continue;
                    }
                    return Ok(Attempt::Leading(self.begin_tenure(lease, stamp)));
                }
            }
        }
        Err(Error::backend("the store returned a lease this participant had already given up, even after releasing it"))
    }

    /// Records (or clears) the store's refusal to elect, logging each change once.
    fn note_refusal(&self, refusal: Option<&Refusal>) {
        let mut st = lock(&self.state);
        match refusal {
            Some(r) => {
                if st.refused.as_ref().is_none_or(|(old, _)| old.reason != r.reason) {
                    tracing::warn!(election = %self.name, participant = %self.participant_id, reason = %r.reason,
                        retry_in = ?r.retry_in, "the store refuses to elect anyone for now");
                }
                st.refused = Some((r.clone(), r.retry_in.map(|d| Instant::now() + d)));
            }
            None => {
                if st.refused.take().is_some() {
                    tracing::info!(election = %self.name, participant = %self.participant_id, "the store elects again");
                }
            }
        }
    }

    /// A lease of ours with a token we already ended locally.
    fn is_stale(&self, lease: &Lease) -> bool {
        lease.instance_id == self.instance_id && lock(&self.state).last_lost.is_some_and(|t| lease.token <= t)
    }

    /// A successful renew sent at `stamp`; false if the tenure had already ended.
    pub(crate) fn renewed(&self, tenure: &Leadership, lease: Lease, stamp: Stamp) -> bool {
        let ok = tenure.extend(lease.clone(), stamp, self.options.renew_deadline);
        if ok {
            let mut st = lock(&self.state);
            if st.tenure().is_some_and(|t| t.same(tenure)) {
                st.holder = Some(lease);
            }
            st.last_renewed = Some(stamp.sent);
        }
        ok
    }

    pub(crate) fn update_lease(&self, tenure: &Leadership, lease: Lease) {
        let mut st = lock(&self.state);
        if st.tenure().is_some_and(|t| t.same(tenure)) {
            tenure.set_info(lease.clone());
            st.holder = Some(lease);
        }
    }

    fn begin_tenure(self: &Arc<Self>, lease: Lease, stamp: Stamp) -> Leadership {
        let tenure = Leadership::new(
            lease.clone(),
            stamp,
            self.options.renew_deadline,
            self.options.work_grace(),
            self.suspend.clone(),
        );
        {
            let mut st = lock(&self.state);
            st.last_renewed = Some(stamp.sent);
            let previous = st.holder.replace(lease.clone());
            self.set_phase(&mut st, Phase::Leader(tenure.clone()));
            tracing::info!(election = %self.name, participant = %self.participant_id, token = %lease.token, "acquired leadership");
            #[cfg(feature = "metrics")]
            self.record_acquired();
            self.emit(&st, ChangeKind::Acquired, true, Some(lease), previous, ChangeReason::Elected);
        }
        // The watchdog ends the tenure at its deadline whatever the driver is doing (or in manual
        // mode, where there is no driver).
        let core = Arc::downgrade(self);
        let t = tenure.clone();
        tokio::spawn(async move {
            t.lost().await;
            if let Some(core) = core.upgrade() {
                let reason = core.deadline_reason();
                core.end_tenure(&t, reason);
            }
        });
        tenure
    }

    pub(crate) fn deadline_reason(&self) -> ChangeReason {
        match lock(&self.state).last_error {
            Some(ErrorKind::Unavailable | ErrorKind::Timeout) => ChangeReason::StoreUnavailable,
            _ => ChangeReason::RenewFailed,
        }
    }

    /// Ends `tenure` if it is the current one and emits `Lost` once. Returns whether it did.
    ///
    /// `reason` says how much grace its work gets: none for [`ChangeReason::Expired`] (the store
    /// said the lease is gone), `lease_duration - renew_deadline - drift_allowance` otherwise.
    pub(crate) fn end_tenure(&self, tenure: &Leadership, reason: ChangeReason) -> bool {
        let mut st = lock(&self.state);
        self.end_locked(&mut st, tenure, reason)
    }

    fn end_locked(&self, st: &mut State, tenure: &Leadership, reason: ChangeReason) -> bool {
        if !st.tenure().is_some_and(|t| t.same(tenure)) {
            return false;
        }
        tenure.end(reason == ChangeReason::Expired);
        st.ended = Some(tenure.clone());
        st.last_lost = Some(st.last_lost.map_or(tenure.token(), |t| t.max(tenure.token())));
        let previous = st.holder.take();
        let next = match reason {
            // A release abstains for one lease plus one retry interval, so that a follower that
            // polls (and so wakes only at the old lease's expiry, plus jitter) still gets its turn.
            ChangeReason::Released => {
                Phase::Abstaining(Instant::now() + self.options.lease_duration + self.options.retry_interval)
            }
            _ => Phase::Follower,
        };
        self.set_phase(st, next);
        tracing::info!(election = %self.name, participant = %self.participant_id, token = %tenure.token(), ?reason, "lost leadership");
        #[cfg(feature = "metrics")]
        self.record_lost(reason, tenure.started().elapsed());
        self.emit(st, ChangeKind::Lost, false, None, previous, reason);
        true
    }

    /// Hands a tenure that ended by `stop`, `release` or a health step-down over in the store:
    /// waits for its work to return or be dropped (at most until its work deadline plus the drift
    /// allowance), then releases the lease, so that no successor starts while the work runs.
    /// Work still running after that (its task does not yield) is left to the lease's expiry.
    ///
    /// Never awaited from inside the tenure's own work (which cannot wait for itself): a
    /// `release()` or `stop()` called there runs it in a task of its own, which waits for that
    /// work too.
    pub(crate) async fn hand_over(&self, tenure: &Leadership) -> Result<()> {
        let until = tenure.work_deadline() + self.options.drift_allowance;
        if !self.broken_handover && !tenure.works_ended(0, until).await {
            tracing::warn!(election = %self.name, participant = %self.participant_id, token = %tenure.token(),
                "run_as_leader work did not end within its grace; leaving the lease to expire instead of releasing it");
            return Ok(());
        }
        if !tenure.claim_release() {
            return Ok(());
        }
        let _op = self.op_lock.lock().await;
        let release = self.coalescer.release(tenure.info(), batch::window(self.options.renew_interval));
        self.call("release", release).await.map(drop)
    }

    /// Renews `tenure`'s lease (in a batch with the other elections on this store handle, if
    /// any); the stamp of the batch's send time with the answer.
    pub(crate) async fn renew(&self, tenure: &Leadership) -> Result<(Stamp, Option<Lease>)> {
        // The suspend clock is read before queueing: a suspend while the batch waits then comes
        // off the deadline too (never the other way round).
        let suspended = self.suspend.suspended();
        let renewal = Renewal { lease: tenure.info(), ttl: self.options.lease_duration };
        let coalescer = self.coalescer.clone();
        let window = batch::window(self.options.renew_interval);
        let renew = async move {
            let (sent, answer) = coalescer.renew(renewal, window).await;
            answer.map(|lease| (Stamp { sent, suspended }, lease))
        };
        self.call("renew", renew).await
    }

    /// A follower saw `holder` (or nobody); emits `LeaderChanged` when that is news.
    pub(crate) fn observe_holder(&self, holder: Option<LeaderInfo>) {
        let mut st = lock(&self.state);
        if st.tenure().is_some() {
            return;
        }
        // A lease of ours that we already ended locally (a read that raced our own release) is
        // not a leader: a participant is never told that a tenure it ended leads.
        let holder =
            holder.filter(|h| !(h.instance_id == self.instance_id && st.last_lost.is_some_and(|lost| h.token <= lost)));
        let key = |h: &Option<LeaderInfo>| h.as_ref().map(|l| (l.instance_id.clone(), l.token));
        if key(&st.holder) == key(&holder) {
            st.holder = holder;
            return;
        }
        if holder.as_ref().is_some_and(|h| h.instance_id != self.instance_id)
            && matches!(st.phase, Phase::Abstaining(_))
        {
            // Another participant leads: a release()'s abstention has done its job.
            self.set_phase(&mut st, Phase::Follower);
        }
        let previous = std::mem::replace(&mut st.holder, holder.clone());
        tracing::debug!(election = %self.name, holder = ?holder.as_ref().map(|h| &h.participant_id), "leader changed");
        self.emit(&st, ChangeKind::LeaderChanged, false, holder, previous, ChangeReason::Observed);
    }

    /// Sends a change to every subscriber. Called with the state lock held (hence `st`), so that
    /// `changes()` (which snapshots under the same lock) neither misses nor repeats a change.
    fn emit(
        &self,
        st: &State,
        kind: ChangeKind,
        is_leader: bool,
        current: Option<LeaderInfo>,
        previous: Option<LeaderInfo>,
        reason: ChangeReason,
    ) {
        let change = LeadershipChange { kind, is_leader, current, previous, reason, missed: 0, at: SystemTime::now() };
        let _ = self.events.send(Event::Change { run: st.run, change });
    }

    pub(crate) fn subscribe(&self) -> LeadershipChanges {
        let st = lock(&self.state);
        let rx = self.events.subscribe();
        let leading = st.tenure().is_some();
        let first = LeadershipChange {
            kind: if leading { ChangeKind::Acquired } else { ChangeKind::LeaderChanged },
            is_leader: leading,
            current: st.holder.clone(),
            previous: None,
            reason: ChangeReason::Subscribed,
            missed: 0,
            at: SystemTime::now(),
        };
        LeadershipChanges::new(first, rx, st.run)
    }

    #[cfg(feature = "metrics")]
    fn record_acquired(&self) {
        let labels = [("election", self.name.clone()), ("participant", self.participant_id.clone())];
        metrics::gauge!("leader_is_leader", &labels).set(1.0);
        metrics::counter!("leader_acquisitions_total", &labels).increment(1);
    }

    #[cfg(feature = "metrics")]
    fn record_lost(&self, reason: ChangeReason, held: Duration) {
        let labels = [("election", self.name.clone()), ("participant", self.participant_id.clone())];
        metrics::gauge!("leader_is_leader", &labels).set(0.0);
        metrics::histogram!("leader_leadership_duration_seconds", &labels).record(held.as_secs_f64());
        let labels = [
            ("election", self.name.clone()),
            ("participant", self.participant_id.clone()),
            ("reason", reason.as_str().to_owned()),
        ];
        metrics::counter!("leader_losses_total", &labels).increment(1);
    }

    /// Jittered `d`: between 0.75 and 1.25 of it, so that followers do not retry in step.
    pub(crate) fn jitter(d: Duration) -> Duration {
        d.mul_f64(0.75 + fastrand::f64() * 0.5)
    }
}
