//! Every way a tenure ends, seen from `run_as_leader` work (guarantee 1 for work, guarantee 3),
//! under paused time: stop, release, health step-down, a renew answered "not yours", the deadline,
//! a host suspend, a driver panic, calls from inside the work, and the streams around them.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{election, options, stores, LEASE};
use futures::StreamExt;
use leader_core::clock::SuspendClock;
use leader_core::{
    Acquire, AcquireRequest, Capabilities, ChangeKind, ChangeReason, Election, ElectionOptions, ErrorKind, LeaderInfo,
    Lease, LeaseStore, Metadata, Result,
};
use leader_memory::MemoryStore;
use tokio::time::{sleep, timeout, Instant};

/// `lease_duration - renew_deadline - drift_allowance` for the test options: how long work may run
/// on after its tenure ended.
fn grace() -> Duration {
    options().work_grace()
}

/// Records when a piece of work ended (returned or was dropped).
#[derive(Clone, Default)]
struct WorkLog(Arc<Mutex<Option<Instant>>>);

impl WorkLog {
    fn ended(&self) -> Option<Instant> {
        *self.0.lock().unwrap()
    }
}

struct EndOnDrop(WorkLog);
impl Drop for EndOnDrop {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap() = Some(Instant::now());
    }
}

/// Runs work that ignores `lost()` (a 30 s job) as `a`'s leader work, in a task of its own.
fn stubborn(a: &Election, log: &WorkLog) -> tokio::task::JoinHandle<Result<()>> {
    let a = a.clone();
    let log = log.clone();
    tokio::spawn(async move {
        a.run_as_leader(|_l| async move {
            let _end = EndOnDrop(log);
            sleep(Duration::from_secs(30)).await;
        })
        .await
    })
}

async fn leads(e: &Election) -> leader_core::Leadership {
    timeout(Duration::from_secs(60), e.wait_for_leadership()).await.expect("leads in time").expect("leads")
}

