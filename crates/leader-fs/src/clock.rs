//! This host's clock for lease expiry.
//!
//! A record's expiry is an instant of one system-wide clock, named in the record, that every
//! participant of the host reads alike:
//!
//! - **Linux** (unless built with `--cfg leader_fs_portable`): `CLOCK_BOOTTIME`, together with the
//!   boot id of `/proc/sys/kernel/random/boot_id`. It counts from boot, keeps counting during
//!   suspend and is never stepped (NTP, `date -s`). The election core ends a tenure when either its
//!   monotonic clock or the boot-time clock says the local deadline has passed, so an expiry on
//!   `CLOCK_BOOTTIME` never passes before the holder's own deadline has.
//! - **Elsewhere** (macOS and the BSDs; Linux with the portable cfg): the clock behind
//!   `std::time::Instant` on that system, i.e. the clock the core's deadline runs on:
//!   `CLOCK_UPTIME_RAW` on Apple systems, `CLOCK_MONOTONIC` on the others. No boot id: a record
//!   of an earlier boot is recognised by its expiry lying further ahead than its own TTL (this
//!   boot's clock restarted from zero), and in any case its holder holds no lock any more, which
//!   is what frees the lease.

use std::time::Duration;

#[cfg(all(any(target_os = "linux", target_os = "android"), not(leader_fs_portable)))]
mod imp {
    use std::sync::OnceLock;

    use leader_core::{Error, Result};

    /// Name of the clock in records.
    pub(crate) const CLOCK: &str = "boottime";

    /// Where Linux publishes the id of the running boot.
    const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

    /// The id of the running boot, read once per process (it only changes with a reboot, which
    /// ends the process).
    pub(crate) fn boot_id() -> Result<Option<String>> {
        static BOOT_ID: OnceLock<String> = OnceLock::new();
        if let Some(id) = BOOT_ID.get() {
            return Ok(Some(id.clone()));
        }
        let raw = std::fs::read_to_string(BOOT_ID_PATH).map_err(|e| {
            Error::unsupported(format!(
                "cannot read the boot id from {BOOT_ID_PATH} ({e}); leader-fs on Linux needs /proc \
                 (or build it with --cfg leader_fs_portable)"
            ))
            .with_source(e)
        })?;
        let id = raw.trim().to_owned();
        if id.is_empty() {
            return Err(Error::unsupported(format!("{BOOT_ID_PATH} is empty; leader-fs needs the boot id")));
        }
        Ok(Some(BOOT_ID.get_or_init(|| id).clone()))
    }

    /// `CLOCK_BOOTTIME` now, in nanoseconds.
    pub(crate) fn now_ns() -> u64 {
        super::ns(rustix::time::clock_gettime(rustix::time::ClockId::Boottime))
    }
}

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(leader_fs_portable))))]
mod imp {
    use leader_core::Result;

    /// Name of the clock in records.
    #[cfg(target_vendor = "apple")]
    pub(crate) const CLOCK: &str = "uptime_raw";
    /// Name of the clock in records.
    #[cfg(not(target_vendor = "apple"))]
    pub(crate) const CLOCK: &str = "monotonic";

    /// No boot id on this path (see the module docs).
    pub(crate) fn boot_id() -> Result<Option<String>> {
        Ok(None)
    }

    /// `CLOCK_UPTIME_RAW` (what `std::time::Instant` reads on Apple systems) now, in nanoseconds.
    #[cfg(target_vendor = "apple")]
    pub(crate) fn now_ns() -> u64 {
        use nix::time::{clock_gettime, ClockId};
        match clock_gettime(ClockId::from_raw(nix::libc::CLOCK_UPTIME_RAW)) {
            Ok(ts) => super::secs_nanos(i64::from(ts.tv_sec()), i64::from(ts.tv_nsec())),
            // Cannot fail for a clock every supported macOS has; 0 would only make leases look
            // longer (never shorter).
            Err(_) => 0,
        }
    }

