//! The seeded schedule of one simulation run: who takes part (with what work and how many
//! subscribers) and which faults hit when. A pure function of the seed and the [`SimConfig`].

use std::fmt;
use std::time::Duration;

use leader_core::layer::Op;

use super::SimConfig;

/// The kinds of fault a schedule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `stop()` (waits for the participant's work), then `start()` again after a while.
    Stop,
    /// `release()`: hand over now, abstain for a lease.
    Release,
    /// The application cancels its work and drops every handle (no `stop()`, no release); a new
    /// participant takes the slot later.
    Drop,
    /// The process dies: its tasks are gone, its in-flight and later store calls never arrive, and
    /// nothing is released; a new participant takes the slot later.
    Crash,
    /// One participant's store calls hang (a stalled connection, a paused process): past its
    /// deadline for the longer pauses. Through the fault proxy (a black hole) where the store
    /// has one.
    Pause,
    /// The host suspends: its calls hang for the length of the suspend and, on resume, its
    /// injected [`SuspendClock`](leader_core::clock::SuspendClock) jumps by the time slept.
    Suspend,
    /// The store is down for everyone: every call fails with `Unavailable`, push channels end.
    Outage,
    /// Every call of everyone is slowed, before the store applies it or on the reply: some calls
    /// outlive `operation_timeout`.
    Latency,
    /// The next few replies of one operation are lost (the store applied the call, the caller gets
    /// an error).
    LostReplies,
    /// One participant's next `release` or `renew` reaches the store a second time, late (a
    /// client-side retry, or a delayed duplicate): the store must ignore it once the lease has
    /// moved on.
    Duplicate,
    /// One participant's health check flaps between unhealthy and healthy.
    HealthFlap,
    /// One subscriber of one participant stops reading its `changes()` stream for a while (its
    /// buffer overflows when enough happens meanwhile).
    SubscriberStall,
    /// Real servers only (through the fault proxy): one participant's connections are reset.
    ConnectionReset,
}

impl FaultKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Stop,
        FaultKind::Release,
        FaultKind::Drop,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Suspend,
        FaultKind::Outage,
        FaultKind::Latency,
        FaultKind::LostReplies,
        FaultKind::Duplicate,
        FaultKind::HealthFlap,
        FaultKind::SubscriberStall,
        FaultKind::ConnectionReset,
    ];

    /// The kinds that need no fault proxy (every kind but [`ConnectionReset`](Self::ConnectionReset)).
    pub const WITHOUT_PROXY: [FaultKind; 12] = [
        FaultKind::Stop,
        FaultKind::Release,
        FaultKind::Drop,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Suspend,
        FaultKind::Outage,
        FaultKind::Latency,
        FaultKind::LostReplies,
        FaultKind::Duplicate,
        FaultKind::HealthFlap,
        FaultKind::SubscriberStall,
    ];

    /// A short snake_case name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Stop => "stop",
            FaultKind::Release => "release",
            FaultKind::Drop => "drop",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Suspend => "suspend",
            FaultKind::Outage => "outage",
            FaultKind::Latency => "latency",
            FaultKind::LostReplies => "lost_replies",
            FaultKind::Duplicate => "duplicate",
            FaultKind::HealthFlap => "health_flap",
            FaultKind::SubscriberStall => "subscriber_stall",
            FaultKind::ConnectionReset => "connection_reset",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a participant does with its leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkStyle {
    /// No `run_as_leader` work: it only holds the lease.
    None,
    /// Work that stops at `lost()` (or when it is done).
    Cooperative,
    /// Work that ignores `lost()`: it is dropped after its grace.
    Stubborn,
    /// Cooperative work that calls `release()` from inside itself and then runs on a little.
    ReleasesItself,
    /// Cooperative work that calls `stop()` from inside itself and then runs on a little; the
    /// application starts the election again.
    StopsItself,
    /// Manual mode: never `start()`ed; the application calls `try_acquire()` about every
    /// `renew_interval` (to campaign and to renew), runs cooperative work (stopping at `lost()`)
    /// under each tenure, and now and then calls `release()`.
    Manual,
}

impl WorkStyle {
    fn name(self) -> &'static str {
        match self {
            WorkStyle::None => "no work",
            WorkStyle::Cooperative => "cooperative work",
            WorkStyle::Stubborn => "stubborn work",
            WorkStyle::ReleasesItself => "work that releases itself",
            WorkStyle::StopsItself => "work that stops the election from inside",
            WorkStyle::Manual => "manual mode",
        }
    }
}

