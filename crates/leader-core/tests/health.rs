//! Health-based step-down (both directions) and the health report.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{election, options, stores};
use futures::StreamExt;
use leader_core::{ChangeKind, ChangeReason, Election, LeaseStore};
use tokio::time::{sleep, timeout, Instant};

#[tokio::test(start_paused = true)]
async fn unhealthy_leader_releases_within_one_renew_interval_and_recovers() {
    let (memory, _c, store) = stores();
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
    let mut changes = a.changes();
    let first = a.wait_for_leadership().await.unwrap();
    b.start().await.unwrap();
    healthy.store(false, Ordering::SeqCst);
    let marked = Instant::now();
    first.lost().await;
    assert!(marked.elapsed() <= options().renew_interval, "stepped down after {:?}", marked.elapsed());
    let lost = loop {
        let c = timeout(Duration::from_secs(30), changes.next()).await.unwrap().unwrap();
        if c.kind == ChangeKind::Lost {
            break c;
        }
    };
    assert_eq!(lost.reason, ChangeReason::Unhealthy);
    let b_lead = b.wait_for_leadership().await.unwrap();
    assert!(b_lead.token() > first.token());
    assert_eq!(a.health().healthy, Some(false));
    // While unhealthy, a does not campaign even when the lease is free.
    b.stop().await.unwrap();
    sleep(options().lease_duration * 2).await;
    assert!(!a.is_leader());
    assert!(memory.current("jobs").await.unwrap().is_none());
    // Healthy again: it campaigns and leads.
    healthy.store(true, Ordering::SeqCst);
    let again = timeout(Duration::from_secs(30), a.wait_for_leadership()).await.unwrap().unwrap();
    assert!(again.token() > b_lead.token());
    assert_eq!(a.health().healthy, Some(true));
}

#[tokio::test(start_paused = true)]
async fn health_report_describes_the_participant() {
    let (_m, control, store) = stores();
    let a = election(store, "a");
    let before = a.health();
    assert!(!before.is_leader && before.last_renew_age.is_none() && before.deadline_remaining.is_none());
    a.wait_for_leadership().await.unwrap();
    sleep(Duration::from_millis(100)).await;
    let report = a.health();
    assert!(report.is_leader && report.store_reachable);
    assert!(report.deadline_remaining.unwrap() <= options().renew_deadline);
    assert!(report.last_renew_age.unwrap() < options().renew_interval);
    assert_eq!(report.current_leader.unwrap().participant_id, "a");
    assert_eq!(report.healthy, None);
    control.set_down(true);
    sleep(options().lease_duration).await;
    let down = a.health();
    assert!(!down.store_reachable && !down.is_leader);
    let json = serde_json::to_value(&down).unwrap();
    assert_eq!(json["is_leader"], false);
}
