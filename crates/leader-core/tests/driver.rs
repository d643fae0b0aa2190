//! The driver loop under paused time: renew cadence, step-down at the deadline, stop, events.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{election, options, stores, LEASE};
use futures::StreamExt;
use leader_core::{ChangeKind, ChangeReason, Election, ErrorKind, LeaseStore};
use tokio::time::{sleep, timeout, Instant};

async fn next(changes: &mut leader_core::LeadershipChanges) -> leader_core::LeadershipChange {
    timeout(Duration::from_secs(60), changes.next()).await.expect("a change within 60 s").expect("stream open")
}

#[tokio::test(start_paused = true)]
async fn renews_every_renew_interval() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    let before = control.renews();
    sleep(options().renew_interval * 10 + Duration::from_millis(10)).await;
    let renews = control.renews() - before;
    assert!((9..=11).contains(&renews), "expected about 10 renews in 10 intervals, saw {renews}");
    assert!(a.is_leader());
}

#[tokio::test(start_paused = true)]
async fn steps_down_at_the_deadline_when_renewals_hang() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let mut changes = a.changes();
    assert_eq!(next(&mut changes).await.reason, ChangeReason::Subscribed);
    let leadership = a.wait_for_leadership().await.unwrap();
    assert_eq!(next(&mut changes).await.kind, ChangeKind::Acquired);
    control.set_hang(true);
    let deadline = leadership.valid_until();
    // Just before the deadline (a renew was sent after acquiring, so the deadline may have moved
    // once before the hang began): still leader.
    tokio::time::sleep_until(leadership.valid_until() - Duration::from_millis(1)).await;
    assert!(a.is_leader());
    leadership.lost().await;
    assert!(Instant::now() >= deadline);
    assert!(!a.is_leader(), "is_leader must be false at the deadline");
    let lost = next(&mut changes).await;
    assert_eq!(lost.kind, ChangeKind::Lost);
    assert_eq!(lost.reason, ChangeReason::StoreUnavailable, "hung renewals time out");
    assert!(!lost.is_leader);
}

#[tokio::test(start_paused = true)]
async fn is_leader_is_false_past_the_deadline_even_if_the_task_is_stuck() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let leadership = a.wait_for_leadership().await.unwrap();
    control.set_hang(true);
    let deadline = leadership.valid_until();
    // Jump straight past the deadline without letting anything else run first.
    tokio::time::advance(deadline - Instant::now() + Duration::from_millis(1)).await;
    assert!(!a.is_leader());
    assert!(!leadership.is_valid());
    assert!(a.leadership().is_none());
}

#[tokio::test(start_paused = true)]
async fn no_renew_after_stop_and_the_lease_is_released() {
    let (memory, control, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    a.stop().await.unwrap();
    assert!(!a.is_leader());
    assert!(memory.current("jobs").await.unwrap().is_none(), "stop releases at once");
    let renews = control.renews();
    sleep(LEASE * 5).await;
    assert_eq!(control.renews(), renews);
}

#[tokio::test(start_paused = true)]
async fn acquire_renew_lose_reacquire_events() {
    let (memory, _control, store) = stores();
    let a = election(store, "a");
    let mut changes = a.changes();
    let first = next(&mut changes).await;
    assert_eq!(
        (first.kind, first.reason, first.is_leader),
        (ChangeKind::LeaderChanged, ChangeReason::Subscribed, false)
    );
    a.start().await.unwrap();
    let acquired = next(&mut changes).await;
    assert_eq!((acquired.kind, acquired.reason), (ChangeKind::Acquired, ChangeReason::Elected));
    let t1 = acquired.token().unwrap();
    sleep(LEASE * 2).await; // renewals happen; no events
    assert!(memory.expire_now("jobs"));
    let lost = next(&mut changes).await;
    assert_eq!((lost.kind, lost.reason), (ChangeKind::Lost, ChangeReason::Expired));
    assert_eq!(lost.previous.as_ref().map(|l| l.token), Some(t1));
    let again = next(&mut changes).await;
    assert_eq!(again.kind, ChangeKind::Acquired);
    assert!(again.token().unwrap() > t1, "a fresh acquisition has a greater token");
}

#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_gets_missed_and_never_slows_the_election() {
    let (memory, control, store) = stores();
    let mut opts = options();
    opts.event_buffer = 2;
    let a = Election::new(store, "jobs", "a", opts).unwrap();
    let mut slow = a.changes();
    a.start().await.unwrap();
    for _ in 0..4 {
        let l = a.wait_for_leadership().await.unwrap();
        memory.expire_now("jobs");
        l.lost().await;
    }
    a.wait_for_leadership().await.unwrap();
    let renews = control.renews();
    sleep(LEASE * 2).await;
    assert!(control.renews() > renews, "renewals go on while the subscriber does not read");
    assert_eq!(next(&mut slow).await.reason, ChangeReason::Subscribed);
    let after_gap = next(&mut slow).await;
    assert!(after_gap.missed > 0, "the first change after overflow says how many were missed");
}

