//! Shared helpers for the driver tests: a memory store behind a controllable hook.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leader_core::layer::{Intercept, Intercepted, Op};
use leader_core::{Election, ElectionOptions, Error, LeaseStore, Result};
use leader_memory::MemoryStore;
use tokio::sync::Notify;

/// Counts calls per op and can make every call hang or fail.
#[derive(Default)]
pub struct Control {
    pub renews: AtomicU64,
    pub acquires: AtomicU64,
    pub calls: AtomicU64,
    pub hang: AtomicBool,
    pub down: AtomicBool,
    pub unhang: Notify,
    pub withdraws: AtomicU64,
    /// Delay added before each release.
    pub release_delay_ms: AtomicU64,
    /// Delay added before each renew.
    pub renew_delay_ms: AtomicU64,
}

impl Control {
    pub fn renews(&self) -> u64 {
        self.renews.load(Ordering::SeqCst)
    }
    pub fn set_hang(&self, on: bool) {
        self.hang.store(on, Ordering::SeqCst);
        if !on {
            self.unhang.notify_waiters();
        }
    }
    pub fn set_down(&self, on: bool) {
        self.down.store(on, Ordering::SeqCst);
    }
}

#[leader_core::async_trait]
impl Intercept for Control {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match op {
            Op::Renew => self.renews.fetch_add(1, Ordering::SeqCst),
            Op::TryAcquire => self.acquires.fetch_add(1, Ordering::SeqCst),
            Op::Withdraw => self.withdraws.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let delay = match op {
            Op::Release => self.release_delay_ms.load(Ordering::SeqCst),
            Op::Renew => self.renew_delay_ms.load(Ordering::SeqCst),
            _ => 0,
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("injected outage"));
        }
        while self.hang.load(Ordering::SeqCst) {
            let wait = self.unhang.notified();
            if !self.hang.load(Ordering::SeqCst) {
                break;
            }
            wait.await;
        }
        Ok(())
    }
}

pub const LEASE: Duration = Duration::from_secs(3);

pub fn options() -> ElectionOptions {
    ElectionOptions::from_lease(LEASE)
}

/// A memory store and a controlled view of it.
pub fn stores() -> (MemoryStore, Arc<Control>, Arc<dyn LeaseStore>) {
    let memory = MemoryStore::new();
    let control = Arc::new(Control::default());
    let wrapped: Arc<dyn LeaseStore> = Arc::new(Intercepted::new(Arc::new(memory.clone()), control.clone()));
    (memory, control, wrapped)
}

pub fn election(store: Arc<dyn LeaseStore>, id: &str) -> Election {
    Election::new(store, "jobs", id, options()).expect("valid election")
}