/// The successor's tenure begins only after the stubborn work ended, and the work got its grace.
async fn check_handover(log: &WorkLog, ended_at: Instant, b: &Election, runner: tokio::task::JoinHandle<Result<()>>) {
    let b_lead = leads(b).await;
    let work_end = log.ended().expect("the work ended");
    assert!(
        b_lead.started() >= work_end,
        "the successor led {:?} before the old work ended",
        work_end - b_lead.started()
    );
    let ran = work_end - ended_at;
    assert!(ran <= grace() + Duration::from_millis(10), "the work ran {ran:?} after the tenure ended");
    assert!(ran + Duration::from_millis(10) >= grace(), "the work was cut short: {ran:?} < {:?}", grace());
    let err = runner.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeadershipLost, "{err}");
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_the_work_before_the_successor_leads() {
    let (_m, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    leads(&a).await;
    b.start().await.unwrap();
    let log = WorkLog::default();
    let runner = stubborn(&a, &log);
    sleep(Duration::from_millis(500)).await;
    let stopped_at = Instant::now();
    a.stop().await.unwrap();
    assert!(log.ended().is_some(), "stop() returned before the work ended");
    check_handover(&log, stopped_at, &b, runner).await;
}

#[tokio::test(start_paused = true)]
async fn release_waits_for_the_work_before_the_successor_leads() {
    let (_m, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    leads(&a).await;
    b.start().await.unwrap();
    let log = WorkLog::default();
    let runner = stubborn(&a, &log);
    sleep(Duration::from_millis(500)).await;
    let released_at = Instant::now();
    a.release().await.unwrap();
    assert!(!a.is_leader());
    check_handover(&log, released_at, &b, runner).await;
}

#[tokio::test(start_paused = true)]
async fn health_step_down_waits_for_the_work_before_the_successor_leads() {
    let (_m, _c, store) = stores();
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let a = Election::builder(store.clone(), "jobs")
        .participant_id("a")
        .options(options())
        .health_check(move || {
            let flag = flag.clone();
            async move { flag.load(Ordering::SeqCst) }
        })
        .build()
        .unwrap();
    let b = election(store, "b");
    let first = leads(&a).await;
    b.start().await.unwrap();
    let log = WorkLog::default();
    let runner = stubborn(&a, &log);
    healthy.store(false, Ordering::SeqCst);
    first.lost().await;
    let ended_at = Instant::now();
    check_handover(&log, ended_at, &b, runner).await;
}

#[tokio::test(start_paused = true)]
async fn a_renew_answered_not_yours_drops_the_work_at_once() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    let first = leads(&a).await;
    let log = WorkLog::default();
    let runner = stubborn(&a, &log);
    sleep(Duration::from_millis(100)).await;
    memory.expire_now("jobs"); // the store forgets the lease behind a's back
    first.lost().await;
    let lost_at = Instant::now();
    let err = runner.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeadershipLost);
    let ran = log.ended().unwrap() - lost_at;
    assert!(ran < Duration::from_millis(10), "the work ran on {ran:?} after the store said the lease was gone");
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_the_work_is_dropped_a_drift_allowance_before_the_lease_can_expire() {
    let (memory, control, store) = stores();
    let a = election(store, "a");
    let b = election(Arc::new(memory.clone()), "b");
    leads(&a).await;
    let log = WorkLog::default();
    let runner = stubborn(&a, &log);
    sleep(Duration::from_millis(100)).await;
    control.set_hang(true); // a can no longer renew; b still reaches the store
    b.start().await.unwrap();
    let deadline = a.leadership().unwrap().valid_until();
    let b_lead = leads(&b).await;
    let work_end = log.ended().expect("the work was dropped");
    assert!(work_end <= deadline + grace() + Duration::from_millis(10), "dropped late");
    assert!(
        b_lead.started() >= work_end + options().drift_allowance,
        "the successor led {:?} after the old work ended; the margin is {:?}",
        b_lead.started().saturating_duration_since(work_end),
        options().drift_allowance
    );
    assert_eq!(runner.await.unwrap().unwrap_err().kind(), ErrorKind::LeadershipLost);
    control.set_hang(false);
}

#[tokio::test(start_paused = true)]
async fn run_as_leader_returns_at_once_when_the_work_ends_after_lost_even_if_the_store_hangs() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let first = leads(&a).await;
    let deadline = first.valid_until();
    let hang = control.clone();
    let out = a
        .run_as_leader(|l| async move {
            hang.set_hang(true);
            l.lost().await;
            "stopped at lost()"
        })
        .await
        .unwrap();
    assert_eq!(out, "stopped at lost()");
    let late = Instant::now() - deadline;
    assert!(late < Duration::from_millis(50), "run_as_leader returned {late:?} after the deadline");
    control.set_hang(false);
}

#[tokio::test(start_paused = true)]
async fn stop_from_inside_the_work_does_not_wait_for_itself_and_releases_after_it() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    leads(&a).await;
    let inner = a.clone();
    let mem = memory.clone();
    let out = timeout(
        Duration::from_secs(10),
        a.run_as_leader(|l| async move {
            inner.stop().await.unwrap();
            assert!(!l.is_valid(), "stop() ended the tenure");
            // The lease stays ours in the store while this work still runs.
            assert!(mem.current("jobs").await.unwrap().is_some(), "released while the work runs");
            sleep(Duration::from_millis(200)).await;
            "done"
        }),
    )
    .await
    .expect("no deadlock")
    .unwrap();
    assert_eq!(out, "done");
    // Released as soon as the work returned.
    sleep(Duration::from_millis(10)).await;
    assert!(memory.current("jobs").await.unwrap().is_none(), "released after the work returned");
}

#[tokio::test(start_paused = true)]
async fn release_from_inside_the_work_does_not_wait_for_itself() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    leads(&a).await;
    let inner = a.clone();
    let mem = memory.clone();
    let out = timeout(
        Duration::from_secs(10),
        a.run_as_leader(|_l| async move {
            inner.release().await.unwrap();
            assert!(mem.current("jobs").await.unwrap().is_some(), "released while the work runs");
            7
        }),
    )
    .await
    .expect("no deadlock")
    .unwrap();
    assert_eq!(out, 7);
    sleep(Duration::from_millis(10)).await;
    assert!(memory.current("jobs").await.unwrap().is_none());
}

