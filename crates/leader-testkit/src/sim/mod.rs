//! Randomised simulation: the real [`Election`](leader_core::Election) code, several participants
//! on one store, a seeded schedule of faults, and checkers over the whole run. The crate's README
//! ("Randomised simulation") describes the model, the checkers and what they leave out.
//!
//! Each seed gives a [`Schedule`]: 2-5 participants (see [`WorkStyle`]; one or two `changes()`
//! subscribers each) and a few faults of the [`FaultKind`]s at random instants. The run plays the
//! schedule, waits until every fault has healed plus the recovery bound and one lease, stops every
//! participant, and checks:
//!
//! - **work**: no two participants' `run_as_leader` work ever runs at once ([`check_work`]), and
//!   no work runs on past its tenure's end plus its grace (`lease_duration - renew_deadline -
//!   drift_allowance`; none when the store said the lease was gone);
//! - **tenures**, **tokens**: no two participants' tenures (`Acquired` to `Lost`) overlap, and
//!   fencing tokens grow from tenure to tenure;
//! - **events**: each participant's changes start with `Subscribed`, `Acquired` and `Lost`
//!   alternate, `Lost` names its tenure; every ordinary subscriber's stream is exactly its
//!   participant's changes from its subscription to the end of its run, in order, each one
//!   delivered or (after an overflow) counted in the next delivered change's `missed`; a stream
//!   ends only after a `stop()` began (or at the drop), never while its last change says its
//!   participant leads, and delivers nothing after a `stop()`'s `Lost`;
//! - **deadline**: whenever `is_leader()` is true, a grant the participant's store returned still
//!   covers that instant (send time of the acquire or renew + `renew_deadline`, less any time the
//!   host was suspended since), probed every 50 ms and at each deadline;
//! - **liveness**: after the last fault healed, no stretch without a leader longer than
//!   [`SimConfig::recovery_bound`];
//! - **ops**: `stop()` and `release()` return within the work's grace plus a few store calls,
//!   `run_as_leader` fails only with `LeadershipLost` or `Stopped`;
//! - **calls**: no participant makes more than [`SimConfig::calls_per_lease_bound`] store calls
//!   within one lease (a retry loop that does not back off);
//! - **store**: after every participant stopped, the store shows no holder.
//!
//! Under tokio's paused clock on a current-thread runtime ([`run_paused`]) the schedule is a
//! function of the seed, the core's jitter comes from `fastrand`'s thread-local generator (seeded
//! per run), and the clock only moves when every task waits. tokio's own generator (which picks
//! among `select!` branches ready at once and spreads a watch channel's waiters) is seeded only
//! when built with `--cfg tokio_unstable` ([`exact_replay`]); without it, tasks woken in the same
//! instant may run in another order from one run to the next, so a replay repeats a seed until it
//! fails ([`attempts`]).
//!
//! [`check_work`]: crate::check_work

mod broken;
mod check;
mod record;
mod schedule;
mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::ElectionOptions;

pub use broken::{BrokenProvider, BrokenStore, Flaw};
pub use schedule::{Detail, Fault, FaultKind, Role, Schedule, WorkStyle};

use crate::Provider;

/// What a simulation run looks like: timings, sizes, and which faults it may inject.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The participants' options. A small `event_buffer` makes stalled subscribers overflow.
    pub options: ElectionOptions,
    /// How many participants a schedule has.
    pub participants: RangeInclusive<usize>,
    /// How many faults a schedule has.
    pub faults: RangeInclusive<usize>,
    /// Faults begin within this long from the start.
    pub fault_window: Duration,
    /// The kinds drawn from (empty: every kind but [`FaultKind::ConnectionReset`]).
    pub kinds: Vec<FaultKind>,
    /// Whether the run is under tokio's paused clock (exact bounds, reproducible election names).
    pub paused: bool,
    /// Added to every time bound the checkers apply: zero under the paused clock, scheduling
    /// slack on a busy machine in real time.
    pub slack: Duration,
    /// Run a deliberately broken driver (see
    /// [`ElectionBuilder::broken_release_before_work_ends`](leader_core::ElectionBuilder::broken_release_before_work_ends)),
    /// to show the checkers catch it.
    pub broken_handover: bool,
    /// Keep every run's trace in its report, not only failing runs' (also set by
    /// `LEADER_SIM_TRACE`).
    pub trace: bool,
    /// Draw fault kinds in turn (seed by seed) instead of at random, so that a handful of seeds
    /// covers every kind: for small real-time sets.
    pub cycle_kinds: bool,
}