/// One participant slot of a schedule. A crash or drop ends the slot's participant; the slot's
/// next participant (a new `Election`, a new store handle) has the same role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its work.
    pub work: WorkStyle,
    /// How many `changes()` subscribers it has besides the checker's own.
    pub subscribers: usize,
    /// When it starts.
    pub start: Duration,
}

/// The extra parameters of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// None.
    None,
    /// [`FaultKind::Latency`]: how much, on which calls, and whether on the reply (after the
    /// store applied the call) instead of before the call.
    Latency {
        /// The added latency.
        by: Duration,
        /// On the reply.
        reply: bool,
        /// Only calls of this operation (`None`: every call).
        op: Option<Op>,
    },
    /// [`FaultKind::LostReplies`]: which operation, how many replies.
    Lost {
        /// The operation.
        op: Op,
        /// How many of its replies.
        count: u64,
    },
    /// [`FaultKind::Duplicate`]: which operation, and how late the duplicate arrives.
    Duplicate {
        /// The operation.
        op: Op,
        /// How long after the call its duplicate reaches the store.
        delay: Duration,
    },
    /// [`FaultKind::HealthFlap`]: how many times the check turns unhealthy within the fault.
    Flaps(u32),
}

/// One fault of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When it begins, from the start of the run.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// The participant slot it hits (ignored by store-wide faults).
    pub target: usize,
    /// [`FaultKind::SubscriberStall`]: which of the slot's subscribers.
    pub subscriber: usize,
    /// How long it lasts (for stop, drop and crash: until the slot runs again).
    pub length: Duration,
    /// Its parameters.
    pub detail: Detail,
}

impl Fault {
    /// When its effect is over (nominally: a restart may wait for a slow `stop()`).
    pub fn end(&self) -> Duration {
        self.at + self.length
    }

    fn store_wide(&self) -> bool {
        matches!(self.kind, FaultKind::Outage | FaultKind::Latency | FaultKind::LostReplies)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8} ", secs(self.at))?;
        let who = if self.store_wide() { "store".to_owned() } else { format!("p{}", self.target) };
        match (self.kind, self.detail) {
            (FaultKind::Release, _) => write!(f, "{who} release"),
            (FaultKind::Stop, _) => write!(f, "{who} stop, start again after {}", secs(self.length)),
            (FaultKind::Drop | FaultKind::Crash, _) => {
                write!(f, "{who} {}, a new participant after {}", self.kind, secs(self.length))
            }
            (FaultKind::Latency, Detail::Latency { by, reply, op }) => write!(
                f,
                "{who} latency {} {} {} for {}",
                secs(by),
                if reply { "on replies of" } else { "before" },
                op.map_or("every call".to_owned(), |op| format!("{} calls", op.as_str())),
                secs(self.length)
            ),
            (FaultKind::LostReplies, Detail::Lost { op, count }) => {
                write!(f, "{who} loses the next {count} {} replies (for at most {})", op.as_str(), secs(self.length))
            }
            (FaultKind::Duplicate, Detail::Duplicate { op, delay }) => write!(
                f,
                "{who}'s next {} call (within {}) reaches the store again {} later",
                op.as_str(),
                secs(self.length.saturating_sub(delay)),
                secs(delay)
            ),
            (FaultKind::HealthFlap, Detail::Flaps(n)) => {
                write!(f, "{who} health flaps {n} times over {}", secs(self.length))
            }
            (FaultKind::SubscriberStall, _) => {
                write!(f, "{who} subscriber {} stalls for {}", self.subscriber, secs(self.length))
            }
            (kind, _) => write!(f, "{who} {kind} for {}", secs(self.length)),
        }
    }
}

