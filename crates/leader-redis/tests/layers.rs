//! The retry and circuit-breaker layers of `leader_core::layer` over a real Redis server, with a
//! `leader_testkit::FaultProxy` between the store and the server (`LEADER_TEST_REDIS_URL`).
//!
//! The stores here are built over a fred client of our own with a command timeout
//! (`default_command_timeout`): without one, fred queues commands while it reconnects and a call
//! during an outage only ends when the caller's timeout drops it. A dropped call reaches neither
//! layer's bookkeeping (the retry layer is dropped with it, the breaker's `after` hook never runs),
//! so both layers need the store itself to answer an outage with an error, inside the caller's
//! timeout. The command timeouts below are therefore shorter than the timeouts the tests (and the
//! election's `operation_timeout`) put around each call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{election, eventually, prefix};
use leader_core::layer::{CircuitBreakerLayer, Intercept, InterceptLayer, LeaseStoreExt, Op, RetryLayer};
use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, ErrorKind, LeaseStore, Metadata, Result};
use leader_redis::fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use leader_redis::RedisStore;
use leader_testkit::{FaultProxy, ProxyMode};
use tokio::time::{timeout, Instant};

/// The shared server's address, or `None` (after the skip line) when the suite does not run here.
fn server() -> Option<SocketAddr> {
    let url = leader_testkit::provider_url("redis")?;
    let parsed = url::Url::parse(&url).expect("LEADER_TEST_REDIS_URL is a URL");
    // Only a plain single-server URL can be proxied.
    if parsed.scheme() != "redis" {
        println!("skipped: the layer tests need a plain redis:// URL, not {}", parsed.scheme());
        return None;
    }
    let host = parsed.host_str().expect("LEADER_TEST_REDIS_URL has a host");
    (host, parsed.port().unwrap_or(6379)).to_socket_addrs().expect("the test server resolves").next()
}

/// A store through `proxy`, whose every command fails with a timeout after `command_timeout`.
async fn store_through(proxy: &FaultProxy, key_prefix: &str, command_timeout: Duration) -> Arc<dyn LeaseStore> {
    let config = Config::from_url(&format!("redis://{}", proxy.addr())).unwrap();
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| p.default_command_timeout = command_timeout)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_millis(500);
            c.internal_command_timeout = Duration::from_millis(500);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 500, 2));
    let client = builder.build().unwrap();
    client.init().await.unwrap();
    let store = RedisStore::from_client(client)
        .key_prefix(key_prefix)
        // The shared server is never restarted by these tests.
        .quarantine(Duration::ZERO)
        .build()
        .await
        .unwrap();
    Arc::new(store)
}

/// Counts the calls that reach the store under it, and their failures.
#[derive(Default)]
struct Count {
    calls: AtomicU32,
    failures: AtomicU32,
}