    /// `CLOCK_MONOTONIC` (what `std::time::Instant` reads on Linux and the BSDs) now, in
    /// nanoseconds.
    #[cfg(not(target_vendor = "apple"))]
    pub(crate) fn now_ns() -> u64 {
        super::ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic))
    }
}

pub(crate) use imp::{boot_id, now_ns, CLOCK};

#[allow(dead_code)] // unused on Apple systems
fn ns(ts: rustix::time::Timespec) -> u64 {
    #[allow(clippy::useless_conversion)] // the field widths differ between systems
    secs_nanos(i64::from(ts.tv_sec), i64::from(ts.tv_nsec))
}

fn secs_nanos(secs: i64, nanos: i64) -> u64 {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nanos = u64::try_from(nanos).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// One reading of this host's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostTime {
    /// The clock read ([`CLOCK`]).
    pub clock: &'static str,
    /// The running boot, where this path knows it.
    pub boot_id: Option<String>,
    /// The clock now, in nanoseconds.
    pub ns: u64,
}

impl HostTime {
    /// Now, in the boot `boot_id` (the store's cached [`boot_id`]).
    pub(crate) fn now(boot_id: &Option<String>) -> Self {
        HostTime { clock: CLOCK, boot_id: boot_id.clone(), ns: now_ns() }
    }

    /// The instant `ttl` from now, in nanoseconds.
    pub(crate) fn after(&self, ttl: Duration) -> u64 {
        self.ns.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// An expiry as a record stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expiry<'a> {
    /// The clock it is on.
    pub clock: &'a str,
    /// The boot it was measured in, where known.
    pub boot_id: Option<&'a str>,
    /// The instant, in nanoseconds of `clock`.
    pub ns: u64,
    /// The TTL it was set with: an expiry further ahead than this is not of this boot.
    pub ttl: Duration,
}

/// What a stored expiry means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Not expired: this much is left.
    Live(Duration),
    /// Expired this long ago, in this boot.
    Overdue(Duration),
    /// Measured in a previous boot (another boot id, or further ahead than its TTL): expired.
    OtherBoot,
    /// On a clock this build does not read (a record of a differently built participant): cannot
    /// be judged, so it never counts as expired.
    OtherClock,
}

impl Liveness {
    /// Whether the lease has run out (a holder that still holds its lock may be taken over).
    pub(crate) fn expired(self) -> bool {
        matches!(self, Liveness::Overdue(_) | Liveness::OtherBoot)
    }

    /// Time left, when known.
    pub(crate) fn left(self) -> Option<Duration> {
        match self {
            Liveness::Live(d) => Some(d),
            _ => None,
        }
    }
}

/// Slack for the "further ahead than its TTL" test (the TTL is stored in whole milliseconds).
const AHEAD_SLACK: Duration = Duration::from_secs(1);

