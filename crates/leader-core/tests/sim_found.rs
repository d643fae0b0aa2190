//! Defects the randomised simulation (`leader_testkit::sim`) found, each pinned by a paused-time
//! test that failed before its fix. The seed that found it is named in each test's docs.

mod common;

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
