//! [`Leadership`]: one tenure, with a local deadline that fires on time by itself, and the count
//! of `run_as_leader` work running under it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::{SuspendClock, SUSPEND_CHECK};
use crate::{FencingToken, Lease};

/// When an acquire or renew was sent, on both clocks the deadline is judged by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) sent: Instant,
    /// [`SuspendClock::suspended`] at `sent`.
    pub(crate) suspended: Duration,
}

/// Where a tenure's local deadline stands.
#[derive(Debug, Clone, Copy)]
struct TenureClock {
    /// The instant the last successful acquire/renew was *sent*, plus `renew_deadline`, on the
    /// monotonic clock.
    deadline: Instant,
    /// The suspend clock when that request was sent: time suspended since then comes off the
    /// deadline.
    suspended_at: Duration,
    /// Set when the tenure ended (at its deadline or before).
    ended: Option<Ended>,
}

#[derive(Debug, Clone, Copy)]
struct Ended {
    /// When it ended; never later than the deadline.
    at: Instant,
    /// The store said the lease is gone (a renew answered "not yours"): work gets no grace.
    gone: bool,
}

struct TenureInner {
    token: FencingToken,
    started: Instant,
    lease: Mutex<Lease>,
    clock: watch::Sender<TenureClock>,
    suspend: Arc<dyn SuspendClock>,
    /// How long work may run after the tenure ended (unless the lease is gone):
    /// `lease_duration - renew_deadline - drift_allowance`.
    grace: Duration,
    /// `run_as_leader` work running under this tenure.
    works: watch::Sender<usize>,
    /// Whether the lease has been (or is being) released in the store by a hand-over.
    released: AtomicBool,
}

/// The lease this participant holds now: one tenure, from one acquisition to its loss.
///
/// Cheap to clone. It stays valid until [`valid_until`](Leadership::valid_until); renewals move
/// that deadline. [`lost`](Leadership::lost) completes when the tenure ends, by sleeping until the
/// deadline itself, so it fires on time even when the election's background task is stuck.
///
/// ```no_run
/// # async fn demo(election: leader_core::Election) -> leader_core::Result<()> {
/// let leadership = election.wait_for_leadership().await?;
/// println!("leading with token {}", leadership.token());
/// tokio::select! {
///     _ = leadership.lost() => println!("lost it; stop writing"),
///     _ = do_work(leadership.token()) => {}
/// }
/// # Ok(()) }
/// # async fn do_work(_: leader_core::FencingToken) {}
/// ```
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<TenureInner>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("token", &self.inner.token).field("valid", &self.is_valid()).finish()
    }
}

impl Leadership {
    pub(crate) fn new(
        lease: Lease,
        stamp: Stamp,
        renew_deadline: Duration,
        grace: Duration,
        suspend: Arc<dyn SuspendClock>,
    ) -> Self {
        let clock = TenureClock { deadline: stamp.sent + renew_deadline, suspended_at: stamp.suspended, ended: None };
        Leadership {
            inner: Arc::new(TenureInner {
                token: lease.token,
                started: Instant::now(),
                lease: Mutex::new(lease),
                clock: watch::Sender::new(clock),
                suspend,
                grace,
                works: watch::Sender::new(0),
                released: AtomicBool::new(false),
            }),
        }
    }

    /// The fencing token of this tenure: pass it to every write the leader makes.
    pub fn token(&self) -> FencingToken {
        self.inner.token
    }

    /// When this tenure began (local clock).
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// The lease as last acquired or renewed.
    pub fn info(&self) -> Lease {
        lock(&self.inner.lease).clone()
    }

    /// The deadline as it stands now: the monotonic deadline, less the time the host spent
    /// suspended since the request it counts from was sent.
    fn deadline_of(&self, c: &TenureClock) -> Instant {
        let slept = self.inner.suspend.suspended().saturating_sub(c.suspended_at);
        if slept.is_zero() {
            return c.deadline;
        }
        c.deadline.checked_sub(slept).unwrap_or_else(Instant::now).min(c.deadline)
    }

    /// The local deadline: (the instant the last successful acquire or renew was sent) +
    /// `renew_deadline` (less any time the host spent suspended since), or the instant the tenure
    /// ended if it ended earlier.
    pub fn valid_until(&self) -> Instant {
        let c = *self.inner.clock.borrow();
        let deadline = self.deadline_of(&c);
        c.ended.map_or(deadline, |e| e.at.min(deadline))
    }

