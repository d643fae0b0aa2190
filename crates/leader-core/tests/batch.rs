//! Many elections on one store handle: their renewals travel in batches (fewer store calls than
//! renewals, each lease with its own answer, one bad lease never failing the others), every layer
//! passes a batch on as one call, and a store capped below what they need degrades instead of
//! collapsing. Paused time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::layer::{CircuitBreakerLayer, Intercept, InterceptLayer, LeaseStoreExt, Op, RetryLayer};
use leader_core::{ChangeKind, ChangeReason, Election, ElectionOptions, Error, LeaseStore, Result};
use leader_memory::MemoryStore;
use tokio::time::{sleep, timeout, Instant};

const LEASE: Duration = Duration::from_secs(3);

/// Counts the calls that reach the store, per operation.
#[derive(Default)]
struct Count {
    per_op: Mutex<std::collections::HashMap<&'static str, u64>>,
}

impl Count {
    fn get(&self, op: Op) -> u64 {
        self.per_op.lock().unwrap().get(op.as_str()).copied().unwrap_or(0)
    }
    fn renew_calls(&self) -> u64 {
        self.get(Op::Renew) + self.get(Op::RenewBatch)
    }
}

#[leader_core::async_trait]
impl Intercept for Count {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        *self.per_op.lock().unwrap().entry(op.as_str()).or_default() += 1;
        Ok(())
    }
}

fn elections(store: &Arc<dyn LeaseStore>, k: usize) -> Vec<Election> {
    (0..k)
        .map(|i| {
            Election::new(store.clone(), &format!("shard-{i:04}"), "p", ElectionOptions::from_lease(LEASE)).unwrap()
        })
        .collect()
}

