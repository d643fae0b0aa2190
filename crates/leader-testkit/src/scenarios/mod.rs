//! The scenarios: one `pub async fn` per scenario, each taking the provider and returning a
//! [`ScenarioResult`](crate::ScenarioResult). The README lists what each checks. Every scenario uses its own election
//! name (with a random suffix), so they run concurrently.
//!
//! Time bounds are generous safety bounds derived from the provider's options and capabilities
//! ([`Capabilities::crash_bound`](leader_core::Capabilities::crash_bound)), never performance targets. Sleeps only ever wait out a lease
//! (or an observation window of whole leases); everything else waits for an event with a timeout.

mod basics;
mod events;
mod faults;
mod scale;
mod store;
mod work;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use leader_core::layer::LeaseStoreExt;
use leader_core::{
    AcquireRequest, Capabilities, ChangeKind, Election, ElectionOptions, Leadership, LeadershipChange,
    LeadershipChanges, LeaseStore,
};
use tokio::time::Instant;

pub use self::basics::*;
pub use self::events::*;
pub use self::faults::*;
pub use self::scale::*;
pub use self::store::*;
pub use self::work::*;
use crate::{fmt_duration, within, FaultControl, FaultLayer, FaultProxy, Provider, ProxyMode, ScenarioFailure};

type Res<T> = Result<T, ScenarioFailure>;

/// What every scenario starts from: the provider, a unique election name, the options, the
/// provider's capabilities.
pub(crate) struct Ctx {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) scenario: &'static str,
    pub(crate) name: String,
    pub(crate) options: ElectionOptions,
    pub(crate) caps: Capabilities,
}

impl Ctx {
    pub(crate) async fn new(provider: Arc<dyn Provider>, scenario: &'static str) -> Res<Ctx> {
        let store = provider.store().await.map_err(|e| ScenarioFailure::from(e).context("opening a store handle"))?;
        let caps = store.capabilities();
        let options = provider.options();
        let name = format!("lt-{}-{:012x}", scenario.replace('_', "-"), fastrand::u64(..) & 0xffff_ffff_ffff);
        Ok(Ctx { provider, scenario, name, options, caps })
    }

    /// Prints why the scenario does not apply and passes.
    pub(crate) fn skip(&self, reason: &str) -> crate::ScenarioResult {
        crate::harness::note(format!(
            "leader-testkit: {} skipped on {}: {reason}",
            self.scenario,
            self.provider.name()
        ));
        Ok(())
    }

    /// A new independent store handle.
    pub(crate) async fn store(&self) -> Res<Arc<dyn LeaseStore>> {
        self.provider.store().await.map_err(|e| ScenarioFailure::from(e).context("opening a store handle"))
    }

    /// A handle wrapped in a [`FaultLayer`] under `control`.
    pub(crate) async fn faulty_store(&self, control: &Arc<FaultControl>) -> Res<Arc<dyn LeaseStore>> {
        Ok(self.store().await?.layer(FaultLayer::new(control.clone())))
    }

    pub(crate) fn election(&self, store: Arc<dyn LeaseStore>, participant: &str) -> Res<Election> {
        self.election_on(store, &self.name, participant, self.options.clone())
    }

    pub(crate) fn election_on(
        &self,
        store: Arc<dyn LeaseStore>,
        name: &str,
        participant: &str,
        options: ElectionOptions,
    ) -> Res<Election> {
        Election::new(store, name, participant, options)
            .map_err(|e| ScenarioFailure::from(e).context(format!("creating participant {participant}")))
    }

    /// A participant on its own new store handle.
    pub(crate) async fn participant(&self, participant: &str) -> Res<Election> {
        let store = self.store().await?;
        self.election(store, participant)
    }

    pub(crate) fn lease(&self) -> Duration {
        self.options.lease_duration
    }

    /// The generous margin added to every bound: a loaded 2-core machine and a network store may
    /// be slow, and a bound is a safety net, not a target.
    pub(crate) fn margin(&self) -> Duration {
        self.options.lease_duration.max(Duration::from_secs(2))
    }

    /// How long a takeover may take after the holder stops renewing: the provider's crash bound
    /// plus the margin.
    pub(crate) fn takeover_bound(&self) -> Duration {
        self.caps.crash_bound(&self.options) + self.margin()
    }

    /// How long a takeover may take after a graceful release: 2 s (plus an operation timeout)
    /// where the store pushes changes, otherwise the crash bound (followers of poll stores may
    /// sleep until the holder's lease would have expired).
    pub(crate) fn release_bound(&self) -> Duration {
        if self.caps.push_notifications {
            Duration::from_secs(2) + self.options.operation_timeout + self.options.retry_interval
        } else {
            self.takeover_bound()
        }
    }