impl SimConfig {
    /// For the memory store under the paused clock: 2 s leases, buffers of 4 changes, 2-5
    /// participants, 2-8 faults within 12 leases.
    pub fn paused() -> Self {
        let lease = Duration::from_secs(2);
        SimConfig {
            options: ElectionOptions { event_buffer: 4, ..ElectionOptions::from_lease(lease) },
            participants: 2..=5,
            faults: 2..=8,
            fault_window: lease * 12,
            kinds: FaultKind::WITHOUT_PROXY.to_vec(),
            paused: true,
            slack: Duration::ZERO,
            broken_handover: false,
            trace: false,
            cycle_kinds: false,
        }
    }

    /// For a real server in real time, with `lease`: 2-4 participants, 3-6 faults within 8
    /// leases, every kind in turn (reset connections where the provider has a proxy path), and
    /// 1 s of slack on every bound (a busy machine schedules late).
    pub fn real_time(lease: Duration) -> Self {
        SimConfig {
            options: ElectionOptions { event_buffer: 4, ..ElectionOptions::from_lease(lease) },
            participants: 2..=4,
            faults: 3..=6,
            fault_window: lease * 8,
            kinds: FaultKind::ALL.to_vec(),
            paused: false,
            slack: Duration::from_secs(1),
            broken_handover: false,
            trace: false,
            cycle_kinds: true,
        }
    }

    /// How long after the last fault healed the election may go without a leader: the crash
    /// bound (a dead holder's lease expires, a follower polls: `lease_duration + retry_interval`,
    /// jittered by a quarter), plus the work grace and drift allowance a participant waits for
    /// its last tenure's work before campaigning, plus two operation timeouts (a call in flight
    /// when the fault healed, and the acquire itself), plus [`slack`](Self::slack). A `release()`
    /// just before the heal abstains for `lease_duration + retry_interval`, within this.
    pub fn recovery_bound(&self) -> Duration {
        let o = &self.options;
        o.lease_duration
            + o.retry_interval * 5 / 4
            + o.work_grace()
            + o.drift_allowance
            + o.operation_timeout * 2
            + self.slack
    }
}

impl SimConfig {
    /// How many store calls one participant may make within one lease: four per retry interval
    /// (the driver's pace is about one), plus 20 for bursts (a hand-over's release, withdraw and
    /// reads; push hints when the holder changes).
    pub fn calls_per_lease_bound(&self) -> u64 {
        let o = &self.options;
        let per_retry = (o.lease_duration.as_millis() / o.retry_interval.as_millis().max(1)) as u64;
        4 * per_retry + 20
    }
}

/// One broken rule, found by a checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When it was noticed (or, for checks over the whole run, when the run ended), from the start.
    pub at: Duration,
    /// Which checker: `work`, `tenures`, `tokens`, `events`, `deadline`, `liveness`, `ops`,
    /// `calls`, `store`.
    pub check: &'static str,
    /// What happened.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.what)
    }
}

/// What the checkers looked at, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimCounts {
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Faults that could not apply (their participant was gone).
    pub skipped: u64,
    /// `run_as_leader` work spans checked.
    pub work_spans: u64,
    /// Tenures checked.
    pub tenures: u64,
    /// Subscriber deliveries checked (every item after the first).
    pub changes_checked: u64,
    /// `Lost` changes owed to subscribers.
    pub losts_to_subscribers: u64,
    /// Of those, delivered.
    pub losts_delivered: u64,
    /// Of those, skipped after an overflow and counted in `missed`.
    pub losts_covered_by_missed: u64,
    /// `is_leader()` samples the deadline probe checked.
    pub deadline_samples: u64,
    /// Runs whose recovery after the last fault was checked.
    pub liveness_windows: u64,
    /// The longest stretch without a leader after the last fault healed.
    pub longest_gap: Duration,
    /// `stop()` calls.
    pub stops: u64,
    /// `release()` calls.
    pub releases: u64,
    /// The longest `stop()` or `release()`.
    pub longest_stop: Duration,
    /// The most store calls one participant made within one lease.
    pub busiest_calls_per_lease: u64,
}

