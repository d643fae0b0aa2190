//! Defects the randomised simulation (`leader_testkit::sim`) found, each pinned by a paused-time
//! test that failed before its fix. The seed that found it is named in each test's docs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{election, stores};
use leader_core::LeaseStore;
use tokio::time::{sleep, timeout};

/// Seeds 11 and 18 of `sim_memory`: `release()` called from inside `run_as_leader` work handed
/// the lease over at once (its hand-over task counted the calling work as "its own" and did not
/// wait for it), so a follower led, and ran its work, while the releasing work still ran.
#[tokio::test(start_paused = true)]
async fn release_from_inside_the_work_keeps_the_lease_until_the_work_returns() {
    let (memory, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    b.start().await.unwrap();
    let inner = a.clone();
    let mem = memory.clone();
    let b_view = b.clone();
    let out = timeout(
        Duration::from_secs(10),
        a.run_as_leader(|_l| async move {
            inner.release().await.unwrap();
            // The work goes on (cooperatively yielding) after release() returned.
            for _ in 0..4 {
                sleep(Duration::from_millis(50)).await;
                assert!(mem.current("jobs").await.unwrap().is_some(), "released while the work still runs");
                assert!(!b_view.is_leader(), "the follower leads while the releasing work still runs");
            }
            "done"
        }),
    )
    .await
    .expect("no deadlock")
    .unwrap();
    assert_eq!(out, "done");
    // Released once the work returned: the follower takes over.
    timeout(Duration::from_secs(5), b.wait_for_leadership()).await.expect("b takes over").unwrap();
    b.stop().await.unwrap();
}

/// The same for `stop()` called from inside the work.
#[tokio::test(start_paused = true)]
async fn stop_from_inside_the_work_keeps_the_lease_until_the_work_returns() {
    let (memory, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    b.start().await.unwrap();
    let inner = a.clone();
    let mem = memory.clone();
    let b_view = b.clone();
    timeout(
        Duration::from_secs(10),
        a.run_as_leader(|_l| async move {
            inner.stop().await.unwrap();
            for _ in 0..4 {
                sleep(Duration::from_millis(50)).await;
                assert!(mem.current("jobs").await.unwrap().is_some(), "released while the work still runs");
                assert!(!b_view.is_leader(), "the follower leads while the stopping work still runs");
            }
        }),
    )
    .await
    .expect("no deadlock")
    .unwrap();
    timeout(Duration::from_secs(5), b.wait_for_leadership()).await.expect("b takes over").unwrap();
    b.stop().await.unwrap();
}

/// A subscriber that read nothing while its participant acquired, released and stopped, with a
/// buffer too small for those changes.
async fn overflowed_stream(subscribe_while_leading: bool) -> Vec<leader_core::LeadershipChange> {
    use futures::StreamExt;
    let (_m, _c, store) = stores();
    let options = leader_core::ElectionOptions { event_buffer: 1, ..common::options() };
    let a = leader_core::Election::new(store, "jobs", "a", options).unwrap();
    let mut changes = (!subscribe_while_leading).then(|| a.changes());
    assert!(a.try_acquire().await.unwrap());
    if subscribe_while_leading {
        changes = Some(a.changes());
    }
    a.release().await.unwrap();
    assert!(a.try_acquire().await.unwrap());
    a.stop().await.unwrap();
    let changes = changes.unwrap();
    timeout(Duration::from_secs(1), changes.collect::<Vec<_>>()).await.expect("the stream ends")
}

/// Seeds 724 and 784 of `sim_memory`: a `changes()` stream that fell behind lost the `Lost` of
/// its participant and then ended (its run's end marker, or the next run's first change, told it
/// the run was over) without ever delivering a change with `missed > 0`: the subscriber was left
/// believing its participant still led. Now the stream's last item says what it missed.
#[tokio::test(start_paused = true)]
async fn a_stream_that_overflowed_says_so_before_it_ends() {
    let items = overflowed_stream(true).await;
    assert!(items[0].is_leader, "subscribed while leading: {items:?}");
    let last = items.last().unwrap();
    assert!(items.len() >= 2, "the stream ended without saying it missed changes: {items:?}");
    assert_eq!(last.kind, leader_core::ChangeKind::Lost, "{items:?}");
    assert!(!last.is_leader && last.missed > 0, "{last:?}");

    let items = overflowed_stream(false).await;
    assert!(!items[0].is_leader);
    let last = items.last().unwrap();
    assert!(items.len() >= 2 && last.missed > 0 && !last.is_leader, "{items:?}");
}

/// A store that reports, for every acquisition, the token of the first lease it ever granted (as
/// a store whose token counter went backwards would), and takes 1 ms per call.
struct StaleTokens {
    inner: leader_memory::MemoryStore,
    first: std::sync::Mutex<Option<leader_core::FencingToken>>,
    real: std::sync::Mutex<Option<leader_core::Lease>>,
    acquires: std::sync::atomic::AtomicU64,
}

impl StaleTokens {
    fn report(&self, lease: leader_core::Lease) -> leader_core::Lease {
        let first = *self.first.lock().unwrap().get_or_insert(lease.token);
        *self.real.lock().unwrap() = Some(lease.clone());
        leader_core::Lease { token: first, ..lease }
    }
    fn real(&self, lease: &leader_core::Lease) -> leader_core::Lease {
        self.real.lock().unwrap().clone().unwrap_or_else(|| lease.clone())
    }
}

#[leader_core::async_trait]
impl LeaseStore for StaleTokens {
    async fn try_acquire(&self, req: &leader_core::AcquireRequest) -> leader_core::Result<leader_core::Acquire> {
        self.acquires.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        sleep(Duration::from_millis(1)).await;
        Ok(match self.inner.try_acquire(req).await? {
            leader_core::Acquire::Acquired(l) => leader_core::Acquire::Acquired(self.report(l)),
            other => other,
        })
    }
    async fn renew(
        &self,
        lease: &leader_core::Lease,
        ttl: Duration,
    ) -> leader_core::Result<Option<leader_core::Lease>> {
        sleep(Duration::from_millis(1)).await;
        Ok(self.inner.renew(&self.real(lease), ttl).await?.map(|l| self.report(l)))
    }
    async fn release(&self, lease: &leader_core::Lease) -> leader_core::Result<bool> {
        sleep(Duration::from_millis(1)).await;
        self.inner.release(&self.real(lease)).await
    }
    async fn update_metadata(
        &self,
        lease: &leader_core::Lease,
        metadata: &leader_core::Metadata,
    ) -> leader_core::Result<Option<leader_core::Lease>> {
        self.inner.update_metadata(&self.real(lease), metadata).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> leader_core::Result<()> {
        self.inner.withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> leader_core::Result<Option<leader_core::LeaderInfo>> {
        self.inner.current(election).await
    }
    async fn list(&self, prefix: &str) -> leader_core::Result<Vec<leader_core::LeaderInfo>> {
        self.inner.list(prefix).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<leader_core::BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
    }
    fn capabilities(&self) -> leader_core::Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &leader_core::ElectionOptions) -> leader_core::Result<()> {
        self.inner.check_options(options)
    }
}

/// The simulation's check that the broken stores of `suite_can_fail` are caught hung on the one
/// that reuses tokens: a campaign that got back a lease it had given up released it and failed,
/// and the push hint of its own release woke its back-off at once, so it retried in a loop as
/// fast as the store answered (under the paused clock, time never moved again). A failed
/// campaign now backs off for a retry interval whatever the push channel says.
#[tokio::test(start_paused = true)]
async fn a_failed_campaign_backs_off_even_when_its_own_calls_push_hints() {
    let store = Arc::new(StaleTokens {
        inner: leader_memory::MemoryStore::new(),
        first: Default::default(),
        real: Default::default(),
        acquires: Default::default(),
    });
    let a = election(store.clone(), "a");
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    a.stop().await.unwrap(); // token 1 is given up; every later acquisition reports token 1 again
    let before = store.acquires.load(std::sync::atomic::Ordering::SeqCst);
    a.start().await.unwrap();
    let window = common::options().retry_interval * 8;
    sleep(window).await;
    let attempts = store.acquires.load(std::sync::atomic::Ordering::SeqCst) - before;
    // Two attempts per campaign, one campaign per (jittered, >= 0.75x) retry interval.
    assert!(attempts <= 2 * 11 + 2, "{attempts} acquire calls in {window:?}: the campaign does not back off");
    assert!(!a.is_leader());
    a.stop().await.unwrap();
}

/// Seeds 3, 6, 7 and 11 of `sim_memory` (with work that calls `stop()` from inside itself, after
/// which the application starts the election again): the hand-over deferred by a `stop()` called
/// from inside the work ended the run's streams only when it finished, and a `start()` before that
/// began a new run under the same run number, so the streams taken after the restart ended when
/// the old hand-over finished (while the election ran), and the old streams saw the new run's
/// changes. Now a `start()` ends the stopped run's streams first.
#[tokio::test(start_paused = true)]
async fn a_restart_before_a_deferred_stop_finished_keeps_the_new_runs_streams() {
    use futures::StreamExt;
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let mut before = a.changes();
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    // The deferred hand-over takes a while (a slow release), so the restart comes first.
    control.release_delay_ms.store(500, std::sync::atomic::Ordering::SeqCst);
    let inner = a.clone();
    a.run_as_leader(|_l| async move { inner.stop().await.unwrap() }).await.unwrap();
    a.start().await.unwrap();
    let mut after = a.changes();
    assert_eq!(after.next().await.unwrap().reason, leader_core::ChangeReason::Subscribed);
    let next = timeout(Duration::from_secs(5), after.next()).await.expect("a change of the new run");
    let next = next.expect("the new run's stream ended while the election runs");
    assert_eq!(next.kind, leader_core::ChangeKind::Acquired, "{next:?}");
    sleep(Duration::from_secs(1)).await; // the old hand-over has finished by now
    assert!(futures::FutureExt::now_or_never(after.next()).is_none(), "the new run's stream ended");
    assert!(a.is_leader());
    // The stream taken before the stop saw its run only: Acquired, Lost, then its end.
    let old: Vec<_> = timeout(Duration::from_secs(1), (&mut before).collect::<Vec<_>>()).await.unwrap();
    let kinds: Vec<_> = old.iter().map(|c| c.kind).collect();
    use leader_core::ChangeKind::{Acquired, LeaderChanged, Lost};
    assert_eq!(kinds, [LeaderChanged, Acquired, Lost], "{old:?}");
    a.stop().await.unwrap();
}

/// Seeds 22516, 24781, 25674 and 25922 of `sim_memory` (with the previous fix): a `changes()`
/// stream taken after a `stop()` called from inside the work had returned (before the next
/// `start()`) still belonged to the stopped run, so it ended at that `start()` instead of
/// following the new run, as a stream taken after `stop()` does. The streams of a run stopped
/// from inside its work now end when that `stop()` returns.
#[tokio::test(start_paused = true)]
async fn a_stream_taken_after_a_stop_from_inside_the_work_follows_the_next_start() {
    use futures::StreamExt;
    let (_m, _c, store) = stores();
    let a = election(store, "a");
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    let inner = a.clone();
    let mut after = a
        .run_as_leader(|_l| async move {
            inner.stop().await.unwrap();
            // Taken once stop() returned, while the work still runs.
            inner.changes()
        })
        .await
        .unwrap();
    assert_eq!(after.next().await.unwrap().reason, leader_core::ChangeReason::Subscribed);
    a.start().await.unwrap();
    let next = timeout(Duration::from_secs(5), after.next()).await.expect("a change of the new run");
    let next = next.expect("the stream ended at start() instead of following the new run");
    assert_eq!(next.kind, leader_core::ChangeKind::Acquired, "{next:?}");
    a.stop().await.unwrap();
}

/// Slows every `try_acquire` by the milliseconds it holds.
#[derive(Default)]
struct SlowAcquire(std::sync::atomic::AtomicU64);

#[leader_core::async_trait]
impl leader_core::layer::Intercept for SlowAcquire {
    async fn before(&self, op: leader_core::layer::Op, _election: &str) -> leader_core::Result<()> {
        if op == leader_core::layer::Op::TryAcquire {
            sleep(Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))).await;
        }
        Ok(())
    }
}

/// Seeds 21231, 21793 and 25992 of `sim_memory` (participants in manual mode): a `try_acquire()`
/// in flight when `stop()` began (a manual renew) came back after `stop()` had ended the tenure,
/// found the lease given up, released it and acquired a new one: the participant led again, with
/// a lease `stop()` did not release, after `stop()` returned (its streams ended on an `Acquired`).
/// An acquire now begins no tenure while a `stop()` is under way; it releases what it got.
#[tokio::test(start_paused = true)]
async fn an_acquire_in_flight_during_stop_does_not_lead_afterwards() {
    use leader_core::layer::{InterceptLayer, LeaseStoreExt};
    let memory = leader_memory::MemoryStore::new();
    let slow = Arc::new(SlowAcquire::default());
    let store: Arc<dyn LeaseStore> = Arc::new(memory.clone());
    let store = store.layer(InterceptLayer::new(slow.clone()));
    let a = election(store, "a"); // manual mode: never started
    assert!(a.try_acquire().await.unwrap());
    slow.0.store(300, std::sync::atomic::Ordering::SeqCst);
    let renew = tokio::spawn({
        let a = a.clone();
        async move { a.try_acquire().await }
    });
    sleep(Duration::from_millis(10)).await;
    a.stop().await.unwrap();
    let _ = renew.await.unwrap();
    assert!(!a.is_leader(), "leads after stop() returned");
    sleep(Duration::from_secs(1)).await;
    assert!(!a.is_leader(), "leads after stop() returned");
    assert!(memory.current("jobs").await.unwrap().is_none(), "a lease of ours is left in the store");
    // stop() is not the end of manual mode: the next try_acquire leads again.
    slow.0.store(0, std::sync::atomic::Ordering::SeqCst);
    assert!(a.try_acquire().await.unwrap());
}

/// What remains of the case of seeds 3, 6, 7 and 11 once a `stop()` from inside the work ends its
/// streams as it returns: a `start()` from another task while a `stop()` still hands over (its
/// work runs out its grace). The streams taken after that `start()` belong to the new run and
/// outlive the old `stop()`.
#[tokio::test(start_paused = true)]
async fn a_start_during_a_stops_hand_over_keeps_the_new_runs_streams() {
    use futures::StreamExt;
    let (_m, _c, store) = stores();
    let a = election(store, "a");
    timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    let worker = a.clone();
    let work = tokio::spawn(async move { worker.run_as_leader(|_l| sleep(Duration::from_secs(30))).await });
    sleep(Duration::from_millis(100)).await;
    let stopper = a.clone();
    let stop = tokio::spawn(async move { stopper.stop().await }); // waits for the work's grace
    sleep(Duration::from_millis(100)).await;
    a.start().await.unwrap();
    let mut after = a.changes();
    assert_eq!(after.next().await.unwrap().reason, leader_core::ChangeReason::Subscribed);
    stop.await.unwrap().unwrap();
    let _ = work.await;
    let next = timeout(Duration::from_secs(5), after.next()).await.expect("a change of the new run");
    assert!(next.is_some(), "the new run's stream ended with the old stop()");
    a.stop().await.unwrap();
}