    /// How long an uncontested first acquisition may take.
    pub(crate) fn start_bound(&self) -> Duration {
        self.options.retry_interval * 2 + self.margin()
    }

    /// How late the scenario may see a step-down after the local deadline: half of
    /// `lease_duration - renew_deadline` (the time left before anyone else may acquire), at least
    /// 100 ms. It absorbs the scheduling delay of a loaded machine, not a late watchdog: a step-down
    /// later than this leaves too little of that margin.
    pub(crate) fn deadline_slack(&self) -> Duration {
        ((self.options.lease_duration - self.options.renew_deadline) / 2).max(Duration::from_millis(100))
    }

    /// Tolerance for comparing local instants with the store's view of time.
    pub(crate) fn tolerance(&self) -> Duration {
        Duration::from_millis(100)
    }

    pub(crate) fn request(&self, participant: &str, instance: &str) -> AcquireRequest {
        AcquireRequest {
            election: self.name.clone(),
            participant_id: participant.to_owned(),
            instance_id: instance.to_owned(),
            ttl: self.options.lease_duration,
            metadata: Default::default(),
        }
    }
}

pub(crate) fn instance_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Waits for `election` to lead.
pub(crate) async fn lead_within(election: &Election, limit: Duration) -> Res<Leadership> {
    within(limit, format!("{} becoming leader", election.participant_id()), election.wait_for_leadership())
        .await?
        .map_err(|e| ScenarioFailure::from(e).context(format!("{} waiting to lead", election.participant_id())))
}

/// Waits for the first of `elections` to lead; its index and tenure.
pub(crate) async fn first_leader(elections: &[Election], limit: Duration) -> Res<(usize, Leadership)> {
    let waits = elections.iter().map(|e| Box::pin(e.wait_for_leadership()));
    let (result, index, _) =
        within(limit, "one participant becoming leader", futures::future::select_all(waits)).await?;
    Ok((index, result?))
}

/// Starts every election at once.
pub(crate) async fn start_all(elections: &[Election]) -> Res<()> {
    for r in futures::future::join_all(elections.iter().map(|e| e.start())).await {
        r?;
    }
    Ok(())
}

/// Stops every election (errors ignored: used at the end of scenarios).
pub(crate) async fn stop_all(elections: &[Election]) {
    futures::future::join_all(elections.iter().map(|e| e.stop())).await;
}

/// The next change on `changes` for which `pred` holds.
pub(crate) async fn next_where(
    changes: &mut LeadershipChanges,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&LeadershipChange) -> bool,
) -> Res<LeadershipChange> {
    within(limit, what, async {
        while let Some(c) = changes.next().await {
            if pred(&c) {
                return Ok(c);
            }
        }
        Err(ScenarioFailure::new(format!("the change stream ended while waiting for {what}")))
    })
    .await?
}

/// Every change up to and including the first for which `pred` holds.
pub(crate) async fn collect_until(
    changes: &mut LeadershipChanges,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&LeadershipChange) -> bool,
) -> Res<Vec<LeadershipChange>> {
    let mut seen = Vec::new();
    next_where(changes, limit, what, |c| {
        seen.push(c.clone());
        pred(c)
    })
    .await?;
    Ok(seen)
}

/// Waits until `follower` has seen `leader` lead (so it follows rather than still starting).
pub(crate) async fn follows(follower: &Election, leader: &Election, limit: Duration) -> Res<()> {
    let mut changes = follower.changes();
    let instance = leader.instance_id().to_owned();
    next_where(
        &mut changes,
        limit,
        &format!("{} seeing {} lead", follower.participant_id(), leader.participant_id()),
        |c| c.current.as_ref().is_some_and(|h| h.instance_id == instance),
    )
    .await
    .map(drop)
}

/// Everything already buffered on `changes` (used after the transitions of interest happened).
pub(crate) fn drain(changes: &mut LeadershipChanges) -> Vec<LeadershipChange> {
    use futures::FutureExt;
    let mut out = Vec::new();
    while let Some(Some(c)) = changes.next().now_or_never() {
        out.push(c);
    }
    out
}