impl SimCounts {
    /// Adds another run's counts.
    pub fn merge(&mut self, other: &SimCounts) {
        for (k, n) in &other.faults {
            *self.faults.entry(*k).or_default() += n;
        }
        self.skipped += other.skipped;
        self.work_spans += other.work_spans;
        self.tenures += other.tenures;
        self.changes_checked += other.changes_checked;
        self.losts_to_subscribers += other.losts_to_subscribers;
        self.losts_delivered += other.losts_delivered;
        self.losts_covered_by_missed += other.losts_covered_by_missed;
        self.deadline_samples += other.deadline_samples;
        self.liveness_windows += other.liveness_windows;
        self.longest_gap = self.longest_gap.max(other.longest_gap);
        self.stops += other.stops;
        self.releases += other.releases;
        self.longest_stop = self.longest_stop.max(other.longest_stop);
        self.busiest_calls_per_lease = self.busiest_calls_per_lease.max(other.busiest_calls_per_lease);
    }

    /// Faults injected, all kinds.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

impl fmt::Display for SimCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "faults by kind: {} ({} skipped: participant gone)", kinds.join(", "), self.skipped)?;
        writeln!(
            f,
            "checked: {} work spans, {} tenures, {} changes to subscribers ({} Lost owed: {} delivered, {} covered by missed), \
             {} is_leader() samples, {} recoveries (longest leaderless stretch after the last fault {}), \
             {} stop() and {} release() calls (longest {}), at most {} store calls by one participant within a lease",
            self.work_spans,
            self.tenures,
            self.changes_checked,
            self.losts_to_subscribers,
            self.losts_delivered,
            self.losts_covered_by_missed,
            self.deadline_samples,
            self.liveness_windows,
            schedule::secs(self.longest_gap),
            self.stops,
            self.releases,
            schedule::secs(self.longest_stop),
            self.busiest_calls_per_lease,
        )
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// What was played.
    pub schedule: Schedule,
    /// What was checked.
    pub counts: SimCounts,
    /// What broke (empty: the seed passed).
    pub violations: Vec<Violation>,
    /// How much (virtual or real) time the run took.
    pub virtual_time: Duration,
    /// Whether it ran under the paused clock (only then does a replay repeat the run).
    pub paused: bool,
    /// Every participant's changes and work by time (filled when the run failed, or with
    /// [`SimConfig::trace`] or `LEADER_SIM_TRACE`).
    pub trace: Vec<String>,
}

impl SimReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The verdict in one comparable value: each violation's checker and message.
    pub fn verdict(&self) -> Vec<String> {
        self.violations.iter().map(|v| format!("{:.3}s {v}", v.at.as_secs_f64())).collect()
    }
}

/// Plays the schedule of `seed` against `provider` in the current runtime (its clock, paused or
/// not) and checks the run.
pub async fn run(provider: Arc<dyn Provider>, config: &SimConfig, seed: u64) -> SimReport {
    let schedule = Schedule::generate(seed, config);
    world::run(provider, config.clone(), schedule).await
}

/// Runs `seed` on a fresh current-thread runtime under the paused clock, with the thread's
/// `fastrand` generator (the core's jitter) seeded from `seed`: the same seed replays the same
/// run. `make_provider` is called once, inside the runtime.
pub fn run_paused(
    make_provider: &(dyn Fn(u64) -> Arc<dyn Provider> + Send + Sync),
    config: &SimConfig,
    seed: u64,
) -> SimReport {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    seed_tokio(&mut builder, seed);
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => panic!("leader-testkit sim: cannot build a runtime: {e}"),
    };
    fastrand::seed(seed ^ 0x6c65_6164_6572);
    runtime.block_on(async {
        let provider = make_provider(seed);
        run(provider, config, seed).await
    })
}

/// Runs `seed` in real time on a fresh current-thread runtime (for real servers:
/// [`SimConfig::real_time`]). `make_provider` is called once, inside the runtime.
pub fn run_real_time(
    make_provider: &(dyn Fn(u64) -> Arc<dyn Provider> + Send + Sync),
    config: &SimConfig,
    seed: u64,
) -> SimReport {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => panic!("leader-testkit sim: cannot build a runtime: {e}"),
    };
    runtime.block_on(async {
        let provider = make_provider(seed);
        run(provider, config, seed).await
    })
}

