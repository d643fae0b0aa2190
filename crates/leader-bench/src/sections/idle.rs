//! Idle cost: store calls per second made by a leader and by idle followers (push on, and push
//! hidden), counted by a [`Probe`] around each participant's store over one
//! window in which nothing changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use leader::layer::Op;
use leader::{LeaseStore, Result};
use serde::{Deserialize, Serialize};

use super::{bound, lead, participant, wait_for_calls, SETTLE};
use crate::probe::{Counts, Probe};

/// Idle cost of each role over one window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleReport {
    /// The window, in milliseconds.
    pub window_ms: f64,
    /// The window in lease durations.
    pub leases: f64,
    /// The leader, renewing.
    pub leader: RoleCost,
    /// A follower with the store's push channel.
    pub follower: RoleCost,
    /// A follower whose watch is hidden (polling).
    pub follower_polling: RoleCost,
}

/// What one participant cost the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoleCost {
    /// Store calls per second, every operation.
    pub ops_per_sec: f64,
    /// Store calls in the window, by operation (only those made).
    pub calls: BTreeMap<String, u64>,
    /// `watch` subscriptions opened in the window.
    pub watches: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls abandoned on the election's `operation_timeout` (over the whole section).
    pub timeouts: u64,
}

impl RoleCost {
    fn of(counts: &Counts, window: Duration, probe: &Probe) -> RoleCost {
        RoleCost {
            ops_per_sec: counts.total() as f64 / window.as_secs_f64(),
            calls: counts.by_op.iter().filter(|(_, n)| **n > 0).map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            watches: counts.watches,
            errors: counts.errors,
            timeouts: probe.abandoned(),
        }
    }
}

/// A leader and two followers on one election, counted over `window`.
pub async fn run(store: &Arc<dyn LeaseStore>, run_id: &str, lease: Duration, window: Duration) -> Result<IdleReport> {
    let name = format!("bench-{run_id}-idle");
    let bound = bound(lease);
    let (leader, leader_probe) = participant(store, &name, "bench-idle-leader", lease, true)?;
    leader.start().await?;
    lead(&leader, bound, "idle: leader").await?;
    let (follower, follower_probe) = participant(store, &name, "bench-idle-follower", lease, true)?;
    let (poller, poller_probe) = participant(store, &name, "bench-idle-poller", lease, false)?;
    follower.start().await?;
    poller.start().await?;
    wait_for_calls(&follower_probe, Op::TryAcquire, 1, bound, "idle: follower").await?;
    wait_for_calls(&poller_probe, Op::TryAcquire, 1, bound, "idle: polling follower").await?;
    tokio::time::sleep(SETTLE).await;

    let probes: [&Probe; 3] = [&leader_probe, &follower_probe, &poller_probe];
    probes.iter().for_each(|p| p.reset());
    tokio::time::sleep(window).await;
    let [l, f, p] = probes.map(Probe::counts);

    for e in [&follower, &poller, &leader] {
        e.stop().await?;
    }
    Ok(IdleReport {
        window_ms: crate::stats::ms(window),
        leases: window.as_secs_f64() / lease.as_secs_f64(),
        leader: RoleCost::of(&l, window, &leader_probe),
        follower: RoleCost::of(&f, window, &follower_probe),
        follower_polling: RoleCost::of(&p, window, &poller_probe),
    })
}
