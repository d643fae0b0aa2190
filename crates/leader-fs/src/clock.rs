//! This host's clock for lease expiry: the boot id and `CLOCK_BOOTTIME`.
//!
//! A lease's expiry is stored as a `CLOCK_BOOTTIME` instant together with the boot id of the
//! kernel that measured it. `CLOCK_BOOTTIME` counts from boot, keeps counting during suspend, and
//! is never stepped by NTP or by an administrator setting the date; the boot id tells an instant of
//! this boot from one of a previous boot (whose holder cannot be alive any more).

use std::sync::OnceLock;
use std::time::Duration;

use leader_core::{Error, Result};

/// Where Linux publishes the id of the running boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The id of the running boot, read once per process (it only changes with a reboot, which ends
/// the process).
pub(crate) fn boot_id() -> Result<String> {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let raw = std::fs::read_to_string(BOOT_ID_PATH).map_err(|e| {
        Error::unsupported(format!(
            "cannot read the boot id from {BOOT_ID_PATH} ({e}); leader-fs needs Linux to judge lease expiry"
        ))
        .with_source(e)
    })?;
    let id = raw.trim().to_owned();
    if id.is_empty() {
        return Err(Error::unsupported(format!("{BOOT_ID_PATH} is empty; leader-fs needs the boot id")));
    }
    Ok(BOOT_ID.get_or_init(|| id).clone())
}

/// Nanoseconds since boot, suspend included (`CLOCK_BOOTTIME`).
pub(crate) fn boottime_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// One reading of this host's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostTime {
    /// The running boot.
    pub boot_id: String,
    /// `CLOCK_BOOTTIME` now, in nanoseconds.
    pub boottime_ns: u64,
}

impl HostTime {
    /// Now, in the boot `boot_id` (the store's cached [`boot_id`]).
    pub(crate) fn now(boot_id: &str) -> Self {
        HostTime { boot_id: boot_id.to_owned(), boottime_ns: boottime_ns() }
    }

    /// The `CLOCK_BOOTTIME` instant `ttl` from now.
    pub(crate) fn after(&self, ttl: Duration) -> u64 {
        self.boottime_ns.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// What a stored expiry means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Not expired: this much is left.
    Live(Duration),
    /// Expired this long ago, in this boot. The holder may still hold its lock (a paused process).
    Overdue(Duration),
    /// Written in a previous boot: its holder is certainly gone.
    OtherBoot,
}

/// Judges an expiry recorded as (`boot_id`, `expires_boottime_ns`) against `now`.
pub(crate) fn judge(boot_id: &str, expires_boottime_ns: u64, now: &HostTime) -> Liveness {
    if boot_id != now.boot_id {
        return Liveness::OtherBoot;
    }
    if expires_boottime_ns > now.boottime_ns {
        Liveness::Live(Duration::from_nanos(expires_boottime_ns - now.boottime_ns))
    } else {
        Liveness::Overdue(Duration::from_nanos(now.boottime_ns - expires_boottime_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> HostTime {
        HostTime { boot_id: "boot-a".into(), boottime_ns: ns }
    }

    #[test]
    fn live_before_expiry_with_the_time_left() {
        assert_eq!(judge("boot-a", 5_000_000_000, &at(2_000_000_000)), Liveness::Live(Duration::from_secs(3)));
    }

    #[test]
    fn overdue_at_and_after_expiry() {
        assert_eq!(judge("boot-a", 5_000, &at(5_000)), Liveness::Overdue(Duration::ZERO));
        assert_eq!(judge("boot-a", 5_000_000_000, &at(7_000_000_000)), Liveness::Overdue(Duration::from_secs(2)));
    }

    #[test]
    fn a_lease_of_a_previous_boot_is_dead_whatever_its_numbers() {
        // After a reboot CLOCK_BOOTTIME starts again near zero, so the old expiry looks far away.
        assert_eq!(judge("boot-old", u64::MAX, &at(1_000)), Liveness::OtherBoot);
        assert_eq!(judge("boot-old", 0, &at(1_000)), Liveness::OtherBoot);
    }

    #[test]
    fn after_saturates() {
        assert_eq!(at(u64::MAX - 1).after(Duration::from_secs(1)), u64::MAX);
        assert_eq!(at(1).after(Duration::from_nanos(2)), 3);
    }

    #[test]
    fn boottime_is_monotonic_and_the_boot_id_readable() {
        let id = boot_id().expect("Linux publishes a boot id");
        assert_eq!(id.len(), 36, "boot id {id:?} should be a UUID");
        let a = boottime_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = boottime_ns();
        assert!(b >= a + 1_000_000, "{a} -> {b}");
    }

    #[test]
    fn boottime_ignores_the_wall_clock() {
        // CLOCK_BOOTTIME >= CLOCK_MONOTONIC (it adds time spent suspended); neither is wall time.
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono_ns =
            u64::try_from(mono.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(mono.tv_nsec).unwrap_or(0);
        let boot = boottime_ns();
        assert!(boot >= mono_ns);
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        assert!(Duration::from_nanos(boot) < wall, "boottime counts from boot, not from 1970");
    }
}