/// With `--cfg tokio_unstable`, seeds tokio's own generator (which picks among `select!` branches
/// ready at once and spreads watch-channel waiters over their wake lists), so that a seed replays
/// task for task.
#[allow(unexpected_cfgs)]
fn seed_tokio(builder: &mut tokio::runtime::Builder, seed: u64) {
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = (builder, seed);
}

/// Whether tokio's own generator is seeded too (built with `--cfg tokio_unstable`).
#[allow(unexpected_cfgs)]
pub fn exact_replay() -> bool {
    cfg!(tokio_unstable)
}

/// How to replay one seed: the command a failure prints.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The cargo package, e.g. `leader-testkit`.
    pub package: &'static str,
    /// The integration test binary, e.g. `sim`.
    pub binary: &'static str,
    /// The test's name, e.g. `sim_memory`.
    pub test: &'static str,
}

impl Replay {
    /// `LEADER_SIM_SEED=<seed> cargo test -p <package> --test <binary> <test> -- --exact --nocapture`.
    pub fn command(&self, seed: u64) -> String {
        format!(
            "LEADER_SIM_SEED={seed} cargo test -p {} --test {} {} -- --exact --nocapture",
            self.package, self.binary, self.test
        )
    }

    /// The same, built with `--cfg tokio_unstable` (in a target directory of its own) so that
    /// tokio's generator is seeded too: replays the run task for task.
    pub fn exact_command(&self, seed: u64) -> String {
        format!("RUSTFLAGS='--cfg tokio_unstable' CARGO_TARGET_DIR=target/sim-exact {}", self.command(seed))
    }
}

/// The seeds to run: `LEADER_SIM_SEED=N` runs only seed N (a replay); otherwise
/// `LEADER_SIM_SEEDS` (default `default_count`) seeds from `LEADER_SIM_BASE` (default 0; `random`
/// picks one and prints it).
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("LEADER_SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("LEADER_SIM_SEEDS").unwrap_or(default_count);
    let base = match std::env::var("LEADER_SIM_BASE").ok().as_deref().map(str::trim) {
        Some("random") => {
            let base = fastrand::u64(..u64::MAX / 2);
            eprintln!("leader-testkit sim: LEADER_SIM_BASE={base}");
            base
        }
        Some(v) => v.parse().unwrap_or(0),
        None => 0,
    };
    (base..base + count).collect()
}

/// Whether this run replays one seed (`LEADER_SIM_SEED` set).
pub fn replaying() -> bool {
    env_u64("LEADER_SIM_SEED").is_some()
}

/// How many times to run each seed before calling it passed: 1, except when replaying one seed
/// without [`exact_replay`], where tasks woken in the same instant may run in another order than
/// in the run that failed: then `LEADER_SIM_REPEAT` (default 20) attempts, stopping at the first
/// failure.
pub fn attempts() -> u64 {
    if !replaying() {
        return 1;
    }
    env_u64("LEADER_SIM_REPEAT").unwrap_or(if exact_replay() { 1 } else { 20 }).max(1)
}

/// [`run_paused`], [`attempts`] times or until it fails; says on which attempt it failed.
pub fn run_paused_attempts(
    make_provider: &(dyn Fn(u64) -> Arc<dyn Provider> + Send + Sync),
    config: &SimConfig,
    seed: u64,
) -> SimReport {
    let attempts = attempts();
    let mut report = run_paused(make_provider, config, seed);
    for attempt in 2..=attempts {
        if !report.passed() {
            break;
        }
        report = run_paused(make_provider, config, seed);
        if !report.passed() {
            eprintln!("sim: seed {seed} failed on attempt {attempt}");
        }
    }
    if attempts > 1 && report.passed() {
        eprintln!(
            "sim: seed {seed} passed {attempts} times (the order of tasks woken in the same instant is not seeded \
             without --cfg tokio_unstable; see the replay command's exact form)"
        );
    }
    report
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The outcome of many seeds.
#[derive(Debug, Clone, Default)]
pub struct SimSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Everything the checkers looked at, over all seeds.
    pub counts: SimCounts,
    /// The reports of the seeds that failed.
    pub failures: Vec<SimReport>,
    /// Real time the seeds took.
    pub wall: Duration,
}

