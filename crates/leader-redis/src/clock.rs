//! Deadlines in the server's time, so that an acquire or renew the caller has given up on changes
//! nothing when it reaches the server later: fred queues commands while it reconnects and writes
//! them again after a reconnect, and a TCP stream that stalls delivers what it holds once it
//! resumes. Each acquire and renew carries `deadline = now + budget` in the server's clock, and
//! the script answers `L` (too late) without touching anything once `TIME` is past it.
//!
//! The server's clock is estimated from the server times the scripts return (`TIME` in µs):
//! a reply received at local time `r` that says `s` gives `offset >= s - r` (the server read its
//! clock before we received the reply). The estimate is the largest such lower bound seen lately,
//! so a deadline is never later than `budget` after the send in the server's terms (only earlier,
//! by the best recent round trip, which errs toward refusing). Local time is a monotonic clock
//! (`Instant`), so a step of this host's wall clock changes nothing; a step of the server's clock
//! is corrected by the next reply. Samples older than [`REFRESH`] give way to any new one, so the
//! estimate follows slow drift between the two clocks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the best sample is kept before any newer sample replaces it.
const REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct ServerClock {
    base: Instant,
    best: Mutex<Option<Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Server µs minus local µs (since `base`).
    offset: i64,
    taken: Instant,
}

impl ServerClock {
    pub(crate) fn new() -> Self {
        ServerClock { base: Instant::now(), best: Mutex::new(None) }
    }

    fn local_us(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(i64::MAX)
    }

    /// Records a server time (µs since the Unix epoch) just received.
    pub(crate) fn observe(&self, server_us: u64) {
        let now = Instant::now();
        let Ok(server) = i64::try_from(server_us) else { return };
        let offset = server - self.local_us(now);
        let mut best = self.best.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let replace = match *best {
            None => true,
            Some(b) => offset >= b.offset || now.saturating_duration_since(b.taken) > REFRESH,
        };
        if replace {
            *best = Some(Sample { offset, taken: now });
        }
    }

    /// The server time (µs) `budget` from now, or 0 (no deadline) before the first sample.
    pub(crate) fn deadline(&self, budget: Duration) -> u64 {
        let best = *self.best.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(b) = best else { return 0 };
        let budget = i64::try_from(budget.as_micros()).unwrap_or(i64::MAX);
        let at = self.local_us(Instant::now()).saturating_add(b.offset).saturating_add(budget);
        u64::try_from(at).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_deadline_before_a_sample_then_budget_after_the_best_bound() {
        let clock = ServerClock::new();
        assert_eq!(clock.deadline(Duration::from_millis(100)), 0);
        let server_now = 1_700_000_000_000_000u64;
        clock.observe(server_now);
        let d = clock.deadline(Duration::from_millis(100));
        assert!(d >= server_now + 100_000 && d < server_now + 150_000, "{d}");
        // A sample from a slow reply (smaller offset) does not lower the estimate ...
        clock.observe(server_now - 500_000);
        assert!(clock.deadline(Duration::from_millis(100)) >= d);
        // ... a better one raises it.
        clock.observe(server_now + 1_000_000);
        assert!(clock.deadline(Duration::from_millis(100)) >= server_now + 1_100_000);
    }
}
