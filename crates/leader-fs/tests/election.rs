//! `Election` over `FsStore`: handover by push, and a dropped `Election` whose store lives on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leader_core::{Election, ElectionOptions, LeaseStore, Result};
use leader_fs::FsStore;

const LEASE: Duration = Duration::from_secs(3);

async fn participants(dir: &std::path::Path, election: &str, n: usize) -> Result<Vec<Election>> {
    let mut out = Vec::new();
    for i in 0..n {
        let store: Arc<dyn LeaseStore> = Arc::new(FsStore::open(dir)?);
        let e = Election::builder(store, election)
            .participant_id(format!("p{i}"))
            .options(ElectionOptions::from_lease(LEASE))
            .build()?;
        e.start().await?;
        out.push(e);
    }
    Ok(out)
}

async fn one_leader(all: &[Election], bound: Duration) -> Option<usize> {
    let start = Instant::now();
    while start.elapsed() < bound {
        let leaders: Vec<usize> = (0..all.len()).filter(|&i| all[i].is_leader()).collect();
        assert!(leaders.len() <= 1, "two leaders: {leaders:?}");
        if let [i] = leaders[..] {
            return Some(i);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_hands_over_by_push_well_before_the_lease() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = participants(dir.path(), "handover", 3).await?;
    let first = one_leader(&all, Duration::from_secs(5)).await.expect("a leader");
    let t1 = all[first].leadership().map(|l| l.token()).expect("token");
    // Let the followers settle into their kernel wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    all.remove(first).stop().await?;
    let next = one_leader(&all, Duration::from_secs(2)).await.expect("another leader within 2 s");
    let took = start.elapsed();
    eprintln!("stop() -> next leader in {took:?} (lease {LEASE:?})");
    assert!(all[next].leadership().map(|l| l.token()).expect("token") > t1);
    for e in &all {
        e.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_election_is_reaped_after_its_lease_even_if_its_store_lives() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let shared: Arc<dyn LeaseStore> = Arc::new(FsStore::open(dir.path())?);
    let a = Election::builder(shared.clone(), "dropped")
        .participant_id("a")
        .options(ElectionOptions::from_lease(Duration::from_secs(2)))
        .build()?;
    a.start().await?;
    a.wait_for_leadership().await?;
    let b = Election::builder(Arc::new(FsStore::open(dir.path())?), "dropped")
        .participant_id("b")
        .options(ElectionOptions::from_lease(Duration::from_secs(2)))
        .build()?;
    b.start().await?;
    let dropped = Instant::now();
    drop(a); // no release; `shared` still holds the lock until the reaper frees it at the TTL
    let took = async {
        while !b.is_leader() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        dropped.elapsed()
    };
    let took = tokio::time::timeout(Duration::from_secs(5), took).await.expect("b leads within lease + slack");
    eprintln!("dropped Election -> other leads in {took:?} (lease 2 s)");
    assert!(took >= Duration::from_millis(1000), "not before the old leader's deadline: {took:?}");
    b.stop().await?;
    drop(shared);
    Ok(())
}
