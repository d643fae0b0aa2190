//! One module per measurement, and the waits they share.

pub mod failover;
pub mod handoff;
pub mod idle;
pub mod latency;
pub mod many;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use leader::layer::Op;
use leader::{ChangeKind, Election, ElectionOptions, Error, LeadershipChanges, LeaseStore, Result};
use tokio::time::Instant;

use crate::probe::Probe;

/// How long any single wait of the bench may take before it is reported as an error: generous,
/// a safety bound only (three leases and ten seconds).
pub(crate) fn bound(lease: Duration) -> Duration {
    lease * 3 + Duration::from_secs(10)
}

/// Time allowed after a participant's first acquire attempt for its wait (and the store's push
/// subscription) to settle before the measured event is caused; outside every measured interval.
pub(crate) const SETTLE: Duration = Duration::from_millis(10);

/// A participant on `store` seen through its own probe (so that the bench can tell when this one
/// participant has made its first attempt).
pub(crate) fn participant(
    store: &Arc<dyn LeaseStore>,
    election: &str,
    id: &str,
    lease: Duration,
    push: bool,
) -> Result<(Election, Arc<Probe>)> {
    let probe = Probe::new(push);
    let election = Election::new(probe.wrap(store.clone()), election, id, ElectionOptions::from_lease(lease))?;
    Ok((election, probe))
}

/// Waits until `probe` has seen the store answer `n` calls of `op`.
pub(crate) async fn wait_for_calls(probe: &Probe, op: Op, n: u64, bound: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + bound;
    while probe.calls(op) < n {
        if Instant::now() >= deadline {
            return Err(Error::timeout(format!(
                "{what}: no answer to {} within {}",
                op.as_str(),
                humantime::format_duration(bound)
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// The instant the next `Acquired` item arrives on `changes`.
pub(crate) async fn next_acquired(changes: &mut LeadershipChanges, bound: Duration, what: &str) -> Result<Instant> {
    let deadline = Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(change)) if change.kind == ChangeKind::Acquired => return Ok(Instant::now()),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(Error::stopped(format!("{what}: the change stream ended"))),
            Err(_) => {
                return Err(Error::timeout(format!(
                    "{what}: no Acquired change within {}",
                    humantime::format_duration(bound)
                )))
            }
        }
    }
}

/// Waits until `election` leads, within `bound`.
pub(crate) async fn lead(election: &Election, bound: Duration, what: &str) -> Result<leader::Leadership> {
    match tokio::time::timeout(bound, election.wait_for_leadership()).await {
        Ok(r) => r,
        Err(_) => Err(Error::timeout(format!("{what}: did not lead within {}", humantime::format_duration(bound)))),
    }
}