/// Checks one participant's change stream: `Subscribed` first, then `Acquired`/`Lost` alternating
/// (each `Lost` closing the tenure the `Acquired` before it opened), with tokens strictly growing.
pub(crate) fn check_alternation(who: &str, changes: &[LeadershipChange]) -> Res<usize> {
    let Some(first) = changes.first() else { crate::fail!("{who}: no changes at all") };
    crate::ensure!(
        first.reason == leader_core::ChangeReason::Subscribed,
        "{who}: the first change is {:?}, not Subscribed",
        first.reason
    );
    let mut leading = first.kind == ChangeKind::Acquired;
    let mut last_token = first.token();
    let mut acquisitions = 0;
    for c in &changes[1..] {
        crate::ensure!(c.missed == 0, "{who}: {} changes missed with a buffer that was read", c.missed);
        match c.kind {
            ChangeKind::Acquired => {
                crate::ensure!(!leading, "{who}: Acquired twice without Lost between");
                let token = c.token();
                crate::ensure!(token.is_some(), "{who}: Acquired without the lease");
                if let (Some(t), Some(last)) = (token, last_token) {
                    crate::ensure!(t > last, "{who}: Acquired with token {t} after token {last}");
                }
                last_token = token;
                leading = true;
                acquisitions += 1;
            }
            ChangeKind::Lost => {
                crate::ensure!(leading, "{who}: Lost without Acquired before it");
                let prev = c.previous.as_ref().map(|p| p.token);
                crate::ensure!(
                    prev.is_none() || prev == last_token,
                    "{who}: Lost names token {prev:?}, the tenure had {last_token:?}"
                );
                leading = false;
            }
            ChangeKind::LeaderChanged => {
                crate::ensure!(!leading, "{who}: LeaderChanged while leading");
                if let Some(t) = c.token() {
                    last_token = Some(last_token.map_or(t, |l| l.max(t)));
                }
            }
        }
    }
    Ok(acquisitions)
}

/// A handle that can be cut off from the store: through a [`FaultProxy`] when the provider can
/// connect through one, else through a [`FaultLayer`] that fails every call.
pub(crate) enum Cut {
    Proxy(FaultProxy),
    Layer(Arc<FaultControl>),
}

impl Cut {
    /// Partition: nothing gets through (black hole, or every call `Unavailable`).
    pub(crate) fn cut(&self) {
        match self {
            Cut::Proxy(p) => p.set_mode(ProxyMode::Blackhole),
            Cut::Layer(c) => c.set_unavailable(true),
        }
    }

    /// Kills the connection(s): reset through a proxy; an outage through a layer.
    pub(crate) fn kill(&self) {
        match self {
            Cut::Proxy(p) => p.set_mode(ProxyMode::Reset),
            Cut::Layer(c) => c.set_unavailable(true),
        }
    }

    /// A paused process: calls (and, through a proxy, the client's own heartbeats) get no answer.
    pub(crate) fn pause(&self) {
        match self {
            Cut::Proxy(p) => p.set_mode(ProxyMode::Blackhole),
            Cut::Layer(c) => c.hang_all(),
        }
    }

    /// Every call slowed by `d` (through a proxy: every chunk, each way).
    pub(crate) fn slow(&self, d: Duration) {
        match self {
            Cut::Proxy(p) => p.set_mode(ProxyMode::Latency(d)),
            Cut::Layer(c) => c.set_latency(Some(d)),
        }
    }

    /// Back to normal.
    pub(crate) fn heal(&self) {
        match self {
            Cut::Proxy(p) => p.set_mode(ProxyMode::Pass),
            Cut::Layer(c) => {
                c.set_unavailable(false);
                c.set_latency(None);
                c.release_hang();
            }
        }
    }
}

impl Ctx {
    /// A new handle that [`Cut`] can partition from the store.
    pub(crate) async fn cuttable_store(&self) -> Res<(Arc<dyn LeaseStore>, Cut)> {
        if let Some(server) = self.provider.server_addr() {
            let proxy = FaultProxy::start(server)
                .await
                .map_err(|e| ScenarioFailure::new(format!("starting the fault proxy: {e}")))?;
            if let Some(store) = self.provider.store_at(proxy.addr()).await {
                let store =
                    store.map_err(|e| ScenarioFailure::from(e).context("connecting through the fault proxy"))?;
                return Ok((store, Cut::Proxy(proxy)));
            }
        }
        let control = FaultControl::new();
        Ok((self.faulty_store(&control).await?, Cut::Layer(control)))
    }
}

/// Sleeps until `at` (a lease boundary the scenario waits out).
pub(crate) async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at).await;
}

/// Runs `fut` and fails with `what` if it takes longer than `limit` (for store calls the scenario
/// makes itself).
pub(crate) async fn call<T>(limit: Duration, what: &str, fut: impl Future<Output = leader_core::Result<T>>) -> Res<T> {
    within(limit, what, fut).await?.map_err(|e| ScenarioFailure::from(e).context(what))
}

pub(crate) fn elapsed_since(t: Instant) -> String {
    fmt_duration(t.elapsed())
}
