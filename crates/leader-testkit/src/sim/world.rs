//! One simulation run: the participants (real `Election`s on one store, each behind its own fault
//! layer and, for real servers, its own fault proxy), the conductor that plays the schedule, and
//! the final stop; then the checkers (`check.rs`) read what was recorded.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::layer::LeaseStoreExt;
use leader_core::{Election, ErrorKind, LeaseStore, WeakElection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use super::record::{
    lock, ChangeLog, Duplicating, Grants, Recording, SimSuspend, StopCount, SubscriberLog, Subscription,
};
use super::schedule::{secs, Detail, Fault, FaultKind, Schedule, WorkStyle};
use super::{check, SimConfig, SimCounts, SimReport, Violation};
use crate::{FaultControl, FaultLayer, FaultProxy, Provider, ProxyMode, WorkRecorder};

/// How often the deadline probe looks at each participant, besides at each deadline.
const PROBE_TICK: Duration = Duration::from_millis(50);

/// Everything one run shares between the conductor and the participants' tasks.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) seed: u64,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) election: String,
    pub(crate) origin: Instant,
    /// Store-wide faults: every participant's store goes through it.
    pub(crate) global: Arc<FaultControl>,
    pub(crate) work: WorkRecorder,
    violations: Mutex<Vec<Violation>>,
    pub(crate) deadline_samples: AtomicU64,
    pub(crate) stops: Mutex<Vec<Duration>>,
    pub(crate) releases: Mutex<Vec<Duration>>,
    /// The slots' current participants.
    slots: Mutex<Vec<Option<Arc<Incarnation>>>>,
    /// Every participant there ever was, in order of creation.
    pub(crate) all: Mutex<Vec<Arc<Incarnation>>>,
    /// When the last fault's effect ended (a restart counts when it is done).
    last_heal: Mutex<Instant>,
    outage: AtomicU32,
    latencies: Mutex<Vec<(usize, Detail)>>,
}

impl Shared {
    pub(crate) fn violation(&self, check: &'static str, what: String) {
        let at = Instant::now().saturating_duration_since(self.origin);
        lock(&self.violations).push(Violation { at, check, what });
    }

    pub(crate) fn violations(&self) -> Vec<Violation> {
        lock(&self.violations).clone()
    }

    fn healed(&self) {
        let mut last = lock(&self.last_heal);
        *last = (*last).max(Instant::now());
    }

    fn slot(&self, slot: usize) -> Option<Arc<Incarnation>> {
        lock(&self.slots).get(slot).cloned().flatten()
    }

    /// How long a `stop()` or `release()` may take: the work's grace and drift allowance, plus
    /// a few store calls (release, withdraw, the driver's call in flight) and the latency faults.
    fn op_bound(&self) -> Duration {
        let o = &self.config.options;
        o.work_grace() + o.drift_allowance + o.operation_timeout * 4 + self.config.slack
    }
}

/// One participant: one `Election` object, from its creation to its crash, drop or the end.
pub(crate) struct Incarnation {
    pub(crate) slot: usize,
    pub(crate) id: String,
    pub(crate) instance: String,
    pub(crate) style: WorkStyle,
    election: Mutex<Option<Election>>,
    weak: WeakElection,
    /// This participant's own faults (pause, suspend, crash).
    control: Arc<FaultControl>,
    /// The call to duplicate next, if armed.
    duplicate: Arc<Mutex<Option<(leader_core::layer::Op, Duration)>>>,
    proxy: Mutex<Option<FaultProxy>>,
    healthy: Arc<AtomicBool>,
    unhealthy: AtomicU32,
    hung: AtomicU32,
    stopped: AtomicU32,
    pub(crate) suspend: Arc<SimSuspend>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) log: ChangeLog,
    pub(crate) subscribers: Vec<SubscriberLog>,
    stalls: Vec<watch::Sender<u32>>,
    /// Bumped when the application restarts the election: its subscribers take fresh streams.
    resubscribe: watch::Sender<u64>,
    pub(crate) stops: Arc<StopCount>,
    running: watch::Sender<bool>,
    lifecycle: tokio::sync::Mutex<()>,
    /// Tasks of the process that die with it: work, probe, pending stop/release calls.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    subscriber_tasks: Mutex<Vec<JoinHandle<()>>>,
    log_task: Mutex<Option<JoinHandle<()>>>,
    /// When and how it ended before the end of the run (crash or drop).
    pub(crate) ended: Mutex<Option<(Instant, FaultKind)>>,
}