#[tokio::test(start_paused = true)]
async fn follower_takes_over_on_release_through_watch() {
    let (_m, control, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    a.wait_for_leadership().await.unwrap();
    b.start().await.unwrap();
    sleep(Duration::from_millis(10)).await;
    assert!(!b.is_leader());
    let acquires = control.acquires.load(std::sync::atomic::Ordering::SeqCst);
    let released = Instant::now();
    a.release().await.unwrap();
    b.wait_for_leadership().await.unwrap();
    assert!(released.elapsed() < options().retry_interval / 2, "push, not poll: {:?}", released.elapsed());
    assert!(control.acquires.load(std::sync::atomic::Ordering::SeqCst) - acquires <= 3);
    // a abstains: it does not take the lease back while b leads
    sleep(LEASE * 2).await;
    assert!(b.is_leader() && !a.is_leader());
}

#[tokio::test(start_paused = true)]
async fn release_abstains_for_one_lease_when_nobody_else_campaigns() {
    let (_m, _c, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    let released = Instant::now();
    a.release().await.unwrap();
    let again = a.wait_for_leadership().await.unwrap();
    assert!(
        released.elapsed() >= LEASE + options().retry_interval,
        "re-acquired after {:?}, before one lease and one retry passed",
        released.elapsed()
    );
    assert!(again.token() > leader_core::FencingToken::new(1));
}

#[tokio::test(start_paused = true)]
async fn a_lease_given_up_locally_is_not_resumed_with_the_same_token() {
    let (memory, control, store) = stores();
    let a = election(store, "a");
    let first = a.wait_for_leadership().await.unwrap();
    // Renewals hang past the deadline: a steps down locally while the store still holds its lease.
    control.set_hang(true);
    first.lost().await;
    assert_eq!(memory.current("jobs").await.unwrap().map(|l| l.token), Some(first.token()));
    control.set_hang(false);
    let second = a.wait_for_leadership().await.unwrap();
    assert!(second.token() > first.token(), "{} then {}", first.token(), second.token());
}

#[tokio::test(start_paused = true)]
async fn store_outage_steps_down_and_reelects_when_it_returns() {
    let (_m, control, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    let first = a.wait_for_leadership().await.unwrap();
    b.start().await.unwrap();
    control.set_down(true);
    first.lost().await;
    assert!(!a.is_leader() && !b.is_leader());
    sleep(LEASE * 2).await;
    assert!(!a.is_leader() && !b.is_leader(), "nobody leads while the store is down");
    control.set_down(false);
    let winner =
        tokio::select! { l = a.wait_for_leadership() => l.unwrap(), l = b.wait_for_leadership() => l.unwrap() };
    assert!(winner.token() > first.token());
}

#[tokio::test(start_paused = true)]
async fn manual_mode_renews_with_try_acquire_and_loses_at_the_deadline() {
    let (_m, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    assert!(a.try_acquire().await.unwrap());
    let t = a.leadership().unwrap().token();
    sleep(options().renew_interval).await;
    assert!(a.try_acquire().await.unwrap());
    assert_eq!(a.leadership().unwrap().token(), t, "renewing by try_acquire keeps the token");
    assert!(!b.try_acquire().await.unwrap());
    assert_eq!(b.current_leader().map(|l| l.participant_id), Some("a".to_owned()));
    let mut changes = a.changes();
    next(&mut changes).await;
    sleep(options().renew_deadline).await;
    assert!(!a.is_leader());
    assert_eq!(next(&mut changes).await.kind, ChangeKind::Lost, "the watchdog emits Lost without a driver");
    a.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn run_as_leader_releases_when_the_work_returns() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    let token = a.run_as_leader(|l| async move { l.token() }).await.unwrap();
    assert!(token.get() > 0);
    assert!(!a.is_leader());
    assert!(memory.current("jobs").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn run_as_leader_cancels_work_that_outlives_its_leadership() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let hang = control.clone();
    let result = a
        .run_as_leader(|l| async move {
            s.notify_one();
            hang.set_hang(true);
            let deadline = l.valid_until();
            std::future::pending::<()>().await;
            deadline
        })
        .await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::LeadershipLost);
}

#[tokio::test(start_paused = true)]
async fn run_as_leader_work_that_stops_at_lost_returns_its_output() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let out = a
        .run_as_leader(|l| {
            let control = control.clone();
            async move {
                control.set_hang(true);
                l.lost().await;
                "stopped cleanly"
            }
        })
        .await
        .unwrap();
    assert_eq!(out, "stopped cleanly");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_task_without_leaks() {
    let (memory, control, store) = stores();
    let weak = Arc::downgrade(&store);
    let a = election(store, "a");
    let mut changes = a.changes();
    a.wait_for_leadership().await.unwrap();
    let clone = a.clone();
    drop(a);
    assert!(clone.is_leader(), "a clone keeps the participant alive");
    drop(clone);
    next(&mut changes).await; // Subscribed
    next(&mut changes).await; // Acquired
    let lost = next(&mut changes).await;
    assert_eq!((lost.kind, lost.reason), (ChangeKind::Lost, ChangeReason::Stopped));
    let renews = control.renews();
    sleep(LEASE).await;
    assert_eq!(control.renews(), renews, "no renew after drop");
    assert!(weak.upgrade().is_none(), "the background task and watchdog let go of the store");
    assert!(changes.next().await.is_none(), "the stream ends when the election is gone");
    // Drop does not release: the lease expires in the store.
    assert!(memory.current("jobs").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn set_metadata_updates_the_held_lease() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    let md: leader_core::Metadata = [("hostname".to_owned(), "web-1".to_owned())].into();
    a.set_metadata(md.clone()).await.unwrap();
    assert_eq!(memory.current("jobs").await.unwrap().unwrap().metadata, md);
    let bad: leader_core::Metadata = [("bad key".to_owned(), "x".to_owned())].into();
    assert_eq!(a.set_metadata(bad).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(start_paused = true)]
async fn stop_then_start_leads_again() {
    let (_m, _c, store) = stores();
    let a = election(store, "a");
    let first = a.wait_for_leadership().await.unwrap();
    a.stop().await.unwrap();
    assert!(a.wait_for_leadership().await.is_ok());
    assert!(a.leadership().unwrap().token() > first.token());
}

#[tokio::test(start_paused = true)]
async fn wait_for_leadership_fails_when_stopped() {
    let (_m, _c, store) = stores();
    let a = election(store.clone(), "a");
    let b = election(store, "b");
    a.wait_for_leadership().await.unwrap();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_leadership().await }
    });
    sleep(Duration::from_millis(100)).await;
    b.stop().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap_err().kind(), ErrorKind::Stopped);
}

#[tokio::test(start_paused = true)]
async fn stop_on_releases_when_the_signal_fires() {
    let (memory, _c, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = a.stop_on(async move {
        let _ = rx.await;
    });
    sleep(LEASE).await;
    assert!(a.is_leader());
    tx.send(()).unwrap();
    done.await.unwrap().unwrap();
    assert!(!a.is_leader());
    assert!(memory.current("jobs").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn stop_releases_the_held_lease_without_an_extra_read() {
    let (memory, control, store) = stores();
    let a = election(store, "a");
    a.wait_for_leadership().await.unwrap();
    let calls = control.calls.load(std::sync::atomic::Ordering::SeqCst);
    a.stop().await.unwrap();
    // release + withdraw, nothing else
    assert_eq!(control.calls.load(std::sync::atomic::Ordering::SeqCst) - calls, 2);
    assert!(memory.current("jobs").await.unwrap().is_none());
}