/// Starts them all together, then waits until each leads.
async fn all_lead(all: &[Election]) {
    for e in all {
        e.start().await.unwrap();
    }
    for e in all {
        timeout(Duration::from_secs(60), e.wait_for_leadership()).await.expect("leads in time").unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn due_renewals_on_one_handle_reach_the_store_as_fewer_calls_each_with_its_own_answer() {
    // Started together, their first attempts spread over one retry interval, so their renewals
    // fall into up to renew_interval / window batches per interval however many they are.
    const K: usize = 1000;
    let memory = MemoryStore::new();
    let count = Arc::new(Count::default());
    let store: Arc<dyn LeaseStore> =
        (Arc::new(memory.clone()) as Arc<dyn LeaseStore>).layer(InterceptLayer::new(count.clone()));
    let all = elections(&store, K);
    all_lead(&all).await;
    let tokens: Vec<_> = all.iter().map(|e| e.leadership().unwrap().token()).collect();
    let before = count.renew_calls();
    let renew_interval = ElectionOptions::from_lease(LEASE).renew_interval;
    sleep(renew_interval * 5).await;
    let calls = count.renew_calls() - before;
    // Each election renewed about 5 times: ~K * 5 renewals in far fewer calls.
    assert!(calls > 0 && calls < (K as u64 * 5) / 10, "{calls} store calls for about {} renewals", K * 5);
    assert!(count.get(Op::RenewBatch) > 0, "no batch reached the store");
    for (e, t) in all.iter().zip(&tokens) {
        let l = e.leadership().expect("still leading after batched renewals");
        assert_eq!(l.token(), *t, "a batched renew changed a token");
    }
    // One bad lease never fails the others: the store forgets one election's lease.
    let mut lost = all[7].changes();
    memory.expire_now("shard-0007");
    sleep(renew_interval * 2).await;
    let reason = loop {
        let c = timeout(Duration::from_secs(10), futures::StreamExt::next(&mut lost)).await.unwrap().unwrap();
        if c.kind == ChangeKind::Lost {
            break c.reason;
        }
    };
    assert_eq!(reason, ChangeReason::Expired, "the forgotten lease is answered \"not yours\"");
    let leading = all.iter().enumerate().filter(|(i, e)| *i != 7 && e.is_leader()).count();
    assert_eq!(leading, K - 1, "the bad lease took others with it");
    for e in &all {
        e.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn every_layer_passes_a_batch_on_as_one_call() {
    let memory = MemoryStore::new();
    let bottom = Arc::new(Count::default());
    let top = Arc::new(Count::default());
    let store: Arc<dyn LeaseStore> = (Arc::new(memory) as Arc<dyn LeaseStore>)
        .layer(InterceptLayer::new(bottom.clone()))
        .layer(RetryLayer::new())
        .layer(CircuitBreakerLayer::new(5, Duration::from_secs(1)))
        .layer(InterceptLayer::new(top.clone()));
    let all = elections(&store, 50);
    all_lead(&all).await;
    let (b0, t0) = (bottom.get(Op::RenewBatch), top.get(Op::RenewBatch));
    sleep(LEASE * 2).await;
    let (b, t) = (bottom.get(Op::RenewBatch) - b0, top.get(Op::RenewBatch) - t0);
    assert!(t > 0, "no batches went out");
    assert_eq!(b, t, "a layer split or repeated a batch");
    assert_eq!(bottom.get(Op::Renew), top.get(Op::Renew));
    // Releases at shutdown are batched too.
    let r0 = bottom.get(Op::Release) + bottom.get(Op::ReleaseBatch);
    futures::future::join_all(all.iter().map(|e| e.stop())).await;
    let releases = bottom.get(Op::Release) + bottom.get(Op::ReleaseBatch) - r0;
    assert!(releases < 50 / 5, "{releases} release calls for 50 elections stopping together");
}

/// Refuses calls beyond `cap` per second (a store or proxy with a rate limit); counts the ones
/// let through, per second.
struct Capped {
    cap: u64,
    window: Mutex<(Instant, u64)>,
    passed_max: AtomicU64,
}

#[leader_core::async_trait]
impl Intercept for Capped {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        let mut w = self.window.lock().unwrap();
        let now = Instant::now();
        if now >= w.0 + Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= self.cap {
            return Err(Error::unavailable(format!("{} refused: over the cap of {} calls/s", op.as_str(), self.cap)));
        }
        w.1 += 1;
        self.passed_max.fetch_max(w.1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_capped_below_the_load_degrades_instead_of_collapsing() {
    const K: usize = 300;
    const CAP: u64 = 40;
    let memory = MemoryStore::new();
    let capped = Arc::new(Capped { cap: CAP, window: Mutex::new((Instant::now(), 0)), passed_max: AtomicU64::new(0) });
    let store: Arc<dyn LeaseStore> =
        (Arc::new(memory) as Arc<dyn LeaseStore>).layer(InterceptLayer::new(capped.clone()));
    let all = elections(&store, K);
    // Started at random moments over two leases, so that their renewals fall in many batches.
    let mut order: Vec<usize> = (0..K).collect();
    fastrand::shuffle(&mut order);
    for (n, i) in order.iter().enumerate() {
        if n % 10 == 0 {
            sleep(LEASE * 2 / (K as u32 / 10)).await;
        }
        all[*i].start().await.unwrap();
    }
    let mut peak_leading = 0;
    let mut stale = 0;
    for _ in 0..40 {
        sleep(Duration::from_millis(250)).await;
        let leading = all.iter().filter(|e| e.is_leader()).count();
        peak_leading = peak_leading.max(leading);
        // A participant that leads is within its deadline (guarantee 3), whatever the cap does.
        stale += all.iter().filter_map(|e| e.leadership()).filter(|l| l.valid_until() <= Instant::now()).count();
    }
    assert!(capped.passed_max.load(Ordering::SeqCst) <= CAP, "more than {CAP} calls in a second reached the store");
    assert_eq!(stale, 0, "a leader past its deadline");
    let leading_at_end = all.iter().filter(|e| e.is_leader()).count();
    assert!(leading_at_end > 0, "everyone lost leadership: the election collapsed under the cap");
    eprintln!("capped at {CAP} calls/s: {leading_at_end} of {K} lead at the end (peak {peak_leading})");
    for e in &all {
        e.stop().await.ok();
    }
}

/// Holds every `try_acquire` for a while and records how many were in flight at once.
#[derive(Default)]
struct SlowAcquires {
    /// The store serves one acquire at a time.
    one_at_a_time: tokio::sync::Mutex<()>,
    in_flight: AtomicU64,
    most: AtomicU64,
    failed: AtomicU64,
}

#[leader_core::async_trait]
impl Intercept for SlowAcquires {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        if op == Op::TryAcquire {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let _serving = self.one_at_a_time.lock().await;
            sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
    fn after(&self, op: Op, _election: &str, ok: bool, _elapsed: Duration) {
        if op == Op::TryAcquire {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !ok {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Two hundred elections started together on one handle whose store serves one acquire at a time,
/// 20 ms each: without admission they all queue in the store, and every one queued longer than the
/// operation timeout (500 ms: from the 26th on) fails and retries into the same queue; with it, at
/// most four are in flight, none waits in the store longer than 80 ms, none fails, and all lead once
/// the store has served the 200 (4 s). Measured without admission: 191 in flight, 565 failed,
/// all leading after 6.6 s.
#[tokio::test(start_paused = true)]
async fn elections_starting_together_take_turns_to_acquire() {
    let slow = Arc::new(SlowAcquires::default());
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let store = store.layer(InterceptLayer::new(slow.clone()));
    let all = elections(&store, 200);
    let started = Instant::now();
    all_lead(&all).await;
    let took = started.elapsed();
    let (most, failed) = (slow.most.load(Ordering::SeqCst), slow.failed.load(Ordering::SeqCst));
    println!("200 elections led after {took:?}; at most {most} acquires in flight, {failed} failed");
    assert!(most <= 4, "{most} acquires in flight at once on one handle");
    assert_eq!(failed, 0, "acquires timed out waiting in the store");
    assert!(took < LEASE * 2, "leading took {took:?}");
    for e in &all {
        e.stop().await.unwrap();
    }
}
