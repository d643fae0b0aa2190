//! [`Leadership`]: one tenure, with a local deadline that fires on time by itself.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::{FencingToken, Lease};

/// Where a tenure's local deadline stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TenureClock {
    /// The instant the last successful acquire/renew was *sent*, plus `renew_deadline`.
    pub(crate) deadline: Instant,
    /// Set when the tenure ended before its deadline (release, stop, store said "not yours").
    pub(crate) ended_at: Option<Instant>,
}

pub(crate) struct TenureInner {
    token: FencingToken,
    started: Instant,
    lease: Mutex<Lease>,
    clock: watch::Sender<TenureClock>,
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
    pub(crate) inner: Arc<TenureInner>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("token", &self.inner.token).field("valid", &self.is_valid()).finish()
    }
}

impl Leadership {
    pub(crate) fn new(lease: Lease, deadline: Instant) -> Self {
        let (clock, _) = watch::channel(TenureClock { deadline, ended_at: None });
        Leadership {
            inner: Arc::new(TenureInner {
                token: lease.token,
                started: Instant::now(),
                lease: Mutex::new(lease),
                clock,
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

    /// The local deadline: (the instant the last successful acquire or renew was sent) +
    /// `renew_deadline`, or the instant the tenure ended if it ended earlier.
    pub fn valid_until(&self) -> Instant {
        let c = *self.inner.clock.borrow();
        c.ended_at.map_or(c.deadline, |e| e.min(c.deadline))
    }

    /// Whether the tenure still holds now (guarantee 3: computed, not cached).
    pub fn is_valid(&self) -> bool {
        let c = *self.inner.clock.borrow();
        c.ended_at.is_none() && Instant::now() < c.deadline
    }

    /// Completes when this tenure ends: at its local deadline, or at once when it is released,
    /// stopped or found lost. Cancel-safe; many callers may wait at once.
    pub async fn lost(&self) {
        let mut rx = self.inner.clock.subscribe();
        loop {
            let c = *rx.borrow_and_update();
            if c.ended_at.is_some() || Instant::now() >= c.deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(c.deadline) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Moves the deadline after a successful renew; false if the tenure had already ended.
    pub(crate) fn extend(&self, lease: Lease, deadline: Instant) -> bool {
        if !self.is_valid() {
            return false;
        }
        *lock(&self.inner.lease) = lease;
        self.inner.clock.send_modify(|c| c.deadline = c.deadline.max(deadline));
        true
    }

    pub(crate) fn set_info(&self, lease: Lease) {
        *lock(&self.inner.lease) = lease;
    }

    /// Ends the tenure now; false if it had already ended.
    pub(crate) fn end(&self) -> bool {
        let mut first = false;
        self.inner.clock.send_modify(|c| {
            if c.ended_at.is_none() {
                c.ended_at = Some(Instant::now());
                first = true;
            }
        });
        first
    }

    pub(crate) fn same(&self, other: &Leadership) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Locks a std mutex, recovering from poisoning (our critical sections never leave state half-set).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
