//! A three-member etcd cluster on loopback, started by this test (client ports 52390, 52392,
//! 52394; peer ports one above each; state under `.servers/etcd-cluster`): a subset of the
//! conformance suite against it, then the cluster's Raft leader is killed while an election runs:
//! no two participants lead at once, tokens grow, and a participant leads again (with a renew or
//! acquire the surviving members answered) within 2 × lease + etcd's election timeout + retry.
//!
//! Runs when etcd tests are wanted here (`LEADER_TEST_ETCD_URL` is set; a missing etcd binary then
//! fails it). One test, so the cluster comes up once per binary; nextest's `topologies` group and
//! a mutex keep topologies one at a time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, fresh_dir, options, url, wait_serving, Member, LEASE};
use leader_core::{Election, ElectionOptions, LeaseStore, Result};
use leader_etcd::{etcd_client, EtcdStore};
use leader_testkit::{Provider, TenureRecorder};
use tokio::time::Instant;

static TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// etcd's default election timeout (the members run with the defaults: heartbeat 100 ms,
/// election timeout 1 s).
const ETCD_ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// The scenarios run against the cluster: elections, handovers, crashes, tokens, reads and the
/// watch, with every participant spread over all three members.
const SUBSET: &[&str] = &[
    "concurrent_start",
    "graceful_release_takeover",
    "release_hands_over",
    "crash_takeover",
    "tokens_strictly_increase",
    "idempotent_acquire",
    "late_release_cannot_touch_successor",
    "run_as_leader_exclusive",
    "list_elections",
    "observe_follows_holder",
    "metadata_visible_to_followers",
    "elections_share_one_handle",
];

struct Cluster {
    url: String,
}

#[leader_core::async_trait]
impl Provider for Cluster {
    fn name(&self) -> &'static str {
        "etcd"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(EtcdStore::connect(&self.url).await?))
    }
    fn options(&self) -> ElectionOptions {
        options()
    }
}

async fn start_cluster() -> Vec<Member> {
    let dirs = fresh_dir("etcd-cluster");
    let ports = [(52390u16, 52391u16), (52392, 52393), (52394, 52395)];
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("n{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| Member::new(&dirs, &format!("n{i}"), *client, *peer, &cluster))
        .collect();
    for m in &mut members {
        m.start(&[]);
    }
    let endpoints: Vec<String> = members.iter().map(Member::endpoint).collect();
    if let Err(e) = wait_serving(&endpoints, Duration::from_secs(60)).await {
        let logs: Vec<String> = members.iter().map(|m| format!("--- {}:\n{}", m.name, m.log_tail())).collect();
        panic!("the cluster did not come up: {e}\n{}", logs.join("\n"));
    }
    members
}

/// The member that is the cluster's Raft leader now (asked of every running member).
async fn raft_leader(members: &[Member]) -> Option<usize> {
    for m in members.iter().filter(|m| m.is_running()) {
        let ask = async {
            let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(2));
            let mut c = etcd_client::Client::connect([m.endpoint()], Some(options)).await?;
            c.status().await
        };
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(3), ask).await {
            let leader = status.leader();
            let mut list = etcd_client::Client::connect([m.endpoint()], None).await.ok()?;
            let members_list = list.member_list().await.ok()?;
            let name = members_list.members().iter().find(|x| x.id() == leader)?.name().to_owned();
            return members.iter().position(|x| x.name == name);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster() {
    if url().is_none() {
        return;
    }
    let _one_topology = TOPOLOGY.lock().await;
    let mut members = start_cluster().await;
    let endpoints: Vec<String> = members.iter().map(Member::endpoint).collect();
    let url = format!("etcd://{}/cluster-test", endpoints.join(","));

    // 1. The conformance subset, concurrently, each scenario on its own election.
    let provider: Arc<dyn Provider> = Arc::new(Cluster { url: url.clone() });
    let mut runs = Vec::new();
    for scenario in leader_testkit::SCENARIOS.iter().filter(|s| SUBSET.contains(&s.name)) {
        let provider = provider.clone();
        runs.push((scenario.name, tokio::spawn((scenario.run)(provider))));
    }
    assert_eq!(runs.len(), SUBSET.len(), "every scenario of the subset exists");
    let mut failures = Vec::new();
    for (name, run) in runs {
        match tokio::time::timeout(Duration::from_secs(240), run).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(f))) => failures.push(format!("{name}: {f}")),
            Ok(Err(panic)) => failures.push(format!("{name}: panicked: {panic}")),
            Err(_) => failures.push(format!("{name}: did not finish")),
        }
    }
    assert!(failures.is_empty(), "conformance scenarios failed on the cluster:\n{}", failures.join("\n"));

    // 2. Kill the Raft leader while an election runs.
    let rec = TenureRecorder::new();
    let mut parts = Vec::new();
    for p in ["a", "b", "c"] {
        let store = Arc::new(EtcdStore::connect(&url).await.unwrap());
        let e = Election::new(store, "raft-leader-killed", p, options()).unwrap();
        rec.track(&e);
        e.start().await.unwrap();
        parts.push(e);
    }
    assert!(eventually(Duration::from_secs(10), || parts.iter().filter(|e| e.is_leader()).count() == 1).await);
    let before = parts.iter().find(|e| e.is_leader()).unwrap().leadership().unwrap().token();
    let victim = raft_leader(&members).await.expect("the cluster has a leader");
    // Let a renew cycle or two go by first, so the kill lands in the middle of the election.
    tokio::time::sleep(options().renew_interval + Duration::from_millis(fastrand_ms())).await;
    members[victim].kill();
    let killed = Instant::now();
    let o = options();
    let bound = LEASE * 2 + ETCD_ELECTION_TIMEOUT + o.retry_interval;
    // A leader again: one whose tenure was acquired or renewed by a call sent after the kill
    // (its deadline is that send time + renew_deadline), so the surviving members answered.
    let again = eventually(bound, || {
        parts.iter().any(|e| e.leadership().is_some_and(|l| l.valid_until() > killed + o.renew_deadline))
    })
    .await;
    let took = killed.elapsed();
    assert!(again, "no leader answered by the surviving members within {bound:?} of killing the Raft leader");
    let new_raft_leader = raft_leader(&members).await;
    eprintln!(
        "leader-etcd: killed the Raft leader {}; a participant led again (renewed or acquired) {took:?} later; \
         new Raft leader {:?}",
        members[victim].name,
        new_raft_leader.map(|i| members[i].name.clone())
    );
    // Hand over once more on the two remaining members: tokens grow.
    assert!(eventually(Duration::from_secs(5), || parts.iter().any(|e| e.is_leader())).await, "a leader");
    let leader = parts.iter().find(|e| e.is_leader()).expect("a leader");
    let token = leader.leadership().unwrap().token();
    assert!(token >= before);
    leader.stop().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || parts
            .iter()
            .any(|e| e.is_leader() && e.participant_id() != leader.participant_id()))
        .await,
        "handover after the kill"
    );
    let next = parts.iter().find(|e| e.is_leader()).unwrap().leadership().unwrap().token();
    assert!(next > token, "{next} > {token}");
    for e in &parts {
        e.stop().await.unwrap();
    }
    if let Err(f) = rec.check() {
        panic!("tenures across the Raft leader's death: {f}");
    }
    drop(members);
}

/// A random 0-999 ms, so the kill lands anywhere in the renew cycle.
fn fastrand_ms() -> u64 {
    fastrand::u64(0..1000)
}
