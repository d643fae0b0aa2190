//! Redis-specific behaviour against real servers: the shared one (`LEADER_TEST_REDIS_URL`) for
//! tests that disturb nobody, private throwaway servers for restarts, SCRIPT FLUSH and CLIENT KILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{election, eventually, prefix, shared_url, TempRedis};
use fred::prelude::*;
use fred::types::client::{ClientKillFilter, ClientKillType};
use futures::StreamExt;
use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, ErrorKind, LeaseStore, Metadata};
use leader_redis::RedisStore;

const LEASE: Duration = Duration::from_secs(2);

fn req(election: &str, who: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-instance"),
        ttl: LEASE,
        metadata: Metadata::new(),
    }
}

/// A store on `url` with its own prefix and no quarantine (the shared server is not restarted).
async fn store(url: &str, key_prefix: &str) -> RedisStore {
    RedisStore::builder(url).key_prefix(key_prefix).quarantine(Duration::ZERO).build().await.unwrap()
}

fn acquired(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Acquired(lease) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn acquire_renew_release_and_tokens() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("basic")).await;
    let name = election("basic");
    let a = acquired(store.try_acquire(&req(&name, "a")).await.unwrap());
    assert!(a.expires_in.is_some_and(|d| d <= LEASE && d > Duration::ZERO), "{a:?}");
    assert!(a.acquired_at.is_some() && a.expires_at.is_some());
    // Idempotent for the same instance: same token, fresh TTL.
    let again = acquired(store.try_acquire(&req(&name, "a")).await.unwrap());
    assert_eq!(again.token, a.token);
    // Another instance sees the holder.
    match store.try_acquire(&req(&name, "b")).await.unwrap() {
        Acquire::Held(Some(holder)) => {
            assert_eq!(holder.instance_id, "a-instance");
            assert_eq!(holder.participant_id, "a");
            assert_eq!(holder.token, a.token);
            assert!(holder.expires_in.is_some());
        }
        other => panic!("expected Held(Some), got {other:?}"),
    }
    let renewed = store.renew(&a, LEASE).await.unwrap().expect("still ours");
    assert_eq!(renewed.token, a.token);
    // Someone else's tenure cannot renew or release ours.
    let mut forged = a.clone();
    forged.token = leader_core::FencingToken::new(a.token.get() + 1);
    assert!(store.renew(&forged, LEASE).await.unwrap().is_none());
    assert!(!store.release(&forged).await.unwrap());
    assert!(store.release(&a).await.unwrap());
    assert!(!store.release(&a).await.unwrap());
    assert!(store.current(&name).await.unwrap().is_none());
    let b = acquired(store.try_acquire(&req(&name, "b")).await.unwrap());
    assert!(b.token > a.token, "{} > {}", b.token, a.token);
    // Tokens are at least the server's time in µs, so a lost counter cannot make them go back.
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    assert!(b.token.get() > now_us - 60_000_000, "token {} vs now {now_us}", b.token);
    store.release(&b).await.unwrap();
}

#[tokio::test]
async fn lease_expires_by_the_server() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("expiry")).await;
    let name = election("expiry");
    let mut r = req(&name, "a");
    r.ttl = Duration::from_millis(300);
    let a = acquired(store.try_acquire(&r).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.current(&name).await.unwrap().is_none());
    assert!(store.renew(&a, LEASE).await.unwrap().is_none());
    let b = acquired(store.try_acquire(&req(&name, "b")).await.unwrap());
    assert!(b.token > a.token);
}

#[tokio::test]
async fn metadata_is_stored_with_the_lease() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("meta")).await;
    let name = election("meta");
    let mut r = req(&name, "a");
    r.metadata.insert("version".into(), "1.2.3".into());
    r.metadata.insert("address".into(), "10.0.0.1:8080\twith tab".into());
    let a = acquired(store.try_acquire(&r).await.unwrap());
    let current = store.current(&name).await.unwrap().unwrap();
    assert_eq!(current.metadata, r.metadata);
    let mut next = Metadata::new();
    next.insert("version".into(), "2".into());
    let updated = store.update_metadata(&a, &next).await.unwrap().unwrap();
    assert_eq!(updated.metadata, next);
    assert_eq!(store.current(&name).await.unwrap().unwrap().metadata, next);
    let mut forged = a.clone();
    forged.instance_id = "someone-else".into();
    assert!(store.update_metadata(&forged, &Metadata::new()).await.unwrap().is_none());
    assert_eq!(store.current(&name).await.unwrap().unwrap().metadata, next);
    // Through Election::set_metadata too.
    let store: Arc<dyn LeaseStore> = Arc::new(store);
    let name2 = election("meta2");
    let e = Election::builder(store.clone(), &name2)
        .participant_id("p")
        .options(ElectionOptions::from_lease(LEASE))
        .metadata("role", "primary")
        .build()
        .unwrap();
    assert!(e.try_acquire().await.unwrap());
    assert_eq!(store.current(&name2).await.unwrap().unwrap().metadata.get("role").unwrap(), "primary");
    let mut m = Metadata::new();
    m.insert("role".into(), "draining".into());
    e.set_metadata(m).await.unwrap();
    assert_eq!(store.current(&name2).await.unwrap().unwrap().metadata.get("role").unwrap(), "draining");
    e.stop().await.unwrap();
}

