//! The push channel: one OS thread per (store handle, watched election) that follows the current
//! tenure and notifies the watch streams when it changes.
//!
//! While a holder lives the thread `poll(2)`s the tenure's FIFO (see `fifo.rs`): the kernel wakes
//! it the instant the holder releases, gives up or dies. The wait is bounded by the holder's expiry
//! (and [`MAX_WAIT`]), so a holder that stops renewing (a stopped process still holding its lock)
//! is noticed when its lease runs out, and it also watches a control socket, so dropping the store
//! wakes and ends the thread at once. The thread never blocks anywhere else: no kernel lock waits.
//!
//! It is a plain `std::thread` (not `spawn_blocking`), so it never delays a tokio runtime's
//! shutdown; without subscribers it sleeps in `poll` on the control socket alone.
//!
//! Notifications: when the tenure's phase changes (held → free, held → expired, a new tenure), and
//! again while the lease stays free or expired (after 10 ms, doubling to 1 s), so that a follower
//! whose attempt failed tries again.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use crate::clock::HostTime;
use crate::fifo::{self, Woken};
use crate::lockfile::{self, LockState};
use crate::state::{self, ElectionDir, Phase};

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait on a live holder's FIFO before looking again.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Longest wait on a live holder whose FIFO cannot be used (not there yet, or it woke us without
/// news): the lock is probed this often instead.
const POLL_WITHOUT_FIFO: Duration = Duration::from_millis(100);

/// A running waiter thread and the channel its notifications go out on.
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    rx: watch::Receiver<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    ctl: Mutex<Ctl>,
    /// A byte written here wakes the thread (its end is `run`'s `control`).
    wake: UnixStream,
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
    fn kick(&self) {
        // Non-blocking: a full buffer means a wake-up is pending anyway.
        let _ = (&self.wake).write(&[1]);
    }
}

impl Waiter {
    /// Starts the thread for the election in `dir`.
    pub(crate) fn spawn(dir: ElectionDir, boot_id: Option<String>) -> std::io::Result<Waiter> {
        let (wake, control) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        control.set_nonblocking(true)?;
        let shared = Arc::new(Shared { ctl: Mutex::new(Ctl::default()), wake });
        let (tx, rx) = watch::channel(0u64);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("leader-fs-waiter".into())
            .spawn(move || run(&dir, &boot_id, &thread_shared, &control, &tx))?;
        Ok(Waiter { shared, rx, thread: Mutex::new(Some(thread)) })
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

    /// Stops the thread and waits for it to exit (it is woken at once wherever it waits).
    pub(crate) fn stop(&self) {
        lock(&self.shared.ctl).stop = true;
        self.shared.kick();
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Counts a live watch stream: the thread works only while there is one.
struct Subscription(Arc<Shared>);

impl Subscription {
    fn new(shared: Arc<Shared>) -> Self {
        lock(&shared.ctl).subscribers += 1;
        shared.kick();
        Subscription(shared)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut ctl = lock(&self.0.ctl);
        ctl.subscribers = ctl.subscribers.saturating_sub(1);
    }
}

/// What the thread saw of the election: the tenure and its phase (the time left aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Free(Option<u64>),
    Live(u64),
    Expired(u64),
}

fn run(dir: &ElectionDir, boot_id: &Option<String>, shared: &Shared, control: &UnixStream, tx: &watch::Sender<u64>) {
    let notify = || tx.send_modify(|n| *n = n.wrapping_add(1));
    let mut backoff = MIN_BACKOFF;
    // What the last look saw: None after idling (nothing to compare with).
    let mut last: Option<Seen> = None;
    // A tenure whose FIFO woke us without news: its lock is probed instead, after a step that
    // starts at 1 ms (a dying holder's FIFO may close an instant before its lock is freed) and
    // grows to POLL_WITHOUT_FIFO (a system that reports a FIFO without writers as readable).
    let mut distrusted: Option<(u64, Duration)> = None;
    let mut woken_by_fifo = false;
    loop {
        loop {
            {
                let ctl = lock(&shared.ctl);
                if ctl.stop {
                    return;
                }
                if ctl.subscribers > 0 {
                    break;
                }
            }
            last = None;
            if let Err(e) = fifo::wait(None, control, None) {
                tracing::warn!(error = %e, "leader-fs waiter cannot wait; watch streams end");
                return;
            }
        }
        let current = match state::current(dir) {
            Ok(c) => c,
            Err(e) => {
                // An I/O error or a directory changing too fast: end the streams, so the followers
                // poll and watch again later.
                tracing::warn!(error = %e, "leader-fs waiter stops; watch streams end");
                return;
            }
        };
        let now = HostTime::now(boot_id);
        let (seen, left) = match &current {
            None => (Seen::Free(None), None),
            Some(c) => match c.phase(&now) {
                Phase::Free => (Seen::Free(Some(c.token)), None),
                Phase::Expired => (Seen::Expired(c.token), None),
                Phase::Live(left) => (Seen::Live(c.token), left),
            },
        };
        if woken_by_fifo && last == Some(seen) {
            if let Seen::Live(token) = seen {
                distrusted = Some((token, Duration::from_millis(1)));
            }
        }
        woken_by_fifo = false;
        let news = last.is_some_and(|l| l != seen);
        let was = last.replace(seen);
        match seen {
            Seen::Free(_) | Seen::Expired(_) => {
                // News, or a reminder while it stays so.
                if news || was == Some(seen) {
                    notify();
                }
                if was != Some(seen) {
                    backoff = MIN_BACKOFF;
                }
                match fifo::wait(None, control, Some(backoff)) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "leader-fs waiter cannot wait; watch streams end");
                        return;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Seen::Live(token) => {
                if news {
                    notify();
                }
                backoff = MIN_BACKOFF;
                if distrusted.is_some_and(|(t, _)| t != token) {
                    distrusted = None;
                }
                let reader = if distrusted.is_some() { None } else { fifo::open_reader(&dir.fifo(token)).ok() };
                if reader.is_some() {
                    // The holder may have gone between the look and the open (then the FIFO may
                    // never hang up): look again at once if its lock is not held now.
                    match lockfile::probe(&dir.claim(token)) {
                        Ok(LockState::Held) => {}
                        _ => continue,
                    }
                }
                let mut timeout = left.unwrap_or(MAX_WAIT).min(MAX_WAIT) + Duration::from_millis(1);
                if reader.is_none() {
                    let step = match &mut distrusted {
                        Some((_, step)) => {
                            let now = *step;
                            *step = (*step * 2).min(POLL_WITHOUT_FIFO);
                            now
                        }
                        None => POLL_WITHOUT_FIFO,
                    };
                    timeout = timeout.min(step);
                }
                match fifo::wait(reader.as_ref(), control, Some(timeout)) {
                    Ok(Woken::Channel) => woken_by_fifo = true,
                    Ok(Woken::Control | Woken::Timeout) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "leader-fs waiter cannot wait; watch streams end");
                        return;
                    }
                }
            }
        }
    }
}