impl Incarnation {
    fn election(&self) -> Option<Election> {
        lock(&self.election).clone()
    }

    pub(crate) fn crashed_at(&self) -> Option<Instant> {
        lock(&self.ended).filter(|(_, k)| *k == FaultKind::Crash).map(|(at, _)| at)
    }

    fn hang(&self, on: bool) {
        let before =
            if on { self.hung.fetch_add(1, Ordering::SeqCst) } else { self.hung.fetch_sub(1, Ordering::SeqCst) };
        let proxy = lock(&self.proxy);
        match (on, before) {
            (true, 0) => {
                self.control.hang_all();
                if let Some(p) = proxy.as_ref() {
                    p.set_mode(ProxyMode::Blackhole);
                }
            }
            (false, 1) => {
                self.control.release_hang();
                if let Some(p) = proxy.as_ref() {
                    p.set_mode(ProxyMode::Pass);
                }
            }
            _ => {}
        }
    }

    fn set_unhealthy(&self, on: bool) {
        let before = if on {
            self.unhealthy.fetch_add(1, Ordering::SeqCst)
        } else {
            self.unhealthy.fetch_sub(1, Ordering::SeqCst)
        };
        let unhealthy_now = if on { before + 1 } else { before - 1 };
        self.healthy.store(unhealthy_now == 0, Ordering::SeqCst);
    }

    fn stall(&self, subscriber: usize, on: bool) {
        if let Some(s) = self.stalls.get(subscriber) {
            s.send_modify(|d| if on { *d += 1 } else { *d = d.saturating_sub(1) });
        }
    }

