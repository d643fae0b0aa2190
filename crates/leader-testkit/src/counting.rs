//! [`OpCounter`]: counts store calls per operation, for bounds such as "store ops per failover".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leader_core::layer::{Intercept, InterceptLayer, LeaseStoreExt, Op};
use leader_core::LeaseStore;

/// An [`Intercept`] that counts calls per [`Op`]. Share one counter between many handles to count
/// what a whole fleet of participants asks of the store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use leader_core::{layer::Op, LeaseStore};
/// let counter = leader_testkit::OpCounter::new();
/// let store = counter.wrap(Arc::new(leader_memory::MemoryStore::new()));
/// store.current("jobs").await.unwrap();
/// assert_eq!(counter.get(Op::Current), 1);
/// assert_eq!(counter.total(), 1);
/// # }
/// ```
#[derive(Default)]
pub struct OpCounter {
    counts: [AtomicU64; 7],
}

fn index(op: Op) -> usize {
    Op::ALL.iter().position(|o| *o == op).unwrap_or(0)
}

impl OpCounter {
    /// A counter at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(OpCounter::default())
    }

    /// `store` wrapped so that its calls are counted here.
    pub fn wrap(self: &Arc<Self>, store: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        store.layer(InterceptLayer::new(self.clone()))
    }

    /// Calls of `op` so far.
    pub fn get(&self, op: Op) -> u64 {
        self.counts[index(op)].load(Ordering::SeqCst)
    }

    /// Calls of every op so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// Back to zero.
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::SeqCst);
        }
    }
}

impl Intercept for OpCounter {
    fn after(&self, op: Op, _election: &str, _ok: bool, _elapsed: Duration) {
        self.counts[index(op)].fetch_add(1, Ordering::SeqCst);
    }
}
