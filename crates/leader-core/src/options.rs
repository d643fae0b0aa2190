//! [`ElectionOptions`]: lease timing, derived from one number, validated before use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{validate, Error, Metadata, Result};

/// How long a lease lasts and how the driver paces its calls.
///
/// Build it with [`ElectionOptions::from_lease`], which derives the rest the way the seeds and
/// client-go do: renew every third of the lease, step down locally after two thirds without a
/// successful renew, retry and time out store calls at a sixth.
///
/// In configuration files durations are written as `"15s"`, `"500ms"`, `"1m 30s"`:
///
/// ```
/// use leader_core::ElectionOptions;
/// use std::time::Duration;
/// let o: ElectionOptions = serde_json::from_str(r#"{ "lease_duration": "3s" }"#).unwrap();
/// assert_eq!(o, ElectionOptions::from_lease(Duration::from_secs(3)));
/// o.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElectionOptions {
    /// How long the store keeps a lease without a renew. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// No successful renew *sent* within this → the leader steps down locally (guarantee 3).
    /// Default `lease_duration * 2/3`.
    #[serde(with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// How often the leader renews. Default `lease_duration / 3`.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// How often followers retry when nothing tells them sooner; jittered. Default `lease_duration / 6`.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// Every store call is abandoned after this. Default `lease_duration / 6`.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// The margin kept for clock drift and scheduling between the moment a leader's work is
    /// cancelled and the earliest moment another participant can acquire. Work whose tenure ended
    /// at its local deadline (or by `stop`, `release` or a health step-down) may run on for
    /// `lease_duration - renew_deadline - drift_allowance` before it is dropped (see
    /// [`Election::run_as_leader`](crate::Election::run_as_leader)). Default
    /// `max(100 ms, lease_duration / 50)` ([`default_drift_allowance`](Self::default_drift_allowance));
    /// must be less than `(lease_duration - renew_deadline) / 2`.
    #[serde(with = "humantime_serde")]
    pub drift_allowance: Duration,
    /// Published with the lease; see [`Metadata`].
    pub metadata: Metadata,
    /// Changes buffered per [`changes()`](crate::Election::changes) subscriber before the oldest are
    /// dropped (guarantee 8). Default 64.
    pub event_buffer: usize,
}

/// The default lease, 15 s, as client-go and Excalibur use.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The default per-subscriber buffer of leadership changes.
pub const DEFAULT_EVENT_BUFFER: usize = 64;

impl Default for ElectionOptions {
    fn default() -> Self {
        Self::from_lease(DEFAULT_LEASE)
    }
}

impl ElectionOptions {
    /// Options for a lease of `lease`, the rest derived from it (see the type's docs).
    pub fn from_lease(lease: Duration) -> Self {
        ElectionOptions {
            lease_duration: lease,
            renew_deadline: lease * 2 / 3,
            renew_interval: lease / 3,
            retry_interval: lease / 6,
            operation_timeout: lease / 6,
            drift_allowance: Self::default_drift_allowance(lease),
            metadata: Metadata::new(),
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }

    /// **Fast failover**: a 5 s lease (renew every 1.7 s, step down after 3.3 s without a renew,
    /// retry every ~0.8 s). A crashed leader is replaced in about 6 s; costs a renew every 1.7 s per
    /// leader and leaves 1.7 s between the local deadline and expiry in the store, so it needs a
    /// responsive store and host. Refused by stores with longer minimum leases (Azure: 15 s,
    /// Consul: 10 s) through their `check_options`.
    pub fn fast_failover() -> Self {
        Self::from_lease(Duration::from_secs(5))
    }

    /// **Balanced** (the default): a 15 s lease (renew every 5 s, step down after 10 s, retry every
    /// 2.5 s), as client-go and Excalibur use. Crash failover in about 17.5 s; 5 s of margin for
    /// pauses and slow stores. Fits every provider (ZooKeeper needs a 15 s session timeout).
    pub fn balanced() -> Self {
        Self::from_lease(DEFAULT_LEASE)
    }

    /// **Low traffic**: a 60 s lease (renew every 20 s, step down after 40 s, retry every 10 s).
    /// A crash takes about 70 s to recover from, in exchange for few store calls and a wide margin
    /// (20 s) against pauses. Azure's longest finite lease; ZooKeeper needs its
    /// `maxSessionTimeout` at 60 s or more.
    pub fn low_traffic() -> Self {
        Self::from_lease(Duration::from_secs(60))
    }

    /// The default [`drift_allowance`](Self::drift_allowance) for a lease: `max(100 ms, lease / 50)`,
    /// except that for leases under 0.6 s (where that would not fit) it is a quarter of the
    /// `lease / 3` left after the default `renew_deadline`.
    pub fn default_drift_allowance(lease: Duration) -> Duration {
        (lease / 50).max(Duration::from_millis(100)).min(lease / 12)
    }

    /// How long work may run on after its tenure ended (unless the store said the lease is gone):
    /// `lease_duration - renew_deadline - drift_allowance` (zero for invalid options).
    pub fn work_grace(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline).saturating_sub(self.drift_allowance)
    }

