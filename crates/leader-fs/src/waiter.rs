//! The push channel: one OS thread per (store, election) that waits in a blocking `flock` on the
//! tenure lock, so the kernel wakes it the instant the leader releases, is reaped, or dies.
//!
//! The thread is a plain `std::thread` (not `spawn_blocking`): it never delays a tokio runtime's
//! shutdown. While no watch stream is subscribed it sleeps on a condition variable and can be
//! stopped at once. While it waits in the kernel it cannot be interrupted (no signals in a
//! library): a stopped waiter exits the moment the lock is next released (at the latest when the
//! holder's process exits) and notifies nobody.
//!
//! Its cycle, while anyone subscribes:
//! 1. Probe the tenure lock under the guard (try-lock, unlock at once), so the probe is never seen
//!    by an acquirer, which takes the guard too.
//! 2. Held: wait for it in the kernel; when granted, unlock at once and notify (held → free).
//!    That momentary hold is outside the guard: an acquirer that meets it answers `Held`, and is
//!    notified again because its own waiter is still queued on the lock or probes it next.
//! 3. Free: nobody leads and nobody took it yet. Notify again after a backoff (10 ms doubling to
//!    1 s) while it stays free, so a follower whose attempt failed (an error, a momentary hold)
//!    tries again; notify when it is seen taken (a new leader), then go to 2.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use crate::lockfile::{self, Guard};
use crate::state::Paths;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A running waiter thread and the channel its notifications go out on.
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    rx: watch::Receiver<u64>,
}

#[derive(Default)]
struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
}

#[derive(Default)]
struct Ctl {
    subscribers: usize,
    stop: bool,
}

fn lock(m: &Mutex<Ctl>) -> std::sync::MutexGuard<'_, Ctl> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Blocks until someone subscribes; false if told to stop.
    fn wait_for_subscribers(&self) -> bool {
        let mut ctl = lock(&self.ctl);
        while ctl.subscribers == 0 && !ctl.stop {
            ctl = self.cv.wait(ctl).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !ctl.stop
    }

    /// Sleeps `d` unless told to stop; false if told to stop.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut ctl = lock(&self.ctl);
        while !ctl.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            ctl = self.cv.wait_timeout(ctl, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        false
    }

    fn stopped(&self) -> bool {
        lock(&self.ctl).stop
    }
}

impl Waiter {
    /// Starts the thread for the election whose files are `paths`.
    pub(crate) fn spawn(paths: Paths) -> std::io::Result<Waiter> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = watch::channel(0u64);
        let thread_shared = shared.clone();
        std::thread::Builder::new().name("leader-fs-waiter".into()).spawn(move || run(&paths, &thread_shared, &tx))?;
        Ok(Waiter { shared, rx })
    }

    /// Whether the thread still runs (a stream subscribed now would get its notifications).
    pub(crate) fn is_running(&self) -> bool {
        self.rx.has_changed().is_ok()
    }

    /// A stream that yields once per notification (several may merge) and ends when the thread
    /// stops.
    pub(crate) fn subscribe(&self) -> BoxStream<'static, ()> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        let sub = Subscription::new(self.shared.clone());
        stream::unfold((rx, sub), |(mut rx, sub)| async move {
            rx.changed().await.ok()?;
            Some(((), (rx, sub)))
        })
        .boxed()
    }

    /// Tells the thread to exit (at once if idle or backing off; after its kernel wait otherwise).
    pub(crate) fn stop(&self) {
        lock(&self.shared.ctl).stop = true;
        self.shared.cv.notify_all();
    }
}

/// Counts a live watch stream: the thread works only while there is one.
struct Subscription(Arc<Shared>);

impl Subscription {
    fn new(shared: Arc<Shared>) -> Self {
        lock(&shared.ctl).subscribers += 1;
        shared.cv.notify_all();
        Subscription(shared)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut ctl = lock(&self.0.ctl);
        ctl.subscribers = ctl.subscribers.saturating_sub(1);
    }
}

/// Whether the tenure lock is free right now, probed under the guard.
fn probe_free(paths: &Paths, file: &std::fs::File) -> leader_core::Result<bool> {
    let _guard = Guard::acquire(&paths.guard)?;
    let free = lockfile::try_lock(file).map_err(|e| crate::state::io_error("cannot probe", &paths.lock, e))?;
    if free {
        lockfile::unlock(file).map_err(|e| crate::state::io_error("cannot unlock", &paths.lock, e))?;
    }
    Ok(free)
}

fn run(paths: &Paths, shared: &Shared, tx: &watch::Sender<u64>) {
    let notify = || tx.send_modify(|n| *n = n.wrapping_add(1));
    let file = match lockfile::open(&paths.lock) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "leader-fs waiter cannot open the lock file; watch streams end");
            return;
        }
    };
    let mut backoff = MIN_BACKOFF;
    // What the last probe saw: None after idling (nothing to compare with).
    let mut was_free: Option<bool> = None;
    loop {
        {
            let idle = lock(&shared.ctl).subscribers == 0;
            if idle {
                was_free = None;
            }
        }
        if !shared.wait_for_subscribers() {
            return;
        }
        let free = match probe_free(paths, &file) {
            Ok(free) => free,
            Err(e) => {
                // A guard held too long (a stopped process) or an I/O error: end the streams, so
                // the followers poll and watch again later.
                tracing::warn!(error = %e, "leader-fs waiter stops; watch streams end");
                return;
            }
        };
        if was_free == Some(true) {
            // Still free (remind the followers) or taken since (a new leader): both are news.
            notify();
        }
        if free {
            was_free = Some(true);
            if !shared.sleep(backoff) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = MIN_BACKOFF;
        if let Err(e) = lockfile::lock(&file) {
            tracing::warn!(error = %e, path = %paths.lock.display(), "leader-fs waiter cannot wait for the lock");
            return;
        }
        // Hand the lock straight back: the waiter never leads, it only learns that the lock is free.
        if let Err(e) = lockfile::unlock(&file) {
            tracing::warn!(error = %e, path = %paths.lock.display(), "leader-fs waiter cannot unlock; it stops");
            return; // closing the file on return releases the lock
        }
        if shared.stopped() {
            return;
        }
        notify();
        // Give the woken followers a moment to take it before probing again.
        was_free = Some(true);
        if !shared.sleep(MIN_BACKOFF) {
            return;
        }
    }
}