    fn spawn(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The process dies (`crash`) or the application drops the election (`drop`).
    fn end(&self, how: FaultKind) {
        *lock(&self.ended) = Some((Instant::now(), how));
        self.running.send_replace(false);
        if how == FaultKind::Crash {
            // Nothing it sends from now on arrives; its connections die with it.
            self.control.set_unavailable(true);
            self.control.release_hang();
            lock(&self.proxy).take();
            for t in lock(&self.subscriber_tasks).iter() {
                t.abort();
            }
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        let election = lock(&self.election).take();
        drop(election);
    }
}

/// Plays one schedule and checks the run.
pub(crate) async fn run(provider: Arc<dyn Provider>, config: SimConfig, schedule: Schedule) -> SimReport {
    let seed = schedule.seed;
    let election = if config.paused {
        format!("sim-{seed}")
    } else {
        format!("sim-{seed}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    };
    let origin = Instant::now();
    let world = Arc::new(Shared {
        seed,
        provider,
        election,
        origin,
        global: FaultControl::new(),
        work: WorkRecorder::new(),
        violations: Mutex::new(Vec::new()),
        deadline_samples: AtomicU64::new(0),
        stops: Mutex::new(Vec::new()),
        releases: Mutex::new(Vec::new()),
        slots: Mutex::new(vec![None; schedule.roles.len()]),
        all: Mutex::new(Vec::new()),
        last_heal: Mutex::new(origin),
        outage: AtomicU32::new(0),
        latencies: Mutex::new(Vec::new()),
        config,
    });
    let mut counts = SimCounts::default();

    // The timeline: each role's start, each fault's begin and end.
    #[derive(Clone, Copy)]
    enum Step {
        Start(usize),
        Begin(usize),
        End(usize),
    }
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for (i, role) in schedule.roles.iter().enumerate() {
        steps.push((role.start, Step::Start(i)));
    }
    for (i, f) in schedule.faults.iter().enumerate() {
        steps.push((f.at, Step::Begin(i)));
        if f.kind != FaultKind::Release {
            steps.push((f.end(), Step::End(i)));
        }
    }
    steps.sort_by_key(|(at, _)| *at);

    let mut ops: Vec<JoinHandle<()>> = Vec::new();
    let mut bound: Vec<Option<Arc<Incarnation>>> = vec![None; schedule.faults.len()];
    for (at, step) in steps {
        sleep_until(origin + at).await;
        match step {
            Step::Start(slot) => ops.push(tokio::spawn(install(world.clone(), schedule.clone(), slot, 0))),
            Step::Begin(i) => {
                let fault = &schedule.faults[i];
                match begin(&world, i, fault, &mut ops) {
                    Some(target) => {
                        *counts.faults.entry(fault.kind).or_default() += 1;
                        bound[i] = target;
                    }
                    None => counts.skipped += 1,
                }
            }
            Step::End(i) => {
                if counts_applied(&bound, i, &schedule.faults[i]) {
                    end(&world, &schedule, i, bound[i].take(), &mut ops);
                }
            }
        }
    }
    // Restarts and the slow stops they wait for.
    let settle = world.op_bound() * 2 + world.config.options.lease_duration;
    for op in ops {
        if tokio::time::timeout(settle, op).await.is_err() {
            world.violation("ops", format!("a stop, release or restart did not finish within {}", secs(settle)));
        }
    }
    world.healed();
    let heal = *lock(&world.last_heal);
    let recovery = world.config.recovery_bound();
    sleep_until(heal + recovery + world.config.options.lease_duration).await;
    let end = Instant::now();
    finish(&world).await;
    check::check(&world, heal, end, &mut counts).await;
    counts.deadline_samples = world.deadline_samples.load(Ordering::SeqCst);
    counts.stops = lock(&world.stops).len() as u64;
    counts.releases = lock(&world.releases).len() as u64;
    counts.longest_stop =
        lock(&world.stops).iter().chain(lock(&world.releases).iter()).copied().max().unwrap_or_default();
    let mut violations = world.violations();
    violations.sort_by_key(|v| v.at);
    let trace = if violations.is_empty() && !world.config.trace && std::env::var_os("LEADER_SIM_TRACE").is_none() {
        Vec::new()
    } else {
        check::trace(&world)
    };
    SimReport { schedule, counts, violations, virtual_time: end - origin, paused: world.config.paused, trace }
}

/// Whether the fault's begin was applied (store-wide faults have no bound participant).
fn counts_applied(bound: &[Option<Arc<Incarnation>>], i: usize, fault: &Fault) -> bool {
    bound[i].is_some() || matches!(fault.kind, FaultKind::Outage | FaultKind::Latency | FaultKind::LostReplies)
}

/// Starts a fault; returns the participant it is bound to (`Some(None)` for store-wide faults),
/// or `None` if it could not apply (its slot has no participant now).
fn begin(
    world: &Arc<Shared>,
    key: usize,
    fault: &Fault,
    ops: &mut Vec<JoinHandle<()>>,
) -> Option<Option<Arc<Incarnation>>> {
    let g = &world.global;
    match fault.kind {
        FaultKind::Outage => {
            if world.outage.fetch_add(1, Ordering::SeqCst) == 0 {
                g.set_unavailable(true);
            }
            return Some(None);
        }
        FaultKind::Latency => {
            let mut l = lock(&world.latencies);
            l.push((key, fault.detail));
            apply_latency(g, &l);
            return Some(None);
        }
        FaultKind::LostReplies => {
            if let Detail::Lost { op, count } = fault.detail {
                g.lose_replies(op, count);
            }
            return Some(None);
        }
        _ => {}
    }
    let inc = world.slot(fault.target)?;
    match fault.kind {
        FaultKind::Stop => {
            if inc.stopped.fetch_add(1, Ordering::SeqCst) == 0 {
                inc.running.send_replace(false);
                let (w, i) = (world.clone(), inc.clone());
                let task = tokio::spawn(async move {
                    let _life = i.lifecycle.lock().await;
                    stop(&w, &i).await;
                });
                inc.spawn(task);
            }
        }
        FaultKind::Release => {
            let (w, i) = (world.clone(), inc.clone());
            inc.spawn(tokio::spawn(async move { release(&w, &i).await }));
        }
        FaultKind::Drop | FaultKind::Crash => {
            lock(&world.slots)[fault.target] = None;
            inc.end(fault.kind);
        }
        FaultKind::Pause | FaultKind::Suspend => inc.hang(true),
        FaultKind::HealthFlap => {
            let flaps = match fault.detail {
                Detail::Flaps(n) => n.max(1),
                _ => 1,
            };
            let step = fault.length / (2 * flaps);
            let i = inc.clone();
            ops.push(tokio::spawn(async move {
                for _ in 0..flaps {
                    i.set_unhealthy(true);
                    sleep(step).await;
                    i.set_unhealthy(false);
                    sleep(step).await;
                }
            }));
        }
        FaultKind::SubscriberStall => inc.stall(fault.subscriber, true),
        FaultKind::Duplicate => {
            if let Detail::Duplicate { op, delay } = fault.detail {
                *lock(&inc.duplicate) = Some((op, delay));
                // Disarmed in time for any duplicate to arrive within the fault.
                let (i, armed_for) = (inc.clone(), fault.length.saturating_sub(delay));
                ops.push(tokio::spawn(async move {
                    sleep(armed_for).await;
                    lock(&i.duplicate).take();
                }));
            }
        }
        FaultKind::ConnectionReset => {
            if let Some(p) = lock(&inc.proxy).as_ref() {
                p.set_mode(ProxyMode::Reset);
            }
        }
        FaultKind::Outage | FaultKind::Latency | FaultKind::LostReplies => {}
    }
    Some(Some(inc))
}

/// Sets the store-wide latencies: for each op and side, the largest active one.
fn apply_latency(g: &FaultControl, active: &[(usize, Detail)]) {
    use leader_core::layer::Op;
    let largest = |on_reply: bool, of: Option<Op>| {
        active
            .iter()
            .filter_map(|(_, d)| match *d {
                Detail::Latency { by, reply, op } if reply == on_reply && op == of => Some(by),
                _ => None,
            })
            .max()
    };
    g.set_latency(largest(false, None));
    for op in Op::ALL {
        g.set_op_latency(op, largest(false, Some(op)));
        g.set_reply_latency(op, largest(true, None).max(largest(true, Some(op))));
    }
}

/// Ends a fault begun by [`begin`].
fn end(
    world: &Arc<Shared>,
    schedule: &Schedule,
    key: usize,
    inc: Option<Arc<Incarnation>>,
    ops: &mut Vec<JoinHandle<()>>,
) {
    let fault = &schedule.faults[key];
    let g = &world.global;
    match fault.kind {
        FaultKind::Outage if world.outage.fetch_sub(1, Ordering::SeqCst) == 1 => g.set_unavailable(false),
        FaultKind::Latency => {
            let mut l = lock(&world.latencies);
            l.retain(|(k, _)| *k != key);
            apply_latency(g, &l);
        }
        FaultKind::LostReplies => {
            if let Detail::Lost { op, .. } = fault.detail {
                g.lose_replies(op, 0);
            }
        }
        _ => {}
    }
    let Some(inc) = inc else { return };
    match fault.kind {
        FaultKind::Stop if inc.stopped.fetch_sub(1, Ordering::SeqCst) == 1 => {
            let (w, i) = (world.clone(), inc.clone());
            ops.push(tokio::spawn(async move {
                let _life = i.lifecycle.lock().await;
                if let Some(e) = i.election() {
                    if i.style != WorkStyle::Manual {
                        if let Err(err) = e.start().await {
                            w.violation("ops", format!("{}: start() failed: {err}", i.id));
                        }
                    }
                    i.running.send_replace(true);
                    i.resubscribe.send_modify(|n| *n += 1);
                }
                w.healed();
            }));
        }
        FaultKind::Drop | FaultKind::Crash => {
            let gen = lock(&world.all).iter().filter(|i| i.slot == fault.target).count() as u32;
            ops.push(tokio::spawn(install(world.clone(), schedule.clone(), fault.target, gen)));
        }
        FaultKind::Pause => inc.hang(false),
        FaultKind::Suspend => {
            // The host resumes: it slept for the whole fault.
            inc.suspend.advance(fault.length);
            inc.hang(false);
        }
        FaultKind::SubscriberStall => inc.stall(fault.subscriber, false),
        FaultKind::ConnectionReset => {
            if let Some(p) = lock(&inc.proxy).as_ref() {
                p.set_mode(if inc.hung.load(Ordering::SeqCst) > 0 { ProxyMode::Blackhole } else { ProxyMode::Pass });
            }
        }
        _ => {}
    }
}

async fn stop(world: &Arc<Shared>, inc: &Arc<Incarnation>) {
    let Some(e) = inc.election() else { return };
    let began = Instant::now();
    let limit = world.op_bound();
    match tokio::time::timeout(limit, inc.stops.stop(&e)).await {
        Ok(_) => lock(&world.stops).push(began.elapsed()),
        Err(_) => world.violation("ops", format!("{}: stop() did not return within {}", inc.id, secs(limit))),
    }
}

async fn release(world: &Arc<Shared>, inc: &Arc<Incarnation>) {
    let Some(e) = inc.election() else { return };
    let began = Instant::now();
    let limit = world.op_bound();
    match tokio::time::timeout(limit, e.release()).await {
        Ok(_) => lock(&world.releases).push(began.elapsed()),
        Err(_) => world.violation("ops", format!("{}: release() did not return within {}", inc.id, secs(limit))),
    }
}

/// A participant's network latency (see [`create`]).
struct Link(Duration);

#[leader_core::async_trait]
impl leader_core::layer::Intercept for Link {
    async fn before(&self, _op: leader_core::layer::Op, _election: &str) -> leader_core::Result<()> {
        sleep(self.0).await;
        Ok(())
    }
}

/// Creates, starts and installs slot `slot`'s participant number `gen`.
async fn install(world: Arc<Shared>, schedule: Schedule, slot: usize, gen: u32) {
    match create(&world, &schedule, slot, gen).await {
        Ok(inc) => {
            lock(&world.slots)[slot] = Some(inc.clone());
            lock(&world.all).push(inc.clone());
            if let Some(e) = inc.election() {
                let _life = inc.lifecycle.lock().await;
                if inc.style != WorkStyle::Manual {
                    if let Err(err) = e.start().await {
                        world.violation("ops", format!("{}: start() failed: {err}", inc.id));
                    }
                }
                inc.running.send_replace(true);
            }
            world.healed();
        }
        Err(e) => world.violation("ops", format!("p{slot}: could not make its store or election: {e}")),
    }
}

async fn create(
    world: &Arc<Shared>,
    schedule: &Schedule,
    slot: usize,
    gen: u32,
) -> leader_core::Result<Arc<Incarnation>> {
    let role = &schedule.roles[slot];
    let id = if gen == 0 { format!("p{slot}") } else { format!("p{slot}.{gen}") };
    let (base, proxy) = match world.provider.server_addr() {
        Some(addr) => {
            let proxy = FaultProxy::start(addr)
                .await
                .map_err(|e| leader_core::Error::unavailable(format!("fault proxy: {e}")))?;
            match world.provider.store_at(proxy.addr()).await {
                Some(store) => (store?, Some(proxy)),
                None => (world.provider.store().await?, None),
            }
        }
        None => (world.provider.store().await?, None),
    };
    let control = FaultControl::new();
    let grants = Arc::new(Grants::default());
    let duplicate = Arc::new(Mutex::new(None));
    let base: Arc<dyn LeaseStore> = Arc::new(Duplicating { inner: base, armed: duplicate.clone() });
    let mut store: Arc<dyn LeaseStore> =
        base.layer(FaultLayer::new(world.global.clone())).layer(FaultLayer::new(control.clone()));
    if world.config.paused {
        // Each participant's link to the store takes a few whole milliseconds of its own, so
        // calls that participants make in the same instant reach the store, and their answers
        // come back, in an order fixed by the slots rather than by the order tokio happens to
        // run the tasks in.
        let link = Arc::new(Link(Duration::from_millis(slot as u64 + 1)));
        store = store.layer(leader_core::layer::InterceptLayer::new(link));
    }
    let store: Arc<dyn LeaseStore> = Arc::new(Recording { inner: store, grants: grants.clone() });
    let healthy = Arc::new(AtomicBool::new(true));
    let suspend = Arc::new(SimSuspend::default());
    let check = healthy.clone();
    let mut builder = Election::builder(store, world.election.clone())
        .participant_id(id.clone())
        .options(world.config.options.clone())
        .suspend_clock(suspend.clone())
        .health_check(move || {
            let ok = check.load(Ordering::SeqCst);
            async move { ok }
        });
    if world.config.broken_handover {
        builder = builder.broken_release_before_work_ends();
    }
    let election = builder.build()?;
    let (log, reader) = ChangeLog::new(&election);
    let log_task = tokio::spawn(reader);
    let stalls: Vec<_> = (0..role.subscribers).map(|_| watch::Sender::new(0u32)).collect();
    let subscribers: Vec<SubscriberLog> = (0..role.subscribers).map(|_| SubscriberLog::default()).collect();
    let inc = Arc::new(Incarnation {
        slot,
        instance: election.instance_id().to_owned(),
        id,
        style: role.work,
        weak: election.downgrade(),
        election: Mutex::new(Some(election.clone())),
        control,
        duplicate,
        proxy: Mutex::new(proxy),
        healthy,
        unhealthy: AtomicU32::new(0),
        hung: AtomicU32::new(0),
        stopped: AtomicU32::new(0),
        suspend,
        grants,
        log,
        subscribers,
        stalls,
        resubscribe: watch::Sender::new(0),
        stops: Arc::default(),
        running: watch::Sender::new(false),
        lifecycle: tokio::sync::Mutex::new(()),
        tasks: Mutex::new(Vec::new()),
        subscriber_tasks: Mutex::new(Vec::new()),
        log_task: Mutex::new(Some(log_task)),
        ended: Mutex::new(None),
    });
    for (i, out) in inc.subscribers.iter().enumerate() {
        // The first subscriber takes a fresh stream when the application restarts the election;
        // a second one keeps the stream it has (which the restart's stop() has ended).
        let task = tokio::spawn(subscriber(inc.clone(), out.clone(), inc.stalls[i].subscribe(), i == 0));
        lock(&inc.subscriber_tasks).push(task);
    }
    inc.spawn(tokio::spawn(probe(world.clone(), inc.clone())));
    let rng = fastrand::Rng::with_seed(world.seed ^ ((slot as u64) << 40) ^ (u64::from(gen) << 32) ^ 0x5157);
    match role.work {
        WorkStyle::None => {}
        WorkStyle::Manual => inc.spawn(tokio::spawn(manual(world.clone(), inc.clone(), election, rng))),
        _ => inc.spawn(tokio::spawn(worker(world.clone(), inc.clone(), election, rng))),
    }
    Ok(inc)
}

/// The participant's application: runs its work as leader again and again while it runs.
async fn worker(world: Arc<Shared>, inc: Arc<Incarnation>, election: Election, mut rng: fastrand::Rng) {
    let lease = world.config.options.lease_duration;
    let mut running = inc.running.subscribe();
    loop {
        if running.wait_for(|r| *r).await.is_err() {
            return;
        }
        let length = Duration::from_millis(rng.u64(lease.as_millis() as u64 / 10..=lease.as_millis() as u64 * 4));
        let extra = Duration::from_millis(rng.u64(0..=lease.as_millis() as u64 / 2));
        let who = inc.id.clone();
        let work = world.work.clone();
        let outcome = match inc.style {
            WorkStyle::None | WorkStyle::Manual => return,
            WorkStyle::Cooperative => {
                election
                    .run_as_leader(|l| {
                        let lost = l.clone();
                        work.record(&who, &l, async move {
                            tokio::select! {
                                biased;
                                _ = lost.lost() => {}
                                _ = sleep(length) => {}
                            }
                        })
                    })
                    .await
            }
            WorkStyle::Stubborn => election.run_as_leader(|l| work.record(&who, &l, sleep(length))).await,
            WorkStyle::StopsItself => {
                let (inside, stops) = (election.clone(), inc.stops.clone());
                let outcome = election
                    .run_as_leader(|l| {
                        let lost = l.clone();
                        work.record(&who, &l, async move {
                            tokio::select! {
                                biased;
                                _ = lost.lost() => return,
                                _ = sleep(length) => {}
                            }
                            let _ = stops.stop(&inside).await;
                            sleep(extra).await;
                        })
                    })
                    .await;
                // The application starts the election again and takes fresh change streams.
                if *running.borrow() && election.health().phase == "stopped" {
                    let _ = election.start().await;
                    inc.resubscribe.send_modify(|n| *n += 1);
                }
                outcome
            }
            WorkStyle::ReleasesItself => {
                let inside = election.clone();
                election
                    .run_as_leader(|l| {
                        let lost = l.clone();
                        work.record(&who, &l, async move {
                            tokio::select! {
                                biased;
                                _ = lost.lost() => return,
                                _ = sleep(length) => {}
                            }
                            let _ = inside.release().await;
                            sleep(extra).await;
                        })
                    })
                    .await
            }
        };
        if let Err(e) = outcome {
            let stopped_by_itself =
                e.kind() == ErrorKind::Stopped && *running.borrow() && election.health().phase == "stopped";
            if stopped_by_itself || !matches!(e.kind(), ErrorKind::LeadershipLost | ErrorKind::Stopped) {
                world.violation("ops", format!("{}: run_as_leader failed unexpectedly: {e}", inc.id));
                return;
            }
        }
        sleep(Duration::from_millis(rng.u64(1..=lease.as_millis() as u64 / 2))).await;
    }
}

/// A participant in manual mode: `try_acquire()` about every `renew_interval` while it runs, a
/// cooperative piece of work under each tenure, and now and then a `release()`.
async fn manual(world: Arc<Shared>, inc: Arc<Incarnation>, election: Election, mut rng: fastrand::Rng) {
    let o = world.config.options.clone();
    let mut running = inc.running.subscribe();
    let mut work: Option<(leader_core::FencingToken, JoinHandle<()>)> = None;
    loop {
        if running.wait_for(|r| *r).await.is_err() {
            return;
        }
        let _ = election.try_acquire().await;
        if let Some(l) = election.leadership() {
            if work.as_ref().is_none_or(|(token, task)| *token != l.token() && task.is_finished()) {
                let length = Duration::from_millis(
                    rng.u64(o.lease_duration.as_millis() as u64 / 10..=o.lease_duration.as_millis() as u64 * 3),
                );
                let lost = l.clone();
                let recorded = world.work.record(&inc.id, &l, async move {
                    tokio::select! {
                        biased;
                        _ = lost.lost() => {}
                        _ = sleep(length) => {}
                    }
                });
                work = Some((l.token(), tokio::spawn(recorded)));
            }
            if rng.u8(0..12) == 0 {
                let _ = election.release().await;
            }
        }
        let pause = o.renew_interval.mul_f64(0.5 + rng.f64() * 0.5);
        sleep(pause).await;
    }
}

/// One ordinary subscriber: reads its `changes()` stream unless stalled; takes a new stream when
/// one ends (after a `stop()`) and, if it `renews`, when the application restarts the election,
/// until the participant is gone.
async fn subscriber(inc: Arc<Incarnation>, out: SubscriberLog, mut stall: watch::Receiver<u32>, renews: bool) {
    use futures::StreamExt;
    let mut fresh = inc.resubscribe.subscribe();
    loop {
        let Some(e) = inc.weak.upgrade() else { return };
        let start = inc.log.pump();
        let run = inc.log.runs_ended();
        let stops_done_at_start = inc.stops.done.load(Ordering::SeqCst);
        let mut stream = e.changes();
        drop(e);
        fresh.borrow_and_update();
        let index = {
            let mut subs = lock(&out);
            subs.push(Subscription { start, run, stops_done_at_start, ..Subscription::default() });
            subs.len() - 1
        };
        loop {
            if stall.wait_for(|d| *d == 0).await.is_err() {
                return;
            }
            tokio::select! {
                biased;
                _ = stall.wait_for(|d| *d > 0) => continue,
                item = stream.next() => match item {
                    Some(change) => lock(&out)[index].items.push(super::record::Entry { at: Instant::now(), change }),
                    None => {
                        let mut subs = lock(&out);
                        subs[index].ended = true;
                        subs[index].stops_begun_at_end = inc.stops.begun.load(Ordering::SeqCst);
                        subs[index].gone_at_end = inc.weak.upgrade().is_none();
                        break;
                    }
                },
                _ = fresh.changed(), if renews => {
                    lock(&out)[index].abandoned = true;
                    break;
                }
            }
        }
    }
}

/// Guarantee 3 from outside: whenever the participant says it leads, a grant it received must
/// still cover the instant (send time + `renew_deadline`, less time suspended since). Looks every
/// [`PROBE_TICK`] and at each deadline.
async fn probe(world: Arc<Shared>, inc: Arc<Incarnation>) {
    let rd = world.config.options.renew_deadline;
    loop {
        let now = Instant::now();
        let mut next = now + PROBE_TICK;
        {
            let Some(e) = inc.weak.upgrade() else { return };
            if let Some(l) = e.leadership() {
                world.deadline_samples.fetch_add(1, Ordering::Relaxed);
                match inc.grants.deadline(l.token(), now, rd, &inc.suspend) {
                    Some((deadline, _)) if now < deadline => next = next.min(deadline),
                    Some((deadline, grant)) => world.violation(
                        "deadline",
                        format!(
                            "{}: is_leader() true {} past its deadline (token {}, last grant sent at {}, renew_deadline {}, suspended since {})",
                            inc.id,
                            secs(now - deadline),
                            l.token(),
                            secs(grant.sent - world.origin),
                            secs(rd),
                            secs(inc.suspend.slept_since(grant.sent)),
                        ),
                    ),
                    None => world.violation(
                        "deadline",
                        format!("{}: is_leader() true with token {} that no acquire or renew granted", inc.id, l.token()),
                    ),
                }
            }
        }
        sleep_until(next).await;
    }
}

/// The end of the run: every participant still there stops (and must hand over), its streams
/// end, and the handles are dropped.
async fn finish(world: &Arc<Shared>) {
    let live: Vec<Arc<Incarnation>> = lock(&world.slots).iter().flatten().cloned().collect();
    let mut stops = Vec::new();
    for inc in &live {
        inc.running.send_replace(false);
        let (w, i) = (world.clone(), inc.clone());
        stops.push(tokio::spawn(async move {
            let _life = i.lifecycle.lock().await;
            stop(&w, &i).await;
        }));
    }
    for s in stops {
        let _ = s.await;
    }
    let all: Vec<Arc<Incarnation>> = lock(&world.all).clone();
    for inc in &all {
        for t in lock(&inc.tasks).drain(..) {
            t.abort();
        }
        for s in &inc.stalls {
            s.send_replace(0);
        }
        lock(&inc.election).take();
    }
    // Streams end once their elections are gone; give the last tasks time to let go.
    let limit = world.config.options.lease_duration * 2 + world.config.slack;
    for inc in &all {
        let tasks: Vec<JoinHandle<()>> =
            lock(&inc.subscriber_tasks).drain(..).chain(lock(&inc.log_task).take()).collect();
        for t in tasks {
            if tokio::time::timeout(limit, t).await.is_err() && inc.crashed_at().is_none() {
                world.violation(
                    "events",
                    format!("{}: a changes() stream did not end within {} after stop() and drop", inc.id, secs(limit)),
                );
            }
        }
    }
}
