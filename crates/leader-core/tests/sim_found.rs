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
