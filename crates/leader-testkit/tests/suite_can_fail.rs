//! The suite must be able to fail: deliberately broken stores (each a `MemoryStore` with one flaw)
//! and the scenario that must catch each flaw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::{
    Acquire, AcquireRequest, Capabilities, ElectionOptions, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata,
    Result,
};
use leader_memory::MemoryStore;
use leader_testkit::{scenarios, Provider, ScenarioResult};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flaw {
    /// Grants a held lease to a second participant.
    DoubleGrant,
    /// Reports token 1 for every acquisition.
    ReusedToken,
    /// `release` frees whoever holds the lease.
    ReleaseFreesAnother,
    /// Leases never expire (TTL stretched a thousandfold).
    NeverExpires,
}

struct Broken {
    inner: MemoryStore,
    flaw: Flaw,
    /// DoubleGrant: the fake leases by instance; ReusedToken: the real token by instance.
    state: Arc<Mutex<HashMap<String, Lease>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Broken {
    /// ReusedToken: the real lease behind a reported one.
    fn real(&self, lease: &Lease) -> Lease {
        match (self.flaw, lock(&self.state).get(&lease.instance_id)) {
            (Flaw::ReusedToken, Some(real)) => Lease { token: real.token, ..lease.clone() },
            _ => lease.clone(),
        }
    }

    fn reported(&self, lease: Lease) -> Lease {
        if self.flaw == Flaw::ReusedToken {
            Lease { token: FencingToken::new(1), ..lease }
        } else {
            lease
        }
    }

    fn fake(&self, lease: &Lease) -> bool {
        self.flaw == Flaw::DoubleGrant
            && lock(&self.state).get(&lease.instance_id).is_some_and(|f| f.token == lease.token)
    }
}

#[leader_core::async_trait]
impl LeaseStore for Broken {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let mut req = req.clone();
        if self.flaw == Flaw::NeverExpires {
            req.ttl *= 1000;
        }
        if self.flaw == Flaw::DoubleGrant {
            if let Some(fake) = lock(&self.state).get(&req.instance_id) {
                return Ok(Acquire::Acquired(fake.clone()));
            }
        }
        match self.inner.try_acquire(&req).await? {
            Acquire::Acquired(lease) => {
                if self.flaw == Flaw::ReusedToken {
                    lock(&self.state).insert(lease.instance_id.clone(), lease.clone());
                }
                Ok(Acquire::Acquired(self.reported(lease)))
            }
            Acquire::Held(Some(h)) if self.flaw == Flaw::DoubleGrant => {
                let fake = Lease {
                    participant_id: req.participant_id.clone(),
                    instance_id: req.instance_id.clone(),
                    token: FencingToken::new(h.token.get() + 1000 + fastrand::u64(..1000)),
                    ..h
                };
                lock(&self.state).insert(req.instance_id.clone(), fake.clone());
                Ok(Acquire::Acquired(fake))
            }
            Acquire::Held(h) => Ok(Acquire::Held(h.map(|h| self.reported(h)))),
            refused @ Acquire::Refused(_) => Ok(refused),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        if self.fake(lease) {
            return Ok(Some(lease.clone()));
        }
        let ttl = if self.flaw == Flaw::NeverExpires { ttl * 1000 } else { ttl };
        Ok(self.inner.renew(&self.real(lease), ttl).await?.map(|l| self.reported(l)))
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        if self.fake(lease) {
            lock(&self.state).remove(&lease.instance_id);
            return Ok(true);
        }
        if self.flaw == Flaw::ReleaseFreesAnother {
            if let Some(current) = self.inner.current(&lease.election).await? {
                return self.inner.release(&current).await;
            }
        }
        self.inner.release(&self.real(lease)).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        if self.fake(lease) {
            return Ok(Some(Lease { metadata: metadata.clone(), ..lease.clone() }));
        }
        Ok(self.inner.update_metadata(&self.real(lease), metadata).await?.map(|l| self.reported(l)))
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.inner.withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        Ok(self.inner.current(election).await?.map(|l| self.reported(l)))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        Ok(self.inner.list(prefix).await?.into_iter().map(|l| self.reported(l)).collect())
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<leader_core::BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
}

struct BrokenProvider {
    name: String,
    _keep: MemoryStore,
    flaw: Flaw,
    state: Arc<Mutex<HashMap<String, Lease>>>,
}

impl BrokenProvider {
    fn with(flaw: Flaw) -> Arc<dyn Provider> {
        let name = format!("broken-{}", uuid::Uuid::new_v4().simple());
        Arc::new(BrokenProvider { _keep: MemoryStore::named(&name), name, flaw, state: Default::default() })
    }
}

#[leader_core::async_trait]
impl Provider for BrokenProvider {
    fn name(&self) -> &'static str {
        "broken-memory"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(Broken { inner: MemoryStore::named(&self.name), flaw: self.flaw, state: self.state.clone() }))
    }
    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(2))
    }
}

fn must_fail(flaw: Flaw, scenario: &str, result: ScenarioResult, expect: &str) {
    match result {
        Ok(()) => panic!("{scenario} passed on a store with flaw {flaw:?}; the suite cannot catch it"),
        Err(failure) => {
            eprintln!("{scenario} caught {flaw:?}: {failure}");
            assert!(
                failure.message().contains(expect),
                "{scenario} failed on {flaw:?}, but not for the expected reason ({expect:?}): {failure}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leaders_are_caught() {
    let p = BrokenProvider::with(Flaw::DoubleGrant);
    must_fail(Flaw::DoubleGrant, "concurrent_start", scenarios::concurrent_start(p.clone()).await, "leader");
    must_fail(Flaw::DoubleGrant, "incumbent_stability", scenarios::incumbent_stability(p).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_token_is_caught() {
    let p = BrokenProvider::with(Flaw::ReusedToken);
    must_fail(
        Flaw::ReusedToken,
        "tokens_strictly_increase",
        scenarios::tokens_strictly_increase(p.clone()).await,
        "not greater",
    );
    must_fail(Flaw::ReusedToken, "graceful_release_takeover", scenarios::graceful_release_takeover(p).await, "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_frees_another_lease_is_caught() {
    let p = BrokenProvider::with(Flaw::ReleaseFreesAnother);
    must_fail(
        Flaw::ReleaseFreesAnother,
        "late_release_cannot_touch_successor",
        scenarios::late_release_cannot_touch_successor(p).await,
        "late release",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_never_expires_is_caught() {
    let p = BrokenProvider::with(Flaw::NeverExpires);
    must_fail(
        Flaw::NeverExpires,
        "crash_takeover",
        scenarios::crash_takeover(p.clone()).await,
        "did not happen within",
    );
    must_fail(
        Flaw::NeverExpires,
        "late_release_cannot_touch_successor",
        scenarios::late_release_cannot_touch_successor(p).await,
        "did not expire",
    );
}

/// The broken stores are otherwise sound: a scenario that does not touch the flaw passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_stores_pass_what_their_flaw_does_not_touch() {
    // (ReusedToken is left out: the core itself refuses to resume a token it gave up, so a restart
    // fails on it too.)
    for flaw in [Flaw::DoubleGrant, Flaw::ReleaseFreesAnother, Flaw::NeverExpires] {
        let p = BrokenProvider::with(flaw);
        scenarios::restart_after_stop(p).await.unwrap_or_else(|f| panic!("{flaw:?}: restart_after_stop failed: {f}"));
    }
}
