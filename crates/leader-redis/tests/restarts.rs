//! Server lives: first contact with a server (old or young), restarts without persistence, from an
//! RDB snapshot and from an AOF written with `appendfsync everysec`. Every test but the first runs
//! its own private `redis-server` (ports 55200-55299, state under `.servers/redis-tests/`), which it
//! kills and starts again.
//!
//! The rule under test (crate docs, *Restarts and failovers*): an election whose record was written
//! in another life of the server (another `run_id`) or is missing elects nobody until one lease
//! after the server's start, the lease of that life is void, and tokens keep growing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{election, eventually, prefix, shared_url, wait_until_up_for, TempRedis};
use fred::prelude::*;
use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, Lease, LeaseStore, Metadata};
use leader_redis::RedisStore;
use tokio::time::Instant;

fn req(election: &str, who: &str, ttl: Duration) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-instance"),
        ttl,
        metadata: Metadata::new(),
    }
}

fn acquired(a: Acquire) -> Lease {
    match a {
        Acquire::Acquired(lease) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

/// Acquires for `r`, waiting out the young server's wait (at most `limit`; an earlier design
/// answered `Held(None)` while it waited).
async fn acquire_eventually(store: &RedisStore, r: &AcquireRequest, limit: Duration) -> Lease {
    let deadline = Instant::now() + limit;
    loop {
        match store.try_acquire(r).await.unwrap() {
            Acquire::Acquired(lease) => return lease,
            other @ (Acquire::Refused(_) | Acquire::Held(None)) => {
                assert!(Instant::now() < deadline, "still waiting after {limit:?}: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected Acquired or Refused, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_fresh_key_prefix_on_an_old_server_elects_at_once() {
    let Some(url) = shared_url() else { return };
    let lease = Duration::from_secs(2);
    // The shared server has been up for longer than the lease (the test waits if it has not).
    wait_until_up_for(&url, lease).await;
    // Default settings: no quarantine override, a key prefix this server has never seen.
    let store = RedisStore::builder(&url).key_prefix(prefix("fresh")).build().await.unwrap();
    let first = store.try_acquire(&req(&election("fresh"), "a", lease)).await.unwrap();
    assert!(matches!(first, Acquire::Acquired(_)), "a new prefix on an old server must not wait: {first:?}");
    // And a leader through the driver, at once.
    let e = Election::new(Arc::new(store), &election("fresh-run"), "e", ElectionOptions::from_lease(lease)).unwrap();
    e.start().await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), e.wait_for_leadership()).await.expect("leads at once").unwrap();
    println!("a fresh prefix on an old server: leader after {:?}", started.elapsed());
    e.stop().await.unwrap();
}

#[tokio::test]
async fn a_young_server_refuses_until_its_start_plus_the_lease_and_says_so() {
    if shared_url().is_none() {
        return;
    }
    let spawned = Instant::now();
    let redis = TempRedis::start().await;
    let store = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let lease = Duration::from_secs(3);
    match store.try_acquire(&req(&election("young"), "a", lease)).await.unwrap() {
        Acquire::Refused(refusal) => {
            let left = refusal.retry_in.expect("the refusal says until when");
            // Uptime is counted in whole seconds: the start is known to within one.
            assert!(left > Duration::ZERO && left <= lease + Duration::from_secs(1), "{left:?}");
            assert!(refusal.reason.contains("started"), "{}", refusal.reason);
            println!("try_acquire on a young server: {refusal:?}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // The election shows the wait in its health report, with the reason and until when.
    let name = election("young-run");
    let e = Election::new(store.clone(), &name, "e", ElectionOptions::from_lease(lease)).unwrap();
    e.start().await.unwrap();
    eventually(Duration::from_secs(2), "health shows the refusal", || async { e.health().refused.is_some() }).await;
    let health = e.health();
    let refused = health.refused.clone().unwrap();
    assert!(refused.remaining.is_some_and(|d| d <= lease + Duration::from_secs(1)), "{refused:?}");
    assert!(refused.until.is_some());
    assert!(health.store_reachable && !health.is_leader);
    println!("health() while the young server waits: {}", serde_json::to_string(&health).unwrap());
    // It leads once the server's start + the lease has passed, not before, and not a store-wide 60 s later.
    tokio::time::timeout(lease + Duration::from_secs(5), e.wait_for_leadership()).await.expect("leads").unwrap();
    let waited = spawned.elapsed();
    assert!(waited >= lease - Duration::from_millis(50), "elected {waited:?} after the server was spawned");
    assert!(e.health().refused.is_none(), "the refusal is cleared once it elects");
    println!("a young server: leader {waited:?} after the server was spawned (lease {lease:?})");
    e.stop().await.unwrap();
}

#[tokio::test]
async fn restart_without_persistence_no_second_leader_and_tokens_grow() {
    if shared_url().is_none() {
        return;
    }
    let mut redis = TempRedis::start().await;
    let lease = Duration::from_secs(2);
    let name = election("restart");
    let mk = || async { Arc::new(RedisStore::builder(&redis.url()).max_lease(lease).build().await.unwrap()) };
    let (sa, sb) = (mk().await, mk().await);
    let opts = ElectionOptions::from_lease(lease);
    let a = Election::new(sa.clone(), &name, "a", opts.clone()).unwrap();
    let b = Election::new(sb.clone(), &name, "b", opts.clone()).unwrap();
    a.start().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    b.start().await.unwrap();
    let before = first.token();

    redis.kill().await;
    let restarted = Instant::now();
    redis.start_again().await;
    // The lease is gone with the data; `a` still believes it leads until its local deadline, so
    // nobody may acquire before the server's start + one lease.
    let probe = RedisStore::builder(&redis.url()).max_lease(lease).build().await.unwrap();
    while restarted.elapsed() < lease - Duration::from_millis(300) {
        if let Ok(Acquire::Acquired(l)) = probe.try_acquire(&req(&name, "probe", lease)).await {
            panic!("acquired {:?} after the restart: {l:?}", restarted.elapsed());
        }
        assert!(!b.is_leader() || !a.is_leader(), "two leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Afterwards a leader is elected again, with a token above every earlier one.
    let mut seen = before;
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen == before {
        assert!(Instant::now() < deadline, "no leader within 15 s of the restart");
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        for e in [&a, &b] {
            if let Some(l) = e.leadership() {
                assert!(l.token() >= seen, "token went back: {} < {}", l.token(), seen);
                seen = l.token();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted.elapsed() >= lease - Duration::from_millis(100), "elected during the wait");
    println!("restart without persistence: leader again {:?} after the restart", restarted.elapsed());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// What both persistence tests check once the server is back with the data of an earlier moment,
/// in which `a` held the lease with token `t1`, while in the life that ended `b` held it with
/// `t2 > t1`: `a`'s restored lease is void (no token going back), `b`'s renew fails (it steps
/// down), nobody is elected before the server's start + the lease, and the next token is above `t2`.
async fn check_after_restart(
    redis: &TempRedis,
    restarted: Instant,
    (ra, a): (&AcquireRequest, &Lease),
    (rb, b): (&AcquireRequest, &Lease),
    lease: Duration,
) {
    let store = RedisStore::builder(&redis.url()).quarantine(lease).build().await.unwrap();
    let admin = redis.admin().await;
    let raw: Option<String> = admin.get(store.lease_key(&ra.election)).await.unwrap();
    assert!(
        raw.as_deref().is_some_and(|v| v.starts_with(&format!("{}\n{}\n", a.instance_id, a.token.get()))),
        "the server came back with a's lease of the earlier moment: {raw:?}"
    );
    // a's acquire finds "its" lease: it must not get token t1 back.
    match store.try_acquire(ra).await.unwrap() {
        Acquire::Refused(r) => {
            assert!(r.retry_in.is_some_and(|d| d <= lease + Duration::from_secs(1)), "{r:?}");
            println!("after the restart a's acquire: {}", r.reason);
        }
        other => panic!("a restored lease of an earlier life must not be handed out again, got {other:?}"),
    }
    // b's tenure is over: its renew says so.
    assert!(store.renew(b, lease).await.unwrap().is_none(), "b's renew must fail after the restart");
    // Nobody is elected until the server's start + the lease; then with a token above t2.
    let next = loop {
        match store.try_acquire(rb).await.unwrap() {
            Acquire::Acquired(l) => break l,
            Acquire::Refused(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("expected Refused, then Acquired; got {other:?}"),
        }
        assert!(restarted.elapsed() < lease + Duration::from_secs(10), "no lease long after the restart");
    };
    let after = restarted.elapsed();
    assert!(after >= lease - Duration::from_millis(50), "elected {after:?} after the restart (lease {lease:?})");
    assert!(next.token > b.token && b.token > a.token, "tokens {} then {} then {}", a.token, b.token, next.token);
    println!("leader again {after:?} after the restart; tokens {} < {} < {}", a.token, b.token, next.token);
}

#[tokio::test]
async fn restart_from_an_rdb_snapshot_voids_its_leases_and_tokens_grow() {
    if shared_url().is_none() {
        return;
    }
    // RDB only, saved when the test says so (SAVE), as a periodic snapshot would be.
    let mut redis = TempRedis::with_args(&["--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"]).await;
    let lease = Duration::from_secs(3);
    let store = RedisStore::builder(&redis.url()).quarantine(lease).build().await.unwrap();
    let admin = redis.admin().await;
    let name = election("rdb");
    let (ra, rb) = (req(&name, "a", lease), req(&name, "b", lease));
    let a = acquire_eventually(&store, &ra, lease + Duration::from_secs(5)).await;
    // The snapshot: a holds the lease.
    let _: () = admin
        .custom(
            fred::types::CustomCommand::new_static("SAVE", fred::types::ClusterHash::Random, false),
            Vec::<String>::new(),
        )
        .await
        .unwrap();
    // After it: a hands over to b.
    assert!(store.release(&a).await.unwrap());
    let b = acquired(store.try_acquire(&rb).await.unwrap());
    // Crash and restart from the snapshot.
    redis.kill().await;
    // Before the start: the server's life begins after this instant.
    let restarted = Instant::now();
    redis.start_again().await;
    check_after_restart(&redis, restarted, (&ra, &a), (&rb, &b), lease).await;
}

/// The AOF's incremental file (Redis 7: `appendonlydir/*.incr.aof`).
fn incr_aof(dir: &std::path::Path) -> PathBuf {
    let aof_dir = dir.join("appendonlydir");
    std::fs::read_dir(&aof_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", aof_dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .expect("an incremental AOF file")
}

#[tokio::test]
async fn restart_from_an_aof_everysec_that_lost_its_last_second() {
    if shared_url().is_none() {
        return;
    }
    let mut redis = TempRedis::with_args(&["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]).await;
    let lease = Duration::from_secs(3);
    let store = RedisStore::builder(&redis.url()).quarantine(lease).build().await.unwrap();
    let name = election("aof");
    let (ra, rb) = (req(&name, "a", lease), req(&name, "b", lease));
    let a = acquire_eventually(&store, &ra, lease + Duration::from_secs(5)).await;
    // everysec: what was written more than a second ago is on disk.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let synced = std::fs::metadata(incr_aof(&redis.dir)).unwrap().len();
    assert!(store.release(&a).await.unwrap());
    let b = acquired(store.try_acquire(&rb).await.unwrap());
    assert!(std::fs::metadata(incr_aof(&redis.dir)).unwrap().len() > synced, "the handover reached the AOF");
    // The machine crashes before the next fsync: the AOF loses the handover. (A killed process
    // alone loses nothing written with everysec, so the test cuts the file back to what was synced.)
    redis.kill().await;
    std::fs::OpenOptions::new().write(true).open(incr_aof(&redis.dir)).unwrap().set_len(synced).unwrap();
    let restarted = Instant::now();
    redis.start_again().await;
    check_after_restart(&redis, restarted, (&ra, &a), (&rb, &b), lease).await;
}

#[tokio::test]
async fn elections_across_an_rdb_restart_never_overlap() {
    if shared_url().is_none() {
        return;
    }
    let mut redis = TempRedis::with_args(&["--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"]).await;
    let lease = Duration::from_secs(2);
    let admin = redis.admin().await;
    let name = election("rdb-run");
    let recorder = leader_testkit::TenureRecorder::new();
    let mut elections = Vec::new();
    for who in ["a", "b", "c"] {
        let store = Arc::new(RedisStore::builder(&redis.url()).quarantine(lease).build().await.unwrap());
        let e = Election::new(store, &name, who, ElectionOptions::from_lease(lease)).unwrap();
        recorder.track(&e);
        e.start().await.unwrap();
        elections.push(e);
    }
    recorder.wait_for(Duration::from_secs(10), |t| !t.is_empty()).await.unwrap();
    // Snapshot, then a handover (the snapshot's holder releases), then a crash back to the snapshot.
    let _: () = admin
        .custom(
            fred::types::CustomCommand::new_static("SAVE", fred::types::ClusterHash::Random, false),
            Vec::<String>::new(),
        )
        .await
        .unwrap();
    let leader = elections.iter().find(|e| e.is_leader()).expect("a leader").clone();
    leader.release().await.unwrap();
    recorder.wait_for(Duration::from_secs(5), |t| t.len() >= 2).await.unwrap();
    redis.kill().await;
    // Before the start: the server's life begins after this instant.
    let restarted = Instant::now();
    redis.start_again().await;
    recorder.wait_for(Duration::from_secs(15), |t| t.iter().any(|t| t.acquired > restarted)).await.unwrap();
    println!("leader again {:?} after the restart", restarted.elapsed());
    for e in &elections {
        e.stop().await.unwrap();
    }
    recorder.check().unwrap();
}
