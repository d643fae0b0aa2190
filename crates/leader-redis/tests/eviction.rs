//! `maxmemory-policy` and eviction, on private servers (ports 55200-55299): a policy that can
//! evict a lease is refused when the store connects, and if the policy changes later (a managed
//! service's parameter change, `CONFIG SET`) an evicted lease is still not handed out before its
//! end. Memory pressure is real: the test fills the server past `maxmemory`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{election, shared_url, TempRedis};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use leader_core::{Acquire, AcquireRequest, ErrorKind, Lease, LeaseStore, Metadata};
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

async fn config_set(admin: &Client, key: &str, value: &str) {
    let _: () = admin
        .custom(CustomCommand::new_static("CONFIG", ClusterHash::Random, false), vec!["SET", key, value])
        .await
        .unwrap();
}

async fn info_field(admin: &Client, section: fred::types::InfoKind, field: &str) -> String {
    let info: String = admin.info(Some(section)).await.unwrap();
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")).map(str::to_owned))
        .unwrap_or_else(|| panic!("INFO has no {field}"))
}

#[tokio::test]
async fn a_policy_that_can_evict_a_lease_is_refused_at_connect() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::with_args(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "volatile-lru",
    ])
    .await;
    let admin = redis.admin().await;
    for policy in ["volatile-lru", "volatile-ttl", "allkeys-lru", "allkeys-random"] {
        config_set(&admin, "maxmemory-policy", policy).await;
        let err = RedisStore::connect(&redis.url()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        let text = err.to_string();
        assert!(text.contains("maxmemory-policy") && text.contains(policy) && text.contains("noeviction"), "{text}");
        if policy == "volatile-lru" {
            println!("{text}");
        }
    }
    config_set(&admin, "maxmemory-policy", "noeviction").await;
    RedisStore::connect(&redis.url()).await.expect("noeviction is accepted");
}

#[tokio::test]
async fn an_evicted_lease_is_not_handed_out_before_its_end() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::start().await;
    let admin = redis.admin().await;
    let mk = || RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build();
    let (sa, sb) = (mk().await.unwrap(), mk().await.unwrap());
    let lease = Duration::from_secs(4);
    let name = election("evicted");
    // Before the acquire: a's lease ends no earlier than a lease after this instant.
    let a_acquired = Instant::now();
    let la = acquired(sa.try_acquire(&req(&name, "a", lease)).await.unwrap());
    // The policy changes after the stores connected, and memory runs out.
    config_set(&admin, "maxmemory-policy", "volatile-lru").await;
    let used: u64 = info_field(&admin, fred::types::InfoKind::Memory, "used_memory").await.parse().unwrap();
    config_set(&admin, "maxmemory", &(used + 4 * 1024 * 1024).to_string()).await;
    // Keys without a TTL: the lease is the only key Redis may evict.
    let pad = "x".repeat(64 * 1024);
    let lease_key = sa.lease_key(&name);
    let mut written = 0;
    loop {
        let exists: bool = admin.exists(&lease_key).await.unwrap();
        if !exists {
            break;
        }
        let evicted: u64 = info_field(&admin, fred::types::InfoKind::Stats, "evicted_keys").await.parse().unwrap();
        assert_eq!(evicted, 0, "a key was evicted but the lease is still there");
        match admin.set::<(), _, _>(format!("pad:{written}"), pad.as_str(), None, None, false).await {
            Ok(()) => written += 1,
            // Evicting the lease did not free enough: this write is refused, the lease is gone.
            Err(e) if e.details().contains("OOM") => {}
            Err(e) => panic!("writing padding failed: {e}"),
        }
        assert!(written < 2000, "the lease was not evicted after {written} padding keys");
    }
    let evicted: u64 = info_field(&admin, fred::types::InfoKind::Stats, "evicted_keys").await.parse().unwrap();
    assert!(evicted >= 1, "evicted_keys {evicted}");
    println!("lease evicted after {written} padding keys of 64 KiB ({evicted} keys evicted)");
    // Nobody gets the lease before a's lease would have ended; the refusal says why and until when.
    match sb.try_acquire(&req(&name, "b", lease)).await.unwrap() {
        Acquire::Refused(r) => {
            assert!(r.retry_in.is_some_and(|d| d <= lease), "{r:?}");
            assert!(r.reason.contains("disappeared"), "{}", r.reason);
            println!("b's acquire after the eviction: {}", r.reason);
        }
        other => panic!("an evicted lease was handed out early: {other:?}"),
    }
    // a learns at its next renew that its lease is gone, and steps down.
    assert!(sa.renew(&la, lease).await.unwrap().is_none());
    // Memory back (the padding stays, the limit goes), then b gets it once a's lease has ended.
    config_set(&admin, "maxmemory", "0").await;
    let lb = loop {
        match sb.try_acquire(&req(&name, "b", lease)).await.unwrap() {
            Acquire::Acquired(l) => break l,
            Acquire::Refused(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}"),
        }
        assert!(a_acquired.elapsed() < lease * 3, "b never got the lease");
    };
    let at = a_acquired.elapsed();
    assert!(at >= lease - Duration::from_millis(50), "b acquired {at:?} after a's {lease:?} lease began");
    assert!(lb.token > la.token);
}

#[tokio::test]
async fn an_allkeys_policy_set_later_refuses_elections_without_a_record() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::start().await;
    let admin = redis.admin().await;
    let store = RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build().await.unwrap();
    let lease = Duration::from_secs(2);
    let known = election("known");
    let l = acquired(store.try_acquire(&req(&known, "a", lease)).await.unwrap());
    config_set(&admin, "maxmemory-policy", "allkeys-lru").await;
    // An election with no record may have lost it to eviction: refused, naming the setting.
    match store.try_acquire(&req(&election("new"), "a", lease)).await.unwrap() {
        Acquire::Refused(r) => {
            assert!(r.reason.contains("maxmemory-policy") && r.reason.contains("allkeys-lru"), "{}", r.reason);
            assert!(r.retry_in.is_none());
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // One whose record is there goes on: its record tells when its lease ends.
    assert!(store.renew(&l, lease).await.unwrap().is_some());
    assert!(store.release(&l).await.unwrap());
    assert!(store.try_acquire(&req(&known, "b", lease)).await.unwrap().is_acquired());
}

trait IsAcquired {
    fn is_acquired(&self) -> bool;
}

impl IsAcquired for Acquire {
    fn is_acquired(&self) -> bool {
        matches!(self, Acquire::Acquired(_))
    }
}
