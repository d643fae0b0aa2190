//! Retry and circuit-breaker layers on the memory store; every layer passes every method on.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leader_core::layer::{CircuitBreakerLayer, Intercept, InterceptLayer, LeaseStoreExt, Op, RetryLayer};
use leader_core::{AcquireRequest, Election, Error, ErrorKind, LeaseStore, Result};
use leader_memory::MemoryStore;

/// Fails the first `n` calls of each op with a transient error, then passes.
#[derive(Default)]
struct FailFirst {
    left: AtomicU32,
    calls: AtomicU32,
}

#[leader_core::async_trait]
impl Intercept for FailFirst {
    async fn before(&self, _op: Op, _e: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::unavailable("injected"));
        }
        Ok(())
    }
}

fn req(instance: &str) -> AcquireRequest {
    AcquireRequest {
        election: "jobs".into(),
        participant_id: instance.into(),
        instance_id: instance.into(),
        ttl: Duration::from_secs(3),
        metadata: Default::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn retry_hides_transient_errors_within_its_bound() {
    let memory: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FailFirst { left: AtomicU32::new(2), ..Default::default() });
    let store = memory.layer(InterceptLayer::new(faults.clone())).layer(RetryLayer::new().max_retries(3));
    assert!(matches!(store.try_acquire(&req("a")).await.unwrap(), leader_core::Acquire::Acquired(_)));
    assert_eq!(faults.calls.load(Ordering::SeqCst), 3, "two failures then success");

    faults.left.store(5, Ordering::SeqCst);
    let err = store.current("jobs").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "gives up after max_retries");

    faults.left.store(1, Ordering::SeqCst);
    let only_reads = Arc::new(MemoryStore::new()) as Arc<dyn LeaseStore>;
    let narrow = only_reads.layer(InterceptLayer::new(faults.clone())).layer(RetryLayer::new().ops(&[Op::Current]));
    assert!(narrow.try_acquire(&req("b")).await.is_err(), "ops outside the list are not retried");
}

#[tokio::test(start_paused = true)]
async fn a_retried_acquire_is_idempotent() {
    let memory: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let store = memory.clone().layer(RetryLayer::new());
    let leader_core::Acquire::Acquired(first) = store.try_acquire(&req("a")).await.unwrap() else { panic!() };
    let leader_core::Acquire::Acquired(again) = store.try_acquire(&req("a")).await.unwrap() else { panic!() };
    assert_eq!(first.token, again.token);
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_fails_fast_half_opens_and_closes() {
    let memory: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FailFirst { left: AtomicU32::new(3), ..Default::default() });
    let breaker = CircuitBreakerLayer::new(3, Duration::from_secs(2));
    let store = memory.layer(InterceptLayer::new(faults.clone())).layer(breaker.clone());
    for _ in 0..3 {
        assert!(store.current("jobs").await.is_err());
    }
    assert!(breaker.is_open());
    assert!(store.watch("jobs", None).is_none(), "no push channel while open");
    let calls = faults.calls.load(Ordering::SeqCst);
    let err = store.current("jobs").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("circuit open"));
    assert_eq!(faults.calls.load(Ordering::SeqCst), calls, "fails fast without calling the store");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Half-open: one probe goes through and succeeds; the circuit closes.
    assert!(store.current("jobs").await.is_ok());
    assert!(!breaker.is_open());
    assert!(store.watch("jobs", None).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_makes_the_leader_step_down_and_it_recovers() {
    let memory: Arc<dyn LeaseStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FailFirst::default());
    let store =
        memory.layer(InterceptLayer::new(faults.clone())).layer(CircuitBreakerLayer::new(2, Duration::from_secs(1)));
    let a = Election::new(store, "jobs", "a", common::options()).unwrap();
    let first = a.wait_for_leadership().await.unwrap();
    faults.left.store(1_000, Ordering::SeqCst);
    first.lost().await;
    assert!(!a.is_leader());
    faults.left.store(0, Ordering::SeqCst);
    let again = tokio::time::timeout(Duration::from_secs(60), a.wait_for_leadership()).await.unwrap().unwrap();
    assert!(again.token() > first.token());
}

#[tokio::test]
async fn layers_pass_every_method_on() {
    let memory = MemoryStore::new();
    let base: Arc<dyn LeaseStore> = Arc::new(memory.clone());
    let store = base.layer(RetryLayer::new()).layer(CircuitBreakerLayer::new(3, Duration::from_secs(1)));
    assert_eq!(store.capabilities(), memory.capabilities());
    assert!(store.watch("jobs", None).is_some());
    let leader_core::Acquire::Acquired(lease) = store.try_acquire(&req("a")).await.unwrap() else { panic!() };
    assert!(store.renew(&lease, Duration::from_secs(3)).await.unwrap().is_some());
    let md: leader_core::Metadata = [("k".to_owned(), "v".to_owned())].into();
    assert_eq!(store.update_metadata(&lease, &md).await.unwrap().unwrap().metadata, md);
    assert_eq!(store.list("jo").await.unwrap().len(), 1);
    store.withdraw("jobs", "a").await.unwrap();
    assert!(store.release(&lease).await.unwrap());
    assert!(store.current("jobs").await.unwrap().is_none());
    store.check_options(&common::options()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_off_by_the_callers_timeout_counts_as_a_failure() {
    // A store that hangs instead of failing must still open the breaker under an Election.
    let (_m, control, store) = common::stores();
    let breaker = CircuitBreakerLayer::new(2, Duration::from_secs(60));
    let store = store.layer(breaker.clone());
    control.set_hang(true);
    for _ in 0..2 {
        assert!(tokio::time::timeout(Duration::from_millis(100), store.current("jobs")).await.is_err());
    }
    assert!(breaker.is_open(), "two timed-out calls open the circuit");
    let err = store.current("jobs").await.unwrap_err();
    assert!(err.to_string().contains("circuit open"));
}