/// A host that "sleeps" when told to: its suspended time advances while tokio's clock does not.
#[derive(Default)]
struct FakeSuspend(AtomicU64);
impl SuspendClock for FakeSuspend {
    fn suspended(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test(start_paused = true)]
async fn a_host_suspend_past_the_deadline_ends_the_tenure_on_resume() {
    let (_m, _c, store) = stores();
    let clock = Arc::new(FakeSuspend::default());
    let a = Election::builder(store, "jobs")
        .participant_id("a")
        .options(options())
        .suspend_clock(clock.clone())
        .build()
        .unwrap();
    let mut changes = a.changes();
    let first = leads(&a).await;
    let deadline = first.valid_until();
    // The host sleeps longer than renew_deadline: the monotonic clock has not moved at all.
    clock.0.store(options().renew_deadline.as_millis() as u64 + 500, Ordering::SeqCst);
    let resumed = Instant::now();
    assert!(resumed < deadline, "no monotonic time passed");
    assert!(!a.is_leader(), "is_leader() must count the time the host slept");
    assert!(first.valid_until() <= resumed, "valid_until() must count it too");
    timeout(leader_core::clock::SUSPEND_CHECK + Duration::from_millis(10), first.lost())
        .await
        .expect("lost() fires within SUSPEND_CHECK of the resume");
    loop {
        let c = timeout(Duration::from_secs(5), changes.next()).await.unwrap().unwrap();
        if c.kind == ChangeKind::Lost {
            assert_ne!(c.reason, ChangeReason::Stopped);
            break;
        }
    }
    a.stop().await.unwrap();
}

/// Delegates to a memory store, but its `watch` panics: the driver's first campaign panics.
struct PanickyWatch(MemoryStore);

#[leader_core::async_trait]
impl LeaseStore for PanickyWatch {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.0.try_acquire(req).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.0.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.0.release(lease).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.0.update_metadata(lease, metadata).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.0.withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.0.current(election).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.0.list(prefix).await
    }
    fn watch(&self, _election: &str, _instance_id: Option<&str>) -> Option<futures::stream::BoxStream<'static, ()>> {
        panic!("watch exploded");
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.0.check_options(options)
    }
}