#[tokio::test]
async fn key_prefixes_isolate_stores_and_list_escapes_globs() {
    let Some(url) = shared_url() else { return };
    let tag = format!("{:08x}", fastrand::u32(..));
    // "iso*X" as a glob would also match "iso-...-X"; escaped it matches only itself.
    let globby = store(&url, &format!("iso*{tag}")).await;
    let plain = store(&url, &format!("iso-{tag}")).await;
    let name = election("iso");
    let a = acquired(globby.try_acquire(&req(&name, "a")).await.unwrap());
    let b = acquired(plain.try_acquire(&req(&name, "b")).await.unwrap());
    assert_eq!(a.instance_id, "a-instance");
    assert_eq!(b.instance_id, "b-instance");
    assert_eq!(globby.current(&name).await.unwrap().unwrap().instance_id, "a-instance");
    let listed: Vec<_> = globby.list("").await.unwrap().into_iter().map(|l| l.instance_id).collect();
    assert_eq!(listed, vec!["a-instance".to_string()]);
    let listed: Vec<_> = plain.list("").await.unwrap().into_iter().map(|l| l.instance_id).collect();
    assert_eq!(listed, vec!["b-instance".to_string()]);
    // Different channels too: a release in one store does not wake the other's followers.
    assert_ne!(globby.channel(), plain.channel());
}