/// Judges `expiry` against `now`, which must be read after the record holding `expiry` (else a
/// record written since that reading could look further ahead than its TTL).
pub(crate) fn judge(expiry: &Expiry<'_>, now: &HostTime) -> Liveness {
    if expiry.clock != now.clock {
        return Liveness::OtherClock;
    }
    if let (Some(theirs), Some(ours)) = (expiry.boot_id, now.boot_id.as_deref()) {
        if theirs != ours {
            return Liveness::OtherBoot;
        }
    }
    if expiry.ns > now.ns {
        let left = Duration::from_nanos(expiry.ns - now.ns);
        // Written at (now of then) + ttl with now of then <= now: never more than ttl ahead in
        // the same boot. More means the clock restarted since: a reboot.
        if left > expiry.ttl.saturating_add(AHEAD_SLACK) {
            return Liveness::OtherBoot;
        }
        Liveness::Live(left)
    } else {
        Liveness::Overdue(Duration::from_nanos(now.ns - expiry.ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> HostTime {
        HostTime { clock: CLOCK, boot_id: Some("boot-a".into()), ns }
    }

    fn exp(boot: &str, ns: u64, ttl_s: u64) -> Expiry<'_> {
        Expiry { clock: CLOCK, boot_id: Some(boot), ns, ttl: Duration::from_secs(ttl_s) }
    }

    #[test]
    fn live_before_expiry_with_the_time_left() {
        assert_eq!(judge(&exp("boot-a", 5_000_000_000, 3), &at(2_000_000_000)), Liveness::Live(Duration::from_secs(3)));
    }

    #[test]
    fn overdue_at_and_after_expiry() {
        assert_eq!(judge(&exp("boot-a", 5_000, 3), &at(5_000)), Liveness::Overdue(Duration::ZERO));
        assert_eq!(
            judge(&exp("boot-a", 5_000_000_000, 3), &at(7_000_000_000)),
            Liveness::Overdue(Duration::from_secs(2))
        );
        assert!(Liveness::Overdue(Duration::ZERO).expired());
        assert!(!Liveness::Live(Duration::from_secs(1)).expired());
    }

    #[test]
    fn a_lease_of_a_previous_boot_is_expired_whatever_its_numbers() {
        // Another boot id.
        assert_eq!(judge(&exp("boot-old", u64::MAX, 3), &at(1_000)), Liveness::OtherBoot);
        assert_eq!(judge(&exp("boot-old", 0, 3), &at(1_000)), Liveness::OtherBoot);
        // No boot id (the portable path): an expiry further ahead than its TTL cannot be of this
        // boot's clock.
        let no_boot = Expiry { clock: CLOCK, boot_id: None, ns: 100_000_000_000, ttl: Duration::from_secs(3) };
        assert_eq!(judge(&no_boot, &at(1_000_000_000)), Liveness::OtherBoot);
        assert_eq!(judge(&no_boot, &at(98_000_000_000)), Liveness::Live(Duration::from_secs(2)));
        assert!(Liveness::OtherBoot.expired());
    }

    #[test]
    fn another_clock_is_never_judged_expired() {
        let other = Expiry { clock: "some-other-clock", boot_id: None, ns: 0, ttl: Duration::from_secs(3) };
        assert_eq!(judge(&other, &at(u64::MAX)), Liveness::OtherClock);
        assert!(!Liveness::OtherClock.expired());
    }

    #[test]
    fn after_saturates() {
        assert_eq!(at(u64::MAX - 1).after(Duration::from_secs(1)), u64::MAX);
        assert_eq!(at(1).after(Duration::from_nanos(2)), 3);
    }

    #[test]
    fn the_clock_advances_and_the_boot_id_is_known_where_expected() {
        let id = boot_id().expect("boot id");
        if cfg!(all(any(target_os = "linux", target_os = "android"), not(leader_fs_portable))) {
            let id = id.expect("Linux publishes a boot id");
            assert_eq!(id.len(), 36, "boot id {id:?} should be a UUID");
        } else {
            assert_eq!(id, None);
        }
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = now_ns();
        assert!(b >= a + 1_000_000, "{a} -> {b}");
    }

    #[test]
    fn the_clock_is_not_the_wall_clock() {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        assert!(Duration::from_nanos(now_ns()) < wall, "counts from boot, not from 1970");
    }

    /// The clock runs at the rate of the one `std::time::Instant` reads (on the portable path it is
    /// that clock): elapsed times agree. A preemption between paired readings can skew one try,
    /// so the best of several counts.
    #[test]
    fn elapsed_time_agrees_with_instant() {
        let mut best = Duration::MAX;
        for _ in 0..20 {
            let (i0, c0) = (std::time::Instant::now(), now_ns());
            std::thread::sleep(Duration::from_millis(20));
            let (c1, i1) = (now_ns(), std::time::Instant::now());
            let clock = Duration::from_nanos(c1 - c0);
            let instant = i1 - i0;
            // The clock's interval lies inside Instant's: never longer if it is the same clock.
            assert!(clock <= instant + Duration::from_millis(1), "{clock:?} vs {instant:?}");
            best = best.min(instant - clock.min(instant));
        }
        assert!(best < Duration::from_millis(2), "elapsed times never agreed within 2 ms: {best:?}");
    }
}
