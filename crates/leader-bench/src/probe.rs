//! [`Probe`]: the counting and timing [`Intercept`] the idle-cost, many-elections and handoff
//! sections put around the store, and the switch that hides the store's push channel.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use leader::layer::{Intercept, InterceptLayer, LeaseStoreExt, Op};
use leader::LeaseStore;

/// Counts every store call by operation (and `watch` subscriptions), keeps the latency of renews,
/// and can make the store look push-less.
pub struct Probe {
    calls: [AtomicU64; Op::ALL.len()],
    errors: AtomicU64,
    watches: AtomicU64,
    // Never reset: a call whose future is dropped (the election's `operation_timeout`) runs
    // `before` but never `after`, so the difference, read once everything has stopped, is the
    // number of abandoned calls.
    started_total: AtomicU64,
    completed_total: AtomicU64,
    allow_watch: AtomicBool,
    renew_latency: Mutex<Vec<Duration>>,
}

/// What a [`Probe`] counted since its last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls per operation name (`try_acquire`, `renew`, ...), including failed ones.
    pub by_op: BTreeMap<&'static str, u64>,
    /// `watch` subscriptions (not store calls on every store, but a request on most).
    pub watches: u64,
    /// Calls that returned an error (a call abandoned on the caller's timeout is not among them:
    /// see [`Probe::abandoned`]).
    pub errors: u64,
}

impl Counts {
    /// Store calls of every operation, `watch` subscriptions not included.
    pub fn total(&self) -> u64 {
        self.by_op.values().sum()
    }
}

impl Probe {
    /// A probe that passes `watch` on when `push` is true, and hides it otherwise (callers poll).
    pub fn new(push: bool) -> Arc<Probe> {
        Arc::new(Probe {
            calls: Default::default(),
            errors: AtomicU64::new(0),
            watches: AtomicU64::new(0),
            started_total: AtomicU64::new(0),
            completed_total: AtomicU64::new(0),
            allow_watch: AtomicBool::new(push),
            renew_latency: Mutex::new(Vec::new()),
        })
    }

    /// `store` with this probe around it.
    pub fn wrap(self: &Arc<Self>, store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        store.layer(InterceptLayer::new(self.clone()))
    }

    /// Calls of `op` so far (completed ones: the count moves when the store has answered).
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[index(op)].load(Ordering::Acquire)
    }

    /// Everything counted since the last [`reset`](Probe::reset).
    pub fn counts(&self) -> Counts {
        Counts {
            by_op: Op::ALL.iter().map(|op| (op.as_str(), self.calls(*op))).collect(),
            watches: self.watches.load(Ordering::Acquire),
            errors: self.errors.load(Ordering::Acquire),
        }
    }

    /// Latencies of the renew calls (single or batch) observed since the last reset.
    pub fn renew_latencies(&self) -> Vec<Duration> {
        self.renew_latency.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Calls started but never finished since the probe was made: abandoned by the caller, in
    /// practice timed out by the election's `operation_timeout`. Exact once no call is in flight
    /// (after the elections using the store have stopped).
    pub fn abandoned(&self) -> u64 {
        self.started_total.load(Ordering::Acquire).saturating_sub(self.completed_total.load(Ordering::Acquire))
    }

    /// Starts a new window: every counter to zero, renew latencies forgotten.
    pub fn reset(&self) {
        for c in &self.calls {
            c.store(0, Ordering::Release);
        }
        self.errors.store(0, Ordering::Release);
        self.watches.store(0, Ordering::Release);
        self.renew_latency.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

fn index(op: Op) -> usize {
    Op::ALL.iter().position(|o| *o == op).unwrap_or(0)
}

#[leader::async_trait]
impl Intercept for Probe {
    async fn before(&self, _op: Op, _election: &str) -> leader::Result<()> {
        self.started_total.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn after(&self, op: Op, _election: &str, ok: bool, elapsed: Duration) {
        if matches!(op, Op::Renew | Op::RenewBatch) {
            self.renew_latency.lock().unwrap_or_else(PoisonError::into_inner).push(elapsed);
        }
        if !ok {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
        self.completed_total.fetch_add(1, Ordering::AcqRel);
        // Last, so that a reader who sees the count also sees the latency and error above.
        self.calls[index(op)].fetch_add(1, Ordering::AcqRel);
    }

    fn allow_watch(&self, _election: &str) -> bool {
        let allow = self.allow_watch.load(Ordering::Acquire);
        if allow {
            self.watches.fetch_add(1, Ordering::AcqRel);
        }
        allow
    }
}
