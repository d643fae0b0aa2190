//! The reaper: gives up a tenure of this handle that was not renewed within its TTL.
//!
//! Followers may take over a lease past its expiry anyway (see the crate docs); the reaper makes
//! that prompt and tidy when the holder's process still runs: a leader whose `Election` was
//! dropped without `stop()`, or whose renewals fail, releases at the tenure's due time, which
//! closes its FIFO and wakes the followers' waiters at once.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::{lock, Slots};

/// One thread per store handle, started with its first tenure, stopped with the handle.
pub(crate) struct Reaper {
    slots: Arc<Slots>,
    ctl: Arc<Ctl>,
    /// The thread, once started.
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Ctl {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    stop: bool,
    /// Set by `kick`: a due time may have moved earlier; recompute.
    kicked: bool,
}

impl Reaper {
    pub(crate) fn new(slots: Arc<Slots>) -> Self {
        Reaper { slots, ctl: Arc::new(Ctl::default()), thread: Mutex::new(None) }
    }

    /// A tenure was created or its due time changed.
    pub(crate) fn kick(&self) {
        {
            let mut thread = lock(&self.thread);
            if thread.is_none() {
                let (slots, ctl) = (self.slots.clone(), self.ctl.clone());
                match std::thread::Builder::new().name("leader-fs-reaper".into()).spawn(move || run(&slots, &ctl)) {
                    Ok(t) => *thread = Some(t),
                    Err(e) => {
                        tracing::error!(error = %e, "leader-fs: cannot start the reaper; unrenewed leases are kept until this store is dropped");
                        return;
                    }
                }
            }
        }
        lock(&self.ctl.state).kicked = true;
        self.ctl.cv.notify_all();
    }

    /// Stops the thread and waits for it to exit (it is woken at once).
    pub(crate) fn stop(&self) {
        lock(&self.ctl.state).stop = true;
        self.ctl.cv.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Releases every tenure past its due time; returns the earliest due time left.
fn reap(slots: &Slots) -> Option<Instant> {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    for slot in slots.all() {
        let mut slot = lock(&slot);
        match slot.tenure.as_ref().map(|t| t.due) {
            Some(due) if due <= now => {
                if let Some(t) = slot.tenure.take() {
                    t.release("not renewed within its TTL");
                }
            }
            Some(due) => next = Some(next.map_or(due, |n| n.min(due))),
            None => {}
        }
        // Lost tenures kept locked until their due time (see `Inner::lose`).
        slot.lingering.retain(|t| t.due > now);
        for t in &slot.lingering {
            next = Some(next.map_or(t.due, |n| n.min(t.due)));
        }
    }
    next
}

fn run(slots: &Slots, ctl: &Ctl) {
    loop {
        let next = reap(slots);
        let mut state = lock(&ctl.state);
        while !state.stop && !state.kicked {
            let wait = match next {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if wait.is_zero() {
                break;
            }
            state = ctl.cv.wait_timeout(state, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            if next.is_some_and(|at| at <= Instant::now()) {
                break;
            }
        }
        if state.stop {
            return;
        }
        state.kicked = false;
    }
}
