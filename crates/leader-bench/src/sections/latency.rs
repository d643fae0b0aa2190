//! Uncontended acquire, renew and release through the store, side by side with the store's raw
//! floor ([`RawFloor::raw_acquire`]) on the same connection, interleaved in one loop so that both
//! see the same machine.

use std::sync::Arc;
use std::time::Duration;

use leader::{Acquire, AcquireRequest, Error, LeaseStore, RawFloor, Result};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::stats::Summary;

/// Uncontended latency of the store's operations and of its floor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Measured iterations (after the warm-up).
    pub iterations: usize,
    /// Untimed warm-up iterations.
    pub warmup: usize,
    /// What the floor issues ([`RawFloor::describe`]).
    pub floor: String,
    /// `LeaseStore::try_acquire` of a free election.
    pub acquire: Summary,
    /// `LeaseStore::renew` of the lease just acquired.
    pub renew: Summary,
    /// `LeaseStore::release` of it.
    pub release: Summary,
    /// `RawFloor::raw_acquire`.
    pub raw_floor: Summary,
    /// p50 of each operation divided by the floor's p50 (`None` when the floor's p50 is 0).
    pub ratio_p50: Ratios,
}

/// Operation p50 / floor p50.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Ratios {
    /// Acquire.
    pub acquire: Option<f64>,
    /// Renew.
    pub renew: Option<f64>,
    /// Release.
    pub release: Option<f64>,
}

/// Runs `iterations` rounds of acquire → renew → release → raw floor on fresh election names.
pub async fn run(
    store: &Arc<dyn LeaseStore>,
    floor: &Arc<dyn RawFloor>,
    run_id: &str,
    lease: Duration,
    iterations: usize,
) -> Result<LatencyReport> {
    let election = format!("bench-{run_id}-latency");
    let floor_election = format!("bench-{run_id}-floor");
    let instance = uuid::Uuid::new_v4().to_string();
    let req = AcquireRequest {
        election: election.clone(),
        participant_id: "leader-bench".to_owned(),
        instance_id: instance.clone(),
        ttl: lease,
        metadata: Default::default(),
    };
    let warmup = (iterations / 10).clamp(1, 50);
    let mut samples = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for i in 0..warmup + iterations {
        let t = Instant::now();
        let lease_now = match store.try_acquire(&req).await? {
            Acquire::Acquired(l) => l,
            Acquire::Held(holder) => {
                return Err(Error::backend(format!(
                    "uncontended acquire of {election:?} was refused; held by {:?}",
                    holder.map(|h| h.participant_id)
                )))
            }
            Acquire::Refused(r) => {
                return Err(Error::backend(format!("the store refuses to elect anyone: {}", r.reason)))
            }
        };
        let acquire = t.elapsed();

        let t = Instant::now();
        let renewed = store.renew(&lease_now, lease).await?.ok_or_else(|| {
            Error::backend(format!("renew of the lease of {election:?} just acquired said: not ours"))
        })?;
        let renew = t.elapsed();

        let t = Instant::now();
        if !store.release(&renewed).await? {
            return Err(Error::backend(format!("release of the lease of {election:?} just renewed said: not ours")));
        }
        let release = t.elapsed();

        let t = Instant::now();
        floor.raw_acquire(&floor_election, &instance).await?;
        let raw = t.elapsed();

        if i >= warmup {
            for (s, d) in samples.iter_mut().zip([acquire, renew, release, raw]) {
                s.push(d);
            }
        }
    }
    let [acquire, renew, release, raw] = samples.map(|s| Summary::of(&s));
    let ratio = |s: &Summary| (raw.p50_ms > 0.0).then(|| s.p50_ms / raw.p50_ms);
    Ok(LatencyReport {
        iterations,
        warmup,
        floor: floor.describe(),
        ratio_p50: Ratios { acquire: ratio(&acquire), renew: ratio(&renew), release: ratio(&release) },
        acquire,
        renew,
        release,
        raw_floor: raw,
    })
}
