//! A real Redis Cluster on loopback (3 primaries + 3 replicas, `redis-cli --cluster create`,
//! ports 55001-55006), brought up by each test: the conformance subset against it, and a primary
//! killed during an election (the replica takes over after `cluster-node-timeout`).
//!
//! In nextest's `topologies` test group (one topology at a time); under plain `cargo test` the
//! tests of this binary take turns through `ONE_AT_A_TIME`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::election;
use common::topology::{
    after_failover, participants, run_scenarios, wanted, Cluster, TopologyProvider, CLUSTER_NODE_TIMEOUT,
    ONE_AT_A_TIME, SUBSET,
};
use leader_redis::RedisStore;

const LEASE: Duration = Duration::from_secs(2);

/// A fresh cluster elects once its nodes have been up for longer than the lease (first contact);
/// the tests start after that rather than measure it.
async fn started() -> Cluster {
    let cluster = Cluster::start().await;
    tokio::time::sleep_until((cluster.started + LEASE + Duration::from_secs(1)).into()).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_conformance_subset() {
    if !wanted() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = started().await;
    let provider = std::sync::Arc::new(TopologyProvider::new(&cluster.url()).await);
    println!("conformance subset against the cluster {}:", cluster.url());
    let failures = run_scenarios(provider, SUBSET).await;
    assert!(failures.is_empty(), "{} of {} scenarios failed: {failures:?}", failures.len(), SUBSET.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_killed_during_an_election() {
    if !wanted() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = started().await;
    let url = cluster.url();
    let name = election("cluster-failover");
    let (elections, recorder) =
        participants(&name, 3, LEASE, || async { RedisStore::builder(&url).build().await.unwrap() }).await;
    let slot = leader_redis::fred::util::redis_keyslot(format!("leader:{{{name}}}:lease").as_bytes());
    let primary = cluster.primary_of(slot).expect("a primary serves the election's slot");
    tokio::time::sleep(LEASE).await;

    let killed = tokio::time::Instant::now();
    cluster.node(primary).kill().await;
    common::topology::until(Duration::from_secs(30), "a replica takes over the slot", || {
        cluster.primary_of(slot).is_some_and(|p| p != primary)
    })
    .await;
    let promoted = killed.elapsed();
    // The promoted replica refuses to elect for a lease, and says why.
    let mut reason = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reason.is_none() && tokio::time::Instant::now() < deadline {
        reason = elections.iter().find_map(|e| e.health().refused.map(|r| r.reason));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reason = reason.expect("a participant saw the promoted replica refuse");
    assert!(reason.contains("promoted"), "{reason}");
    let report = after_failover(&elections, &recorder, killed, LEASE, Duration::from_secs(30)).await;
    println!(
        "cluster failover (lease {LEASE:?}, cluster-node-timeout {CLUSTER_NODE_TIMEOUT:?}): primary {primary} killed; \
         replica promoted after {promoted:.2?}; old leader stepped down after {:.2?}; new leader after {:.2?}; \
         overlaps: {}",
        report.stepped_down,
        report.new_leader,
        report.overlaps.len()
    );
    println!("tenures (from the kill): {}", report.timeline);
    // Claimed (README): a crashed primary's replica waits one lease from its promotion, so no two
    // leaders overlap, and tokens keep growing.
    assert!(report.overlaps.is_empty(), "two leaders across the failover: {:?}", report.overlaps);
    recorder.check().unwrap();
}