/// A whole run's plan: the participants and the faults, from one seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was made from.
    pub seed: u64,
    /// One role per participant slot.
    pub roles: Vec<Role>,
    /// The faults, by start time.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// The schedule of `seed` under `config`.
    pub fn generate(seed: u64, config: &SimConfig) -> Schedule {
        let mut rng = fastrand::Rng::with_seed(seed);
        let o = &config.options;
        let lease = o.lease_duration;
        let between = |rng: &mut fastrand::Rng, lo: Duration, hi: Duration| -> Duration {
            let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
            Duration::from_millis(rng.u64(lo..=hi.max(lo)))
        };
        let n = rng.usize(config.participants.clone());
        let roles = (0..n)
            .map(|_| Role {
                work: match rng.u8(0..10) {
                    0 => WorkStyle::None,
                    1..=3 => WorkStyle::Cooperative,
                    4..=6 => WorkStyle::Stubborn,
                    7 => WorkStyle::ReleasesItself,
                    8 => WorkStyle::StopsItself,
                    _ => WorkStyle::Manual,
                },
                subscribers: rng.usize(1..=2),
                start: between(&mut rng, Duration::ZERO, lease / 2),
            })
            .collect::<Vec<_>>();
        let kinds = if config.kinds.is_empty() { FaultKind::WITHOUT_PROXY.to_vec() } else { config.kinds.clone() };
        let count = rng.usize(config.faults.clone());
        let mut faults = Vec::with_capacity(count);
        for i in 0..count {
            let drawn = rng.usize(..kinds.len());
            let kind = if config.cycle_kinds { kinds[(seed as usize * 5 + i) % kinds.len()] } else { kinds[drawn] };
            let at = between(&mut rng, lease / 2, config.fault_window);
            let target = rng.usize(..n);
            let mut fault = Fault { at, kind, target, subscriber: 0, length: Duration::ZERO, detail: Detail::None };
            match kind {
                FaultKind::Release => {}
                FaultKind::Stop => fault.length = between(&mut rng, Duration::ZERO, lease * 2),
                FaultKind::Drop | FaultKind::Crash => fault.length = between(&mut rng, lease / 5, lease * 3),
                FaultKind::Pause => fault.length = between(&mut rng, lease / 5, lease * 5 / 2),
                FaultKind::Suspend => fault.length = between(&mut rng, lease / 10, lease * 2),
                FaultKind::Outage => fault.length = between(&mut rng, lease / 5, lease * 3),
                FaultKind::Latency => {
                    fault.length = between(&mut rng, lease / 2, lease * 3);
                    let op = match rng.u8(0..6) {
                        0 => Some(Op::Release),
                        1 => Some(Op::Renew),
                        2 => Some(Op::TryAcquire),
                        _ => None,
                    };
                    fault.detail = Detail::Latency {
                        by: between(&mut rng, o.operation_timeout / 8, o.operation_timeout * 3 / 2),
                        reply: rng.bool(),
                        op,
                    };
                }
                FaultKind::LostReplies => {
                    fault.length = between(&mut rng, lease / 2, lease * 3);
                    let op = [Op::TryAcquire, Op::Renew, Op::Release, Op::Current][rng.usize(..4)];
                    fault.detail = Detail::Lost { op, count: rng.u64(1..=3) };
                }
                FaultKind::Duplicate => {
                    // Armed for the first half of the fault, delivered within the second.
                    fault.length = between(&mut rng, lease / 2, lease * 4);
                    let op = if rng.bool() { Op::Release } else { Op::Renew };
                    fault.detail = Detail::Duplicate { op, delay: between(&mut rng, lease / 10, fault.length / 2) };
                }
                FaultKind::HealthFlap => {
                    fault.length = between(&mut rng, lease / 3, lease * 3);
                    fault.detail = Detail::Flaps(rng.u32(1..=4));
                }
                FaultKind::SubscriberStall => {
                    fault.length = between(&mut rng, lease, lease * 6);
                    fault.subscriber = rng.usize(..roles[target].subscribers);
                }
                FaultKind::ConnectionReset => fault.length = between(&mut rng, Duration::ZERO, lease / 10),
            }
            faults.push(fault);
        }
        faults.sort_by_key(|f| f.at);
        Schedule { seed, roles, faults }
    }

    /// When the last fault is over, nominally.
    pub fn heal(&self) -> Duration {
        self.faults.iter().map(Fault::end).chain(self.roles.iter().map(|r| r.start)).max().unwrap_or_default()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.roles.iter().enumerate() {
            writeln!(
                f,
                "{:>8} p{i} starts ({}, {} subscriber{})",
                secs(r.start),
                r.work.name(),
                r.subscribers,
                if r.subscribers == 1 { "" } else { "s" }
            )?;
        }
        for fault in &self.faults {
            writeln!(f, "{fault}")?;
        }
        Ok(())
    }
}

/// `1.234s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
