//! Many elections: one process leads K elections on one store handle; how many leases it renews
//! per second, in how many store calls (counted by the client) and round trips (counted by the
//! server, where it counts: see [`ServerCounter`]), and the latency of those calls, as K grows.
//!
//! Elections that share a handle have their renewals coalesced into `renew_batch` calls, so the
//! calls per second should stay nearly flat while the renewals per second grow with K.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use futures::stream::BoxStream;
use leader::{
    async_trait, Acquire, AcquireRequest, Capabilities, Election, ElectionOptions, LeaderInfo, Lease, LeaseStore,
    Metadata, Renewal, Result,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::bound;
use crate::probe::Probe;
use crate::server_count::ServerCounter;
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
    /// Store calls per second in the window, every operation (a batch is one call).
    pub ops_per_sec: f64,
    /// Renew calls (single or batch) per second in the window.
    pub renews_per_sec: f64,
    /// Leases renewed in the window (a batch of 50 renews 50).
    #[serde(default)]
    pub renewals: u64,
    /// Leases renewed per second in the window.
    #[serde(default)]
    pub renewals_per_sec: f64,
    /// Round trips per second counted by the server in the window (`None`: the store has no
    /// server count, or it could not be read).
    #[serde(default)]
    pub server_round_trips_per_sec: Option<f64>,
    /// Failed store calls and failed leases of batches in the window (each lease's error counts once).
    pub errors: u64,
    /// Store calls abandoned on the election's `operation_timeout` over the whole phase (setup,
    /// window and stop of this K); their latency is not in `renew`.
    pub timeouts: u64,
    /// Latency of the renew calls (one per batch) as the probe around the store saw it.
    pub renew: Summary,
}

/// For each K: start K elections on one handle, wait for them to lead, count a window, stop them.
/// `counter` reads the server's own count of requests, where the store has one.
pub async fn run(
    store: &Arc<dyn LeaseStore>,
    counter: Option<&ServerCounter>,
    run_id: &str,
    lease: Duration,
    ks: &[usize],
    window: Duration,
) -> Result<Vec<ManyReport>> {
    let mut reports = Vec::with_capacity(ks.len());
    for &k in ks {
        let probe = Probe::new(true);
        let leases = Arc::new(LeaseCounts::new(store.clone()));
        let handle = probe.wrap(leases.clone());
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

        if let Some(c) = counter {
            tokio::time::sleep(c.settle()).await;
        }
        let server_before = read(counter).await;
        probe.reset();
        leases.reset();
        let window_start = Instant::now();
        tokio::time::sleep(window).await;
        let counts = probe.counts();
        let renews = probe.renew_latencies();
        let (renewed, errors) = leases.read();
        let server_after = read(counter).await;
        let measured = window_start.elapsed();
        let still_leading = elections.iter().filter(|e| e.is_leader()).count();
        join_all(elections.iter().map(Election::stop)).await;
        drop(elections);
        let timeouts = probe.abandoned();

        let secs = measured.as_secs_f64();
        let server_round_trips_per_sec = match (server_before, server_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / secs),
            _ => None,
        };
        reports.push(ManyReport {
            k,
            leading,
            still_leading,
            setup_ms: ms(setup),
            window_ms: ms(measured),
            ops_per_sec: counts.total() as f64 / secs,
            renews_per_sec: renews.len() as f64 / secs,
            renewals: renewed,
            renewals_per_sec: renewed as f64 / secs,
            server_round_trips_per_sec,
            errors,
            timeouts,
            renew: Summary::of(&renews),
        });
    }
    Ok(reports)
}

async fn read(counter: Option<&ServerCounter>) -> Option<u64> {
    let counter = counter?;
    match counter.read().await {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("leader-bench: cannot read the server's count ({}): {e}", counter.what());
            None
        }
    }
}

/// Counts, per lease, what the store answered: renewals granted and errors (a batch's answers one
/// by one). Passes every call on unchanged, batches as batches.
struct LeaseCounts {
    inner: Arc<dyn LeaseStore>,
    renewed: AtomicU64,
    errors: AtomicU64,
}

impl LeaseCounts {
    fn new(inner: Arc<dyn LeaseStore>) -> Self {
        LeaseCounts { inner, renewed: AtomicU64::new(0), errors: AtomicU64::new(0) }
    }

    fn reset(&self) {
        self.renewed.store(0, Ordering::Release);
        self.errors.store(0, Ordering::Release);
    }

    /// Leases renewed and errors since the last reset.
    fn read(&self) -> (u64, u64) {
        (self.renewed.load(Ordering::Acquire), self.errors.load(Ordering::Acquire))
    }

    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }

    fn count<T>(&self, r: &Result<T>) {
        if r.is_err() {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn count_renewal(&self, r: &Result<Option<Lease>>) {
        self.count(r);
        if matches!(r, Ok(Some(_))) {
            self.renewed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[async_trait]
impl LeaseStore for LeaseCounts {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let r = self.inner().try_acquire(req).await;
        self.count(&r);
        r
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let r = self.inner().renew(lease, ttl).await;
        self.count_renewal(&r);
        r
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        let r = self.inner().release(lease).await;
        self.count(&r);
        r
    }
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let answers = self.inner().renew_batch(batch).await;
        answers.iter().for_each(|r| self.count_renewal(r));
        answers
    }
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let answers = self.inner().release_batch(leases).await;
        answers.iter().for_each(|r| self.count(r));
        answers
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let r = self.inner().update_metadata(lease, metadata).await;
        self.count(&r);
        r
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        let r = self.inner().withdraw(election, instance_id).await;
        self.count(&r);
        r
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        let r = self.inner().current(election).await;
        self.count(&r);
        r
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        let r = self.inner().list(prefix).await;
        self.count(&r);
        r
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner().watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }
    fn check_options(&self, options: &leader::ElectionOptions) -> Result<()> {
        self.inner().check_options(options)
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        Some(self.inner())
    }
}