#[tokio::test(start_paused = true)]
async fn a_driver_panic_ends_waits_and_streams_with_the_reason() {
    let store: Arc<dyn LeaseStore> = Arc::new(PanickyWatch(MemoryStore::new()));
    let a = election(store, "a");
    let mut changes = a.changes();
    let err = timeout(Duration::from_secs(10), a.wait_for_leadership()).await.expect("does not hang").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert!(err.to_string().contains("panicked") && err.to_string().contains("watch exploded"), "{err}");
    let rest: Vec<_> = timeout(Duration::from_secs(10), (&mut changes).collect::<Vec<_>>()).await.expect("ends");
    assert!(rest.iter().all(|c| c.kind != ChangeKind::Acquired || c.reason == ChangeReason::Subscribed));
    assert_eq!(a.health().phase, "stopped");
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_streams_taken_before_it_after_their_lost() {
    let (_m, _c, store) = stores();
    let a = election(store, "a");
    let mut before = a.changes();
    leads(&a).await;
    a.stop().await.unwrap();
    let items: Vec<_> =
        timeout(Duration::from_secs(1), (&mut before).collect::<Vec<_>>()).await.expect("the stream ends");
    let kinds: Vec<_> = items.iter().map(|c| (c.kind, c.reason)).collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::LeaderChanged, ChangeReason::Subscribed),
            (ChangeKind::Acquired, ChangeReason::Elected),
            (ChangeKind::Lost, ChangeReason::Stopped)
        ]
    );
    // A stream taken after stop() follows the next run.
    let mut after = a.changes();
    a.start().await.unwrap();
    let snapshot = after.next().await.unwrap();
    assert_eq!(snapshot.reason, ChangeReason::Subscribed);
    let next = timeout(Duration::from_secs(10), after.next()).await.unwrap().unwrap();
    assert_eq!(next.kind, ChangeKind::Acquired);
    // follow_restarts() carries on through a stop.
    let mut all = a.changes().follow_restarts();
    a.stop().await.unwrap();
    a.start().await.unwrap();
    let kinds: Vec<_> =
        timeout(Duration::from_secs(10), (&mut all).take(3).map(|c| c.kind).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(kinds, [ChangeKind::Acquired, ChangeKind::Lost, ChangeKind::Acquired]);
    a.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_on_does_not_keep_the_election_alive() {
    let (_m, _c, store) = stores();
    let weak_store = Arc::downgrade(&store);
    let a = election(store, "a");
    leads(&a).await;
    let waiter = a.stop_on(std::future::pending());
    drop(a);
    sleep(LEASE).await;
    assert!(weak_store.upgrade().is_none(), "the stop_on task kept the election (and its store) alive");
    waiter.abort();
}

#[tokio::test(start_paused = true)]
async fn dropping_a_following_election_withdraws_its_candidacy() {
    let (_m, control, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    leads(&a).await;
    b.start().await.unwrap();
    sleep(Duration::from_millis(100)).await;
    let before = control.withdraws.load(Ordering::SeqCst);
    drop(b);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(control.withdraws.load(Ordering::SeqCst), before + 1, "no withdraw after the follower was dropped");
    a.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_release_a_participant_is_never_told_its_own_ended_tenure_leads() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let mut changes = a.changes();
    let first = leads(&a).await;
    // A slow release: the driver's abstention reads the holder while the release is in flight.
    control.release_delay_ms.store(300, Ordering::SeqCst);
    a.release().await.unwrap();
    sleep(LEASE).await;
    let mut seen = Vec::new();
    while let Some(Some(c)) = futures::FutureExt::now_or_never(changes.next()) {
        seen.push(c);
    }
    for c in &seen {
        if c.kind == ChangeKind::LeaderChanged {
            assert!(
                c.current.as_ref().is_none_or(|h| h.instance_id != a.instance_id() || h.token > first.token()),
                "told that its own released tenure leads: {c:?}"
            );
        }
    }
    assert!(seen.iter().any(|c| c.kind == ChangeKind::Lost && c.reason == ChangeReason::Released), "{seen:?}");
    a.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_renew_answered_after_the_deadline_does_not_revive_the_tenure() {
    let (_m, control, store) = stores();
    let opts = ElectionOptions { operation_timeout: Duration::from_millis(900), ..options() };
    let a = Election::new(store, "jobs", "a", opts.clone()).unwrap();
    let mut changes = a.changes();
    let first = leads(&a).await;
    let deadline = first.valid_until();
    // The first renew fails; its retry is sent before the deadline and answered after it.
    control.set_down(true);
    sleep(opts.renew_interval + Duration::from_millis(50)).await;
    control.set_down(false);
    control.renew_delay_ms.store(800, Ordering::SeqCst);
    sleep_until_past(deadline).await;
    assert!(!a.is_leader());
    sleep(Duration::from_millis(600)).await; // the late answer has arrived by now
    assert!(!first.is_valid(), "a late renew revived the ended tenure");
    control.renew_delay_ms.store(0, Ordering::SeqCst);
    let again = leads(&a).await;
    assert!(again.token() > first.token(), "re-acquired with the old token");
    let mut acquired = Vec::new();
    while let Some(Some(c)) = futures::FutureExt::now_or_never(changes.next()) {
        if c.kind == ChangeKind::Acquired {
            acquired.push(c.token());
        }
    }
    assert_eq!(acquired.len(), 2, "one Acquired per tenure: {acquired:?}");
    a.stop().await.unwrap();
}

async fn sleep_until_past(t: Instant) {
    tokio::time::sleep_until(t + Duration::from_millis(1)).await;
}

#[test]
fn drift_allowance_is_validated_against_the_gap() {
    let base = ElectionOptions::from_lease(Duration::from_secs(3));
    assert_eq!(base.drift_allowance, Duration::from_millis(100));
    assert_eq!(ElectionOptions::from_lease(Duration::from_secs(60)).drift_allowance, Duration::from_millis(1200));
    let bad = ElectionOptions { drift_allowance: Duration::from_millis(500), ..base };
    let err = bad.validate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("drift_allowance (500ms)"), "{err}");
    for ms in [100, 600, 1000, 2000, 15_000] {
        ElectionOptions::from_lease(Duration::from_millis(ms)).validate().unwrap();
    }
}
