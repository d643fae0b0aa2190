//! The clocks a tenure's local deadline is judged by (guarantee 3).
//!
//! The deadline is kept on tokio's monotonic clock (`tokio::time::Instant`, which tests can pause).
//! That clock stops while the host is suspended, but the store's clock does not: a laptop lid
//! closed for a minute, or a VM paused by its hypervisor, comes back believing its deadline is
//! still ahead while the store has long expired the lease. So every check of the deadline also
//! reads a [`SuspendClock`]: how far the host's boot-time clock has run ahead of its monotonic
//! clock, which grows only while the host is suspended. Time spent suspended since the last
//! successful renew was sent is taken off the deadline.
//!
//! | platform | monotonic clock (tokio / std `Instant`) | boot-time clock compared with it |
//! |---|---|---|
//! | Linux, Android | `CLOCK_MONOTONIC` | `CLOCK_BOOTTIME` |
//! | OpenBSD | `CLOCK_MONOTONIC` | `CLOCK_BOOTTIME` |
//! | FreeBSD, DragonFly | `CLOCK_MONOTONIC` | `CLOCK_UPTIME` (FreeBSD: an alias of its boot time) |
//! | macOS, iOS | `CLOCK_UPTIME_RAW` (Rust's `Instant`) | `CLOCK_MONOTONIC`, which keeps counting in sleep |
//! | elsewhere (NetBSD, Fuchsia, Windows, ...) | the platform's `Instant` | none: a suspend is not detected |
//!
//! Where the two clocks count the same way (a platform that already counts suspend in its
//! monotonic clock) the difference stays zero and costs nothing. A suspend is noticed at the next
//! check: [`Leadership::lost`](crate::Leadership::lost) re-checks at least every
//! [`SUSPEND_CHECK`], so work may run for up to that long after the host resumes (fencing tokens
//! cover that window).

use std::sync::Arc;
use std::time::Duration;

/// How often a waiting [`Leadership::lost`](crate::Leadership::lost) re-reads the
/// [`SuspendClock`], so that a tenure that ran out while the host was suspended ends soon after
/// the host resumes.
pub const SUSPEND_CHECK: Duration = Duration::from_secs(1);

/// Time the host has spent suspended: how far its boot-time clock has run ahead of its monotonic
/// clock. Only differences between two readings matter.
///
/// The default ([`SystemSuspendClock`]) reads the platform's clocks (see the [module](self)
/// docs). Tests and simulations inject their own with
/// [`ElectionBuilder::suspend_clock`](crate::ElectionBuilder::suspend_clock) to make a host
/// "sleep" without sleeping:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use leader_core::clock::SuspendClock;
///
/// #[derive(Default)]
/// struct FakeSuspend(AtomicU64);
/// impl SuspendClock for FakeSuspend {
///     fn suspended(&self) -> Duration {
///         Duration::from_millis(self.0.load(Ordering::SeqCst))
///     }
/// }
/// let clock = FakeSuspend::default();
/// clock.0.store(5_000, Ordering::SeqCst); // the host "slept" 5 s
/// assert_eq!(clock.suspended(), Duration::from_secs(5));
/// ```
pub trait SuspendClock: Send + Sync + 'static {
    /// Total time spent suspended so far, from any origin: non-decreasing (up to read jitter of a
    /// few nanoseconds).
    fn suspended(&self) -> Duration;
}

/// The platform's clocks (see the [module](self) docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemSuspendClock;

impl SuspendClock for SystemSuspendClock {
    fn suspended(&self) -> Duration {
        platform::suspended()
    }
}

/// The clock elections use unless told otherwise.
pub(crate) fn system() -> Arc<dyn SuspendClock> {
    Arc::new(SystemSuspendClock)
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "openbsd",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "macos",
    target_os = "ios"
))]
mod platform {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use rustix::time::{clock_gettime, ClockId};

    /// The clock that keeps counting while the host sleeps; it is compared with std's `Instant`,
    /// the monotonic clock tokio's timers run on.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "openbsd"))]
    const BOOT: ClockId = ClockId::Boottime;
    #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
    const BOOT: ClockId = ClockId::Uptime;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    const BOOT: ClockId = ClockId::Monotonic;

    fn boot() -> Duration {
        let ts = clock_gettime(BOOT);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
        Duration::new(secs, nanos.min(999_999_999))
    }

    pub(super) fn suspended() -> Duration {
        static ORIGIN: OnceLock<(Duration, Instant)> = OnceLock::new();
        let (boot0, mono0) = *ORIGIN.get_or_init(|| (boot(), Instant::now()));
        // Boot time first: reading it before the monotonic clock can only make the difference
        // smaller (by the nanoseconds between the reads), so no suspend is ever invented.
        let boot_elapsed = boot().saturating_sub(boot0);
        let mono_elapsed = Instant::now().saturating_duration_since(mono0);
        boot_elapsed.saturating_sub(mono_elapsed)
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "openbsd",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "macos",
    target_os = "ios"
)))]
mod platform {
    pub(super) fn suspended() -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_does_not_invent_a_suspend() {
        let a = SystemSuspendClock.suspended();
        std::thread::sleep(Duration::from_millis(20));
        let b = SystemSuspendClock.suspended();
        // Between two reads on a running host the difference moves by read jitter only.
        assert!(b.abs_diff(a) < Duration::from_millis(5), "{a:?} -> {b:?}");
    }
}