impl SimSummary {
    /// `N seeds, M faults`: the line every run ends with.
    pub fn line(&self) -> String {
        format!("{} seeds, {} faults", self.seeds, self.counts.total_faults())
    }

    /// Prints every failure (its replay command, its violations, its schedule and trace), the
    /// counts, and the `N seeds, M faults` line last.
    pub fn print(&self, name: &str, replay: &Replay) {
        for report in &self.failures {
            eprintln!("\nsim {name}: seed {} FAILED", report.schedule.seed);
            eprintln!("  replay: {}", replay.command(report.schedule.seed));
            if !report.paused {
                eprintln!("  (a real-time run replays the schedule, not the timing)");
            } else if !exact_replay() {
                eprintln!(
                    "  exact replay (also seeds tokio's own choices): {}",
                    replay.exact_command(report.schedule.seed)
                );
            }
            for v in &report.violations {
                eprintln!("  {:>8} {v}", schedule::secs(v.at));
            }
            eprintln!("  schedule:");
            for line in report.schedule.to_string().lines() {
                eprintln!("    {line}");
            }
            if !report.trace.is_empty() {
                eprintln!("  trace:");
                for line in &report.trace {
                    eprintln!("    {line}");
                }
            }
        }
        eprint!("sim {name}: {}", self.counts);
        eprintln!("sim {name}: {} failed, wall time {:.1}s", self.failures.len(), self.wall.as_secs_f64());
        eprintln!("{}", self.line());
    }
}

/// Runs `run_one` for every seed on `threads` threads (each seed on its own runtime), and sums up.
/// A seed still running after `stuck_after` of real time (`LEADER_SIM_STUCK_SECS` overrides it) is
/// taken for a hang: its replay command is printed and the process exits with a failure (a stuck
/// thread cannot be cancelled).
pub fn run_seeds(
    seeds: &[u64],
    threads: usize,
    stuck_after: Duration,
    replay: &Replay,
    run_one: impl Fn(u64) -> SimReport + Send + Sync,
) -> SimSummary {
    let started = std::time::Instant::now();
    let next = Mutex::new(0usize);
    let running: Mutex<BTreeMap<u64, std::time::Instant>> = Mutex::new(BTreeMap::new());
    let reports = Mutex::new(Vec::with_capacity(seeds.len()));
    let threads = threads.clamp(1, seeds.len().max(1));
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = record::lock(&next);
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(&seed) = seeds.get(i) else { break };
                    record::lock(&running).insert(seed, std::time::Instant::now());
                    let report = run_one(seed);
                    record::lock(&running).remove(&seed);
                    record::lock(&reports).push(report);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        scope.spawn(|| {
            while done.load(std::sync::atomic::Ordering::SeqCst) < threads {
                std::thread::sleep(Duration::from_millis(200));
                let stuck_after = env_u64("LEADER_SIM_STUCK_SECS").map_or(stuck_after, Duration::from_secs);
                let stuck = record::lock(&running).iter().find(|(_, t)| t.elapsed() > stuck_after).map(|(s, _)| *s);
                if let Some(seed) = stuck {
                    eprintln!(
                        "sim: seed {seed} has run for more than {}s of real time: the simulation hangs (a task that never yields?)\n  replay: {}",
                        stuck_after.as_secs(),
                        replay.command(seed)
                    );
                    std::process::exit(101);
                }
            }
        });
    });
    let reports = reports.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut summary = SimSummary { seeds: reports.len() as u64, wall: started.elapsed(), ..SimSummary::default() };
    for r in reports {
        summary.counts.merge(&r.counts);
        if !r.passed() {
            summary.failures.push(r);
        }
    }
    summary.failures.sort_by_key(|r| r.schedule.seed);
    summary
}

/// How many threads to run seeds on: `LEADER_SIM_THREADS`, else the machine's parallelism (at
/// most 4).
pub fn threads() -> usize {
    env_u64("LEADER_SIM_THREADS")
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .max(1)
}