#[tokio::test]
async fn list_by_election_prefix() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("list")).await;
    for name in ["jobs.a", "jobs.b", "jobs-c", "other"] {
        acquired(store.try_acquire(&req(name, name)).await.unwrap());
    }
    let names = |v: Vec<leader_core::Lease>| v.into_iter().map(|l| l.election).collect::<Vec<_>>();
    assert_eq!(names(store.list("jobs.").await.unwrap()), ["jobs.a", "jobs.b"]);
    assert_eq!(names(store.list("jobs").await.unwrap()), ["jobs-c", "jobs.a", "jobs.b"]);
    assert_eq!(names(store.list("").await.unwrap()), ["jobs-c", "jobs.a", "jobs.b", "other"]);
    assert!(store.list("nothing").await.unwrap().is_empty());
    assert_eq!(store.list("a/b").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn bad_configuration_is_invalid_argument() {
    let Some(url) = shared_url() else { return };
    for bad in ["a b", "a{b}", ""] {
        let err = RedisStore::builder(&url).key_prefix(bad).build().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}: {err}");
    }
    let err = RedisStore::connect("postgres://127.0.0.1/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = RedisStore::connect(&format!("{url}?quarantine=soon")).await.unwrap_err();
    assert!(err.to_string().contains("quarantine"), "{err}");
    let store = RedisStore::connect(&format!("{url}?key_prefix=urlprefix&max_lease=5s&quarantine=0s")).await.unwrap();
    assert_eq!(store.key_prefix(), "urlprefix");
    assert_eq!(store.max_lease(), Duration::from_secs(5));
    let err = store.check_options(&ElectionOptions::from_lease(Duration::from_secs(6))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("max_lease"), "{err}");
    store.check_options(&ElectionOptions::from_lease(Duration::from_secs(5))).unwrap();
    let mut long = req("x", "a");
    long.ttl = Duration::from_secs(6);
    assert_eq!(store.try_acquire(&long).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(store.current("bad/name").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn ids_that_would_break_the_lease_value_are_refused() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("ids")).await;
    let name = election("ids");
    let mut bad = req(&name, "a");
    bad.instance_id = "a\nb".to_owned();
    let err = store.try_acquire(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("instance id"), "{err}");
    let mut bad = req(&name, "a");
    bad.participant_id = "a\nb".to_owned();
    assert_eq!(store.try_acquire(&bad).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    // Nothing was written.
    assert!(store.current(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn lease_value_layout_serves_fenced_writes() {
    let Some(url) = shared_url() else { return };
    let store = store(&url, &prefix("layout")).await;
    let name = election("layout");
    let mut r = req(&name, "writer one");
    r.metadata = Metadata::from([("k".to_owned(), "v\twith tab".to_owned())]);
    let lease = acquired(store.try_acquire(&r).await.unwrap());
    let client = store.client();
    let raw: String = client.get(store.lease_key(&name)).await.unwrap();
    let lines: Vec<&str> = raw.splitn(5, '\n').collect();
    assert_eq!(lines[0], "writer one-instance");
    assert_eq!(lines[1], lease.token.get().to_string());
    assert_eq!(lines[2], "writer one");
    assert_eq!(serde_json::from_str::<Metadata>(lines[4]).unwrap(), r.metadata);
    // The snippet the docs of `lease_key` give for a fenced write reads the same token.
    let token: String = client
        .eval(
            "return string.match(redis.call('GET', KEYS[1]) or '', '^[^\\n]*\\n(%d+)\\n')",
            vec![store.lease_key(&name)],
            Vec::<String>::new(),
        )
        .await
        .unwrap();
    assert_eq!(token, lease.token.get().to_string());
    // The key expires with the lease, by the server's clock.
    let pttl: i64 = client.pttl(store.lease_key(&name)).await.unwrap();
    assert!(pttl > 0 && pttl <= LEASE.as_millis() as i64, "{pttl}");
    store.release(&lease).await.unwrap();
}

/// `PUBSUB NUMSUB` of the store's channel.
async fn subscribers(client: &Client, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = client.pubsub_numsub(channel).await.unwrap();
    counts.first().map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn the_channel_is_subscribed_only_while_someone_watches() {
    let Some(url) = shared_url() else { return };
    let key_prefix = prefix("lazy");
    let leader = store(&url, &key_prefix).await;
    let follower = store(&url, &key_prefix).await;
    let admin = leader.client().clone();
    let channel = leader.channel().to_owned();
    let name = election("lazy");
    // A leader alone is not subscribed: its own publishes wake nobody.
    let a = acquired(leader.try_acquire(&req(&name, "a")).await.unwrap());
    assert_eq!(subscribers(&admin, &channel).await, 0);
    // The first watch subscribes, and yields once when the subscription is in place.
    let mut first = follower.watch(&name, None).expect("push is on");
    tokio::time::timeout(Duration::from_secs(2), first.next()).await.expect("subscribed").unwrap();
    assert_eq!(subscribers(&admin, &channel).await, 1);
    // A second watch shares the subscription and is live at once.
    let mut second = follower.watch(&name, None).expect("push is on");
    drop(first);
    leader.release(&a).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), second.next()).await.expect("woken by the release").unwrap();
    assert_eq!(subscribers(&admin, &channel).await, 1);
    // When the last watch goes, so does the subscription.
    drop(second);
    eventually(Duration::from_secs(5), "unsubscribed", || {
        let (admin, channel) = (admin.clone(), channel.clone());
        async move { subscribers(&admin, &channel).await == 0 }
    })
    .await;
    // And a new watch subscribes again.
    let mut third = follower.watch(&name, None).expect("push is on");
    tokio::time::timeout(Duration::from_secs(2), third.next()).await.expect("subscribed again").unwrap();
    acquired(leader.try_acquire(&req(&name, "a")).await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), third.next()).await.expect("woken by the takeover").unwrap();
}

#[tokio::test]
async fn sixteen_concurrent_acquirers_one_winner() {
    let Some(url) = shared_url() else { return };
    let key_prefix = prefix("sixteen");
    let name = election("sixteen");
    let mut stores = Vec::new();
    for _ in 0..16 {
        stores.push(store(&url, &key_prefix).await);
    }
    let attempts = stores.iter().enumerate().map(|(i, s)| {
        let r = req(&name, &format!("p{i}"));
        async move { s.try_acquire(&r).await.unwrap() }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter(|r| matches!(r, Acquire::Acquired(_))).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    // And with running elections: never two leaders; a leader emerges; tokens only grow.
    let name = election("sixteen-run");
    let elections: Vec<Election> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| Election::new(Arc::new(s), &name, &format!("p{i}"), ElectionOptions::from_lease(LEASE)).unwrap())
        .collect();
    for e in &elections {
        e.start().await.unwrap();
    }
    let mut tokens = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut handoffs = 0;
    while tokio::time::Instant::now() < deadline {
        let leaders: Vec<_> = elections.iter().filter(|e| e.is_leader()).collect();
        assert!(leaders.len() <= 1, "two leaders at once");
        if let Some(l) = leaders.first().and_then(|e| e.leadership()) {
            if tokens.insert(l.token()) && handoffs < 3 {
                // Hand over a few times to exercise push handoff under contention.
                handoffs += 1;
                let leader = leaders[0].clone();
                tokio::spawn(async move { leader.release().await });
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(tokens.len() >= 2, "leadership moved: {tokens:?}");
    for e in &elections {
        e.stop().await.unwrap();
    }
}

#[tokio::test]
async fn release_wakes_a_watcher_at_once() {
    let Some(url) = shared_url() else { return };
    let key_prefix = prefix("watch");
    let leader = store(&url, &key_prefix).await;
    let follower = store(&url, &key_prefix).await;
    let name = election("watch");
    let other = election("watch-other");
    let a = acquired(leader.try_acquire(&req(&name, "a")).await.unwrap());
    let o = acquired(leader.try_acquire(&req(&other, "a")).await.unwrap());
    let mut watch = follower.watch(&name, None).expect("push is on");
    // The first watch subscribes the store's channel and yields once when that is in place.
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("subscribed").expect("stream open");
    // A change to another election does not wake this watch.
    leader.release(&o).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), watch.next()).await.is_err());
    leader.release(&a).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("woken by the release").unwrap();
    // Takeover (a new holder) publishes too.
    acquired(follower.try_acquire(&req(&name, "b")).await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("woken by the takeover").unwrap();
}

#[tokio::test]
async fn wait_for_replicas_refuses_an_unreplicated_lease() {
    let Some(url) = shared_url() else { return };
    // The test server has no replicas: WAIT 1 can never be satisfied, so acquire must say so.
    let store = RedisStore::builder(&url)
        .key_prefix(prefix("wait"))
        .quarantine(Duration::ZERO)
        .wait_for_replicas(1, Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let err = store.try_acquire(&req(&election("wait"), "a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("WAIT"), "{err}");
    let opts = ElectionOptions::from_lease(Duration::from_millis(240)); // operation_timeout 40 ms < 50 ms
    assert_eq!(store.check_options(&opts).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn script_flush_while_running() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::start().await;
    let admin = redis.admin().await;
    let store = RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build().await.unwrap();
    let name = election("flush");
    let a = acquired(store.try_acquire(&req(&name, "a")).await.unwrap());
    let _: () = admin.script_flush(false).await.unwrap();
    assert!(store.renew(&a, LEASE).await.unwrap().is_some());
    let _: () = admin.script_flush(false).await.unwrap();
    assert_eq!(acquired(store.try_acquire(&req(&name, "a")).await.unwrap()).token, a.token);
    let _: () = admin.script_flush(false).await.unwrap();
    assert!(store.current(&name).await.unwrap().is_some());
    let _: () = admin.script_flush(false).await.unwrap();
    assert!(store.update_metadata(&a, &Metadata::new()).await.unwrap().is_some());
    let _: () = admin.script_flush(false).await.unwrap();
    assert!(store.release(&a).await.unwrap());
    // And an election keeps running through flushes.
    let e = Election::new(Arc::new(store), &name, "e", ElectionOptions::from_lease(LEASE)).unwrap();
    e.start().await.unwrap();
    let l = tokio::time::timeout(Duration::from_secs(5), e.wait_for_leadership()).await.unwrap().unwrap();
    for _ in 0..4 {
        let _: () = admin.script_flush(false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(e.is_leader());
    }
    assert_eq!(e.leadership().unwrap().token(), l.token());
    e.stop().await.unwrap();
}

async fn kill(admin: &Client, kind: ClientKillType) -> u64 {
    admin.client_kill(vec![ClientKillFilter::Type(kind), ClientKillFilter::SkipMe(true)]).await.unwrap()
}

#[tokio::test]
async fn client_kill_of_the_subscriber_ends_the_watch_and_it_comes_back() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::start().await;
    let admin = redis.admin().await;
    let leader = RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build().await.unwrap();
    let follower = RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build().await.unwrap();
    let name = election("killsub");
    let mut watch = follower.watch(&name, None).expect("push is on");
    // The channel is subscribed on the first watch, which yields once when it is in place.
    tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("subscribed").expect("stream open");
    assert!(kill(&admin, ClientKillType::Pubsub).await >= 1);
    // The stream ends: the push channel is down and the caller polls.
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("stream ends");
    assert!(end.is_none());
    // fred reconnects, the store subscribes again, and new watches work.
    let mut watch = None;
    eventually(Duration::from_secs(10), "watch available again", || {
        watch = follower.watch(&name, None);
        let ok = watch.is_some();
        async move { ok }
    })
    .await;
    let mut watch = watch.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("subscribed again").unwrap();
    let a = acquired(leader.try_acquire(&req(&name, "a")).await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("woken after resubscribe").unwrap();
    leader.release(&a).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("woken by release").unwrap();
}

#[tokio::test]
async fn client_kill_of_the_command_connection_and_elections_continue() {
    if shared_url().is_none() {
        return;
    }
    let redis = TempRedis::start().await;
    let admin = redis.admin().await;
    let name = election("killcmd");
    let opts = ElectionOptions::from_lease(LEASE);
    let mk = || async { Arc::new(RedisStore::builder(&redis.url()).quarantine(Duration::ZERO).build().await.unwrap()) };
    let a = Election::new(mk().await, &name, "a", opts.clone()).unwrap();
    let b = Election::new(mk().await, &name, "b", opts.clone()).unwrap();
    a.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), a.wait_for_leadership()).await.unwrap().unwrap();
    b.start().await.unwrap();
    // Both command connections at first; later rounds kill whatever has reconnected by then.
    assert!(kill(&admin, ClientKillType::Normal).await >= 2);
    for _ in 0..3 {
        kill(&admin, ClientKillType::Normal).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
    }
    // Kill every connection, subscribers too, then check that a leader is there and hands over.
    kill(&admin, ClientKillType::Pubsub).await;
    eventually(Duration::from_secs(10), "a leader after the kills", || async { a.is_leader() || b.is_leader() }).await;
    let (leader, follower) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    let handed = tokio::time::Instant::now();
    leader.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), follower.wait_for_leadership()).await.unwrap().unwrap();
    assert!(handed.elapsed() < Duration::from_secs(5));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn store_from_an_existing_fred_client_and_pool() {
    let Some(url) = shared_url() else { return };
    let client = Builder::from_config(Config::from_url(&url).unwrap()).build().unwrap();
    client.init().await.unwrap();
    let store = RedisStore::from_client(client.clone())
        .key_prefix(prefix("own"))
        .quarantine(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let name = election("own");
    let a = acquired(store.try_acquire(&req(&name, "a")).await.unwrap());
    drop(store);
    // Our client is still ours to use after the store is gone.
    let pong: String = client.ping(None).await.unwrap();
    assert_eq!(pong, "PONG");
    let pool = Builder::from_config(Config::from_url(&url).unwrap()).build_pool(3).unwrap();
    pool.init().await.unwrap();
    let key_prefix = prefix("pool");
    let store = RedisStore::from_pool(pool).key_prefix(&key_prefix).quarantine(Duration::ZERO).build().await.unwrap();
    let b = acquired(store.try_acquire(&req(&name, "b")).await.unwrap());
    for _ in 0..6 {
        assert!(store.renew(&b, LEASE).await.unwrap().is_some());
    }
    assert_ne!(a.token, leader_core::FencingToken::new(0));
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_unavailable() {
    if shared_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        RedisStore::builder(&format!("redis://127.0.0.1:{port}"))
            .connection_timeout(Duration::from_millis(500))
            .build(),
    )
    .await
    .expect("connect gives up instead of retrying for ever");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    println!("gave up after {:?}: {err}", started.elapsed());
}

#[tokio::test]
async fn blackholed_leader_steps_down_and_recovers_after_heal() {
    let Some(url) = shared_url() else { return };
    let parsed = url::Url::parse(&url).unwrap();
    let Some(server) = parsed
        .host_str()
        .and_then(|h| std::net::ToSocketAddrs::to_socket_addrs(&(h, parsed.port().unwrap_or(6379))).ok()?.next())
    else {
        return;
    };
    let proxy = leader_testkit::FaultProxy::start(server).await.unwrap();
    let key_prefix = prefix("blackhole");
    let name = election("blackhole");
    let through_proxy = RedisStore::builder(&format!("redis://{}", proxy.addr()))
        .key_prefix(&key_prefix)
        .quarantine(Duration::ZERO)
        .unresponsive_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let opts = ElectionOptions::from_lease(LEASE);
    let a = Election::new(Arc::new(through_proxy), &name, "a", opts.clone()).unwrap();
    a.start().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), a.wait_for_leadership()).await.unwrap().unwrap();
    let b = Election::new(Arc::new(store(&url, &key_prefix).await), &name, "b", opts.clone()).unwrap();
    b.start().await.unwrap();

    // Packets vanish: `a` cannot renew, steps down at its local deadline; `b` takes over after
    // the lease, never while `a` still leads.
    proxy.set_mode(leader_testkit::ProxyMode::Blackhole);
    let cut = tokio::time::Instant::now();
    let mut b_token = None;
    while b_token.is_none() {
        assert!(cut.elapsed() < Duration::from_secs(10), "no takeover within 10 s");
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        b_token = b.leadership().map(|l| l.token());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!a.is_leader());
    assert!(b_token.unwrap() > first.token());
    // Heal: `a` comes back as a follower; its stale commands (held by the partition, then
    // delivered) change nothing; b hands over and `a` leads again with a higher token.
    proxy.set_mode(leader_testkit::ProxyMode::Pass);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(b.is_leader() && !a.is_leader());
    b.release().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    assert!(again.token() > b_token.unwrap());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The shared server's address, for tests that put a `FaultProxy` in front of it.
fn shared_addr(url: &str) -> Option<std::net::SocketAddr> {
    let parsed = url::Url::parse(url).unwrap();
    parsed
        .host_str()
        .and_then(|h| std::net::ToSocketAddrs::to_socket_addrs(&(h, parsed.port().unwrap_or(6379))).ok()?.next())
}

#[tokio::test]
async fn a_timed_out_acquire_or_renew_is_not_applied_later() {
    let Some(url) = shared_url() else { return };
    let Some(server) = shared_addr(&url) else { return };
    let proxy = leader_testkit::FaultProxy::start(server).await.unwrap();
    let store = RedisStore::builder(&format!("redis://{}", proxy.addr()))
        .key_prefix(prefix("late"))
        .quarantine(Duration::ZERO)
        // Long enough that fred keeps the stalled connection: what it wrote is delivered later.
        .unresponsive_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let opts = ElectionOptions::from_lease(LEASE);
    store.check_options(&opts).unwrap();
    let timeout = opts.operation_timeout;

    // 1. The stream stalls (a partition) and delivers the acquire once it heals.
    let name = election("late-stall");
    proxy.set_mode(leader_testkit::ProxyMode::Blackhole);
    assert!(tokio::time::timeout(timeout, store.try_acquire(&req(&name, "a"))).await.is_err(), "no answer in time");
    tokio::time::sleep(timeout).await;
    proxy.set_mode(leader_testkit::ProxyMode::Pass);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.current(&name).await.unwrap().is_none(), "the acquire the caller gave up on took the lease later");

    // 2. The connection dies; fred reconnects and writes the command again.
    let name = election("late-replay");
    proxy.set_mode(leader_testkit::ProxyMode::Reset);
    assert!(tokio::time::timeout(timeout, store.try_acquire(&req(&name, "a"))).await.is_err(), "no answer in time");
    tokio::time::sleep(timeout).await;
    proxy.set_mode(leader_testkit::ProxyMode::Pass);
    eventually(Duration::from_secs(10), "reconnected", || async { store.current("probe").await.is_ok() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.current(&name).await.unwrap().is_none(), "fred's replay of a timed-out acquire took the lease");

    // 3. A renew delivered late does not extend the lease either.
    let name = election("late-renew");
    let lease = acquired(store.try_acquire(&req(&name, "a")).await.unwrap());
    let before: i64 = store.client().pttl(store.lease_key(&name)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_mode(leader_testkit::ProxyMode::Blackhole);
    assert!(tokio::time::timeout(timeout, store.renew(&lease, LEASE)).await.is_err());
    tokio::time::sleep(timeout).await;
    proxy.set_mode(leader_testkit::ProxyMode::Pass);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: i64 = store.client().pttl(store.lease_key(&name)).await.unwrap();
    assert!(after < before - 500, "a late renew extended the lease: PTTL {before} ms before, {after} ms after");
}
