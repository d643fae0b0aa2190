//! Many elections: one process leads K elections on one store handle; store calls per second and
//! renew latency (timed by the [`Probe`] on `Op::Renew`) as K grows.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use leader::{Election, ElectionOptions, LeaseStore, Result};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::bound;
use crate::probe::Probe;
use crate::stats::{ms, Summary};

/// One K.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManyReport {
    /// Elections held by this process.
    pub k: usize,
    /// How many led before the window (all, unless the store could not keep up).
    pub leading: usize,
    /// How many still led at the end of the window.
    pub still_leading: usize,
    /// Time from starting all K to all K leading (or giving up), in milliseconds.
    pub setup_ms: f64,
    /// The window, in milliseconds.
    pub window_ms: f64,
    /// Store calls per second in the window, every operation.
    pub ops_per_sec: f64,
    /// Renews per second in the window.
    pub renews_per_sec: f64,
    /// Store calls that failed in the window.
    pub errors: u64,
    /// Store calls abandoned on the election's `operation_timeout` over the whole phase (setup,
    /// window and stop of this K); their latency is not in `renew`.
    pub timeouts: u64,
    /// Renew latency as the probe around the store saw it.
    pub renew: Summary,
}

/// For each K: start K elections on one handle, wait for them to lead, count a window, stop them.
pub async fn run(
    store: &Arc<dyn LeaseStore>,
    run_id: &str,
    lease: Duration,
    ks: &[usize],
    window: Duration,
) -> Result<Vec<ManyReport>> {
    let mut reports = Vec::with_capacity(ks.len());
    for &k in ks {
        let probe = Probe::new(true);
        let handle = probe.wrap(store.clone());
        let elections = (0..k)
            .map(|i| {
                let name = format!("bench-{run_id}-many{k}-{i}");
                Election::new(handle.clone(), &name, "bench-many", ElectionOptions::from_lease(lease))
            })
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        for e in &elections {
            e.start().await?;
        }
        let bound = bound(lease) * 2;
        let led = join_all(elections.iter().map(|e| tokio::time::timeout(bound, e.wait_for_leadership()))).await;
        let leading = led.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        let setup = start.elapsed();

        probe.reset();
        tokio::time::sleep(window).await;
        let counts = probe.counts();
        let renews = probe.renew_latencies();
        let still_leading = elections.iter().filter(|e| e.is_leader()).count();
        join_all(elections.iter().map(Election::stop)).await;
        drop(elections);
        let timeouts = probe.abandoned();

        let secs = window.as_secs_f64();
        reports.push(ManyReport {
            k,
            leading,
            still_leading,
            setup_ms: ms(setup),
            window_ms: ms(window),
            ops_per_sec: counts.total() as f64 / secs,
            renews_per_sec: renews.len() as f64 / secs,
            errors: counts.errors,
            timeouts,
            renew: Summary::of(&renews),
        });
    }
    Ok(reports)
}