    /// Whether the tenure still holds now (guarantee 3: computed, not cached).
    pub fn is_valid(&self) -> bool {
        let c = *self.inner.clock.borrow();
        c.ended.is_none() && Instant::now() < self.deadline_of(&c)
    }

    /// Completes when this tenure ends: at its local deadline, or at once when it is released,
    /// stopped or found lost. Cancel-safe; many callers may wait at once.
    pub async fn lost(&self) {
        let mut rx = self.inner.clock.subscribe();
        loop {
            let c = *rx.borrow_and_update();
            let deadline = self.deadline_of(&c);
            let now = Instant::now();
            if c.ended.is_some() || now >= deadline {
                return;
            }
            // Wake at the deadline, and now and then before it to notice a host suspend (the
            // monotonic timer does not count the time the host slept).
            let wake = deadline.min(now + SUSPEND_CHECK);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Moves the deadline after a successful renew sent at `stamp`. Atomic with the validity
    /// check: a renew whose answer arrives after the tenure ended (or its deadline passed) does
    /// not revive it. False if the tenure had already ended.
    pub(crate) fn extend(&self, lease: Lease, stamp: Stamp, renew_deadline: Duration) -> bool {
        let mut accepted = false;
        self.inner.clock.send_if_modified(|c| {
            let current = self.deadline_of(c);
            if c.ended.is_some() || Instant::now() >= current {
                return false;
            }
            accepted = true;
            let next =
                TenureClock { deadline: stamp.sent + renew_deadline, suspended_at: stamp.suspended, ended: None };
            if self.deadline_of(&next) > current {
                *c = next;
                return true;
            }
            false
        });
        if accepted {
            *lock(&self.inner.lease) = lease;
        }
        accepted
    }

    pub(crate) fn set_info(&self, lease: Lease) {
        *lock(&self.inner.lease) = lease;
    }

    /// Ends the tenure now; `gone`: the store said the lease is no longer ours, so work gets no
    /// grace. False if it had already ended.
    pub(crate) fn end(&self, gone: bool) -> bool {
        let mut first = false;
        self.inner.clock.send_if_modified(|c| {
            if c.ended.is_some() {
                return false;
            }
            let at = Instant::now().min(self.deadline_of(c));
            c.ended = Some(Ended { at, gone });
            first = true;
            true
        });
        first
    }

    /// When work under this tenure must be gone: at once if the store said the lease is gone,
    /// else `lease_duration - renew_deadline - drift_allowance` after the tenure ended (or after
    /// its deadline, if it has not been ended yet).
    pub(crate) fn work_deadline(&self) -> Instant {
        let c = *self.inner.clock.borrow();
        match c.ended {
            Some(Ended { at, gone: true }) => at,
            Some(Ended { at, gone: false }) => at + self.inner.grace,
            None => self.deadline_of(&c) + self.inner.grace,
        }
    }

    /// Counts one piece of work under this tenure until the guard drops.
    pub(crate) fn enter_work(&self) -> WorkGuard {
        self.inner.works.send_modify(|n| *n += 1);
        WorkGuard { tenure: self.clone() }
    }

    /// Waits until no work other than `own` (0 or 1: the caller's own work) runs under this
    /// tenure, or until `until`. Returns whether the work ended.
    pub(crate) async fn works_ended(&self, own: usize, until: Instant) -> bool {
        let mut rx = self.inner.works.subscribe();
        let ended = tokio::time::timeout_at(until, rx.wait_for(|n| *n <= own)).await;
        matches!(ended, Ok(Ok(_))) || *self.inner.works.borrow() <= own
    }

    /// Whether work runs under this tenure now.
    pub(crate) fn has_work(&self) -> bool {
        *self.inner.works.borrow() > 0
    }

    /// Claims the duty to release this tenure's lease in the store: true for the first caller.
    pub(crate) fn claim_release(&self) -> bool {
        !self.inner.released.swap(true, Ordering::SeqCst)
    }

    /// An id for this tenure, for the task-local that marks code running inside its work.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    pub(crate) fn same(&self, other: &Leadership) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// One `run_as_leader` work in progress under a tenure; see [`Leadership::enter_work`].
pub(crate) struct WorkGuard {
    tenure: Leadership,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.tenure.inner.works.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Locks a std mutex, recovering from poisoning (our critical sections never leave state half-set).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