    /// Sets the metadata published with the lease.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks the rules; the error names the option, its value and the rule:
    ///
    /// - no duration is zero, `event_buffer` is at least 1;
    /// - `operation_timeout < renew_interval < renew_deadline < lease_duration`: a renew can time
    ///   out and be retried before the deadline, and the deadline leaves the leader
    ///   `lease_duration - renew_deadline` to stop before anyone else can acquire;
    /// - `retry_interval < lease_duration`;
    /// - `drift_allowance < (lease_duration - renew_deadline) / 2`, so that work keeps at least
    ///   as much grace as the margin it leaves;
    /// - metadata keys and values follow [`validate_metadata`](crate::validate_metadata).
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("renew_interval", self.renew_interval),
            ("retry_interval", self.retry_interval),
            ("operation_timeout", self.operation_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::invalid_argument(format!("{name} is 0; every duration must be greater than zero")));
            }
        }
        let order = [
            ("operation_timeout", self.operation_timeout),
            ("renew_interval", self.renew_interval),
            ("renew_deadline", self.renew_deadline),
            ("lease_duration", self.lease_duration),
        ];
        for pair in order.windows(2) {
            let ((a, av), (b, bv)) = (pair[0], pair[1]);
            if av >= bv {
                return Err(Error::invalid_argument(format!(
                    "{a} ({}) must be less than {b} ({}); the rule is operation_timeout < renew_interval < renew_deadline < lease_duration",
                    fmt(av),
                    fmt(bv)
                )));
            }
        }
        if self.retry_interval >= self.lease_duration {
            return Err(Error::invalid_argument(format!(
                "retry_interval ({}) must be less than lease_duration ({})",
                fmt(self.retry_interval),
                fmt(self.lease_duration)
            )));
        }
        let half_gap = (self.lease_duration - self.renew_deadline) / 2;
        if self.drift_allowance >= half_gap {
            return Err(Error::invalid_argument(format!(
                "drift_allowance ({}) must be less than (lease_duration - renew_deadline) / 2 ({}), so that \
                 work keeps more grace after its deadline than the margin left for drift",
                fmt(self.drift_allowance),
                fmt(half_gap)
            )));
        }
        if self.event_buffer == 0 {
            return Err(Error::invalid_argument("event_buffer is 0; it must be at least 1"));
        }
        validate::validate_metadata(&self.metadata)
    }
}

fn fmt(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// Deserialising fills what is missing from `lease_duration` (or the default lease) the way
/// [`ElectionOptions::from_lease`] does; unknown keys and bad durations are errors that name the key.
impl<'de> Deserialize<'de> for ElectionOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(with = "humantime_serde", default)]
            lease_duration: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            renew_deadline: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            renew_interval: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            retry_interval: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            operation_timeout: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            drift_allowance: Option<Duration>,
            #[serde(default)]
            metadata: Metadata,
            #[serde(default)]
            event_buffer: Option<usize>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let base = ElectionOptions::from_lease(raw.lease_duration.unwrap_or(DEFAULT_LEASE));
        Ok(ElectionOptions {
            renew_deadline: raw.renew_deadline.unwrap_or(base.renew_deadline),
            renew_interval: raw.renew_interval.unwrap_or(base.renew_interval),
            retry_interval: raw.retry_interval.unwrap_or(base.retry_interval),
            operation_timeout: raw.operation_timeout.unwrap_or(base.operation_timeout),
            drift_allowance: raw.drift_allowance.unwrap_or(base.drift_allowance),
            event_buffer: raw.event_buffer.unwrap_or(base.event_buffer),
            metadata: raw.metadata,
            lease_duration: base.lease_duration,
        })
    }
}