#[leader_core::async_trait]
impl Intercept for Count {
    async fn before(&self, _op: Op, _election: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn after(&self, _op: Op, _election: &str, ok: bool, _elapsed: Duration) {
        if !ok {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn req(election: &str, who: &str, ttl: Duration) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-instance"),
        ttl,
        metadata: Metadata::new(),
    }
}

fn acquired(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Acquired(lease) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

/// Through a connection reset and then a black hole, each about a second long (well within the
/// retry budget): the bare store fails, the store wrapped in `RetryLayer` answers within its
/// timeout, and the retried acquire hands back the lease we already hold, same token.
#[tokio::test]
async fn retry_layer_rides_out_a_brief_outage_and_a_retried_acquire_is_idempotent() {
    let Some(server) = server() else { return };
    let proxy = FaultProxy::start(server).await.unwrap();
    let name = election("retry");
    let bare = store_through(&proxy, &prefix("retry"), Duration::from_millis(300)).await;
    let attempts = Arc::new(Count::default());
    // Budget: up to 20 attempts of at most 300 ms plus 50-200 ms backoff, several seconds.
    let retried = bare
        .clone()
        .layer(InterceptLayer::new(attempts.clone()))
        .layer(RetryLayer::new().max_retries(20).backoff(Duration::from_millis(50), Duration::from_millis(200)));
    // A lease far longer than the outages, so it is still ours when the retried acquire lands.
    let ttl = Duration::from_secs(20);
    let first = acquired(retried.try_acquire(&req(&name, "a", ttl)).await.unwrap());

    for mode in [ProxyMode::Reset, ProxyMode::Blackhole] {
        proxy.set_mode(mode);
        let failures_before = attempts.failures.load(Ordering::SeqCst);
        let (retried, name2) = (retried.clone(), name.clone());
        let in_flight = tokio::spawn(async move {
            let started = Instant::now();
            let current = timeout(Duration::from_secs(10), retried.current(&name2)).await;
            let again = timeout(Duration::from_secs(10), retried.try_acquire(&req(&name2, "a", ttl))).await;
            (current, again, started.elapsed())
        });
        // The bare store, in the same outage, answers with an error (its command timeout) well
        // inside a timeout like the election's.
        let bare_result = timeout(Duration::from_secs(5), bare.current(&name)).await;
        match &bare_result {
            Ok(Err(e)) => assert!(e.is_transient(), "{mode:?}: {e}"),
            other => panic!("{mode:?}: the bare store should fail during the outage, got {other:?}"),
        }
        // Heal about a second after the outage began (the bare call took ~300 ms of it).
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.set_mode(ProxyMode::Pass);

        let (current, again, took) = in_flight.await.unwrap();
        let holder = current.expect("retried current() answers within 10 s").unwrap().expect("a leader");
        assert_eq!(holder.token, first.token, "{mode:?}");
        let again = acquired(again.expect("retried try_acquire answers within 10 s").unwrap());
        assert_eq!(again.token, first.token, "{mode:?}: a retried acquire is idempotent");
        assert!(
            attempts.failures.load(Ordering::SeqCst) > failures_before,
            "{mode:?}: the retried calls met the outage"
        );
        println!("{mode:?}: retried calls answered after {took:?}; bare store: {:?}", bare_result.map(|r| r.err()));
    }
    // Still one lease, ours, same token.
    let info = bare.current(&name).await.unwrap().unwrap();
    assert_eq!((info.token, info.participant_id.as_str()), (first.token, "a"));
    assert!(bare.release(&first).await.unwrap());
}

/// Black-holed store: the breaker opens after `threshold` failures (each answered by the store's
/// own command timeout, inside the generous timeout the test puts around every call as the
/// election's `operation_timeout` does), then refuses at once without reaching the store; once
/// the server answers again and the cool-down has passed, one probe closes it.
#[tokio::test]
async fn circuit_breaker_opens_on_a_black_hole_fails_fast_and_one_probe_closes_it() {
    let Some(server) = server() else { return };
    let proxy = FaultProxy::start(server).await.unwrap();
    let name = election("breaker");
    let command_timeout = Duration::from_millis(500);
    let op_timeout = Duration::from_secs(3);
    let bare = store_through(&proxy, &prefix("breaker"), command_timeout).await;
    let reached = Arc::new(Count::default());
    let cool_down = Duration::from_secs(1);
    let breaker = CircuitBreakerLayer::new(3, cool_down);
    let store = bare.clone().layer(InterceptLayer::new(reached.clone())).layer(breaker.clone());
    assert!(timeout(op_timeout, store.current(&name)).await.unwrap().unwrap().is_none());

    proxy.set_mode(ProxyMode::Blackhole);
    for i in 0..3 {
        assert!(!breaker.is_open(), "open after {i} failures");
        let result = timeout(op_timeout, store.current(&name)).await;
        assert!(matches!(result, Ok(Err(_))), "call {i}: the store answers the outage with an error: {result:?}");
    }
    assert!(breaker.is_open(), "open after 3 failures");
    assert!(store.watch(&name, None).is_none(), "no push channel while open");

    let calls = reached.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        let started = Instant::now();
        let err = timeout(op_timeout, store.current(&name)).await.expect("fails fast").unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains("circuit open"), "{err}");
        // A generous bound, still well under the store's own 500 ms command timeout.
        assert!(took < Duration::from_millis(200), "refusal took {took:?}");
    }
    assert_eq!(reached.calls.load(Ordering::SeqCst), calls, "refused calls never reach the store");

    // Heal, and wait until the server answers the bare store (its reconnect is its own business),
    // so that the probe below meets a healthy store.
    proxy.set_mode(ProxyMode::Pass);
    eventually(Duration::from_secs(10), "the bare store answers after the heal", || {
        let bare = bare.clone();
        let name = name.clone();
        async move { matches!(timeout(op_timeout, bare.current(&name)).await, Ok(Ok(_))) }
    })
    .await;
    tokio::time::sleep(cool_down + Duration::from_millis(200)).await;
    let calls = reached.calls.load(Ordering::SeqCst);
    assert!(timeout(op_timeout, store.current(&name)).await.unwrap().unwrap().is_none(), "the probe succeeds");
    assert_eq!(reached.calls.load(Ordering::SeqCst), calls + 1, "one probe reached the store");
    assert!(!breaker.is_open(), "one successful probe closes the circuit");
    assert!(store.watch(&name, None).is_some(), "push is back once closed");
}

/// An election on a breaker-wrapped store through the proxy: during a black hole the leader
/// steps down (by its local deadline; the breaker opens meanwhile), and after the heal the same
/// participant leads again with a higher token.
#[tokio::test]
async fn election_on_a_breaker_steps_down_in_the_outage_and_leads_again_after() {
    let Some(server) = server() else { return };
    let proxy = FaultProxy::start(server).await.unwrap();
    let name = election("breaker-election");
    // Lease 3 s: operation_timeout 500 ms, above the store's 200 ms command timeout, so failed
    // calls end as store errors (which the breaker counts), not as dropped futures.
    let options = ElectionOptions::from_lease(Duration::from_secs(3));
    let bare = store_through(&proxy, &prefix("breaker-election"), Duration::from_millis(200)).await;
    let breaker = CircuitBreakerLayer::new(2, Duration::from_secs(1));
    let store = bare.clone().layer(breaker.clone());
    let a = Election::new(store, &name, "a", options).unwrap();
    a.start().await.unwrap();
    let first = timeout(Duration::from_secs(10), a.wait_for_leadership()).await.expect("leads").unwrap();

    proxy.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    timeout(Duration::from_secs(10), first.lost()).await.expect("steps down within 10 s of the outage");
    println!("stepped down {:?} after the black hole began", cut.elapsed());
    assert!(!a.is_leader());
    eventually(Duration::from_secs(10), "the breaker opens during the outage", || {
        let open = breaker.is_open();
        async move { open }
    })
    .await;

    proxy.set_mode(ProxyMode::Pass);
    let healed = Instant::now();
    let again = timeout(Duration::from_secs(15), a.wait_for_leadership()).await.expect("leads again").unwrap();
    println!("leads again {:?} after the heal", healed.elapsed());
    assert!(again.token() > first.token(), "a new tenure has a higher token");
    assert!(!breaker.is_open());
    a.stop().await.unwrap();
    assert!(bare.current(&name).await.unwrap().is_none(), "stop released the lease");
}
