//! Deliberately broken stores, each a [`MemoryStore`] with one flaw, so that a checker can show it
//! is able to fail: the same four flaws `tests/suite_can_fail.rs` feeds the conformance suite.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::{
    Acquire, AcquireRequest, BoxStream, Capabilities, ElectionOptions, FencingToken, LeaderInfo, Lease, LeaseStore,
    Metadata, Result,
};
use leader_memory::MemoryStore;

use super::record::lock;
use crate::Provider;

/// One flaw of a [`BrokenStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Grants a held lease to a second participant (with a made-up, higher token).
    DoubleGrant,
    /// Reports token 1 for every acquisition.
    ReusedToken,
    /// `release` frees whoever holds the lease, not only the caller's own tenure.
    ReleaseFreesAnother,
    /// Leases never expire (every TTL stretched a thousandfold).
    NeverExpires,
}

/// A [`MemoryStore`] with one [`Flaw`]; otherwise sound.
pub struct BrokenStore {
    inner: MemoryStore,
    flaw: Flaw,
    /// DoubleGrant: the made-up leases, by instance; ReusedToken: the real leases, by instance.
    leases: Arc<Mutex<HashMap<String, Lease>>>,
}

impl BrokenStore {
    /// `inner` with `flaw`; handles that share `leases` share the flaw's bookkeeping.
    pub fn new(inner: MemoryStore, flaw: Flaw, leases: Arc<Mutex<HashMap<String, Lease>>>) -> Self {
        BrokenStore { inner, flaw, leases }
    }

    /// ReusedToken: the real lease behind a reported one.
    fn real(&self, lease: &Lease) -> Lease {
        match (self.flaw, lock(&self.leases).get(&lease.instance_id)) {
            (Flaw::ReusedToken, Some(real)) => Lease { token: real.token, ..lease.clone() },
            _ => lease.clone(),
        }
    }

    fn reported(&self, lease: Lease) -> Lease {
        match self.flaw {
            Flaw::ReusedToken => Lease { token: FencingToken::new(1), ..lease },
            _ => lease,
        }
    }

    /// DoubleGrant: whether `lease` is one this store made up.
    fn made_up(&self, lease: &Lease) -> bool {
        self.flaw == Flaw::DoubleGrant
            && lock(&self.leases).get(&lease.instance_id).is_some_and(|f| f.token == lease.token)
    }

    fn ttl(&self, ttl: Duration) -> Duration {
        if self.flaw == Flaw::NeverExpires {
            ttl * 1000
        } else {
            ttl
        }
    }
}

#[leader_core::async_trait]
impl LeaseStore for BrokenStore {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let mut req = req.clone();
        req.ttl = self.ttl(req.ttl);
        if self.flaw == Flaw::DoubleGrant {
            if let Some(fake) = lock(&self.leases).get(&req.instance_id) {
                return Ok(Acquire::Acquired(fake.clone()));
            }
        }
        match self.inner.try_acquire(&req).await? {
            Acquire::Acquired(lease) => {
                if self.flaw == Flaw::ReusedToken {
                    lock(&self.leases).insert(lease.instance_id.clone(), lease.clone());
                }
                Ok(Acquire::Acquired(self.reported(lease)))
            }
            Acquire::Held(Some(holder)) if self.flaw == Flaw::DoubleGrant => {
                let fake = Lease {
                    participant_id: req.participant_id.clone(),
                    instance_id: req.instance_id.clone(),
                    token: FencingToken::new(holder.token.get() + 1000),
                    ..holder
                };
                lock(&self.leases).insert(req.instance_id.clone(), fake.clone());
                Ok(Acquire::Acquired(fake))
            }
            Acquire::Held(holder) => Ok(Acquire::Held(holder.map(|h| self.reported(h)))),
            refused @ Acquire::Refused(_) => Ok(refused),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        if self.made_up(lease) {
            return Ok(Some(lease.clone()));
        }
        Ok(self.inner.renew(&self.real(lease), self.ttl(ttl)).await?.map(|l| self.reported(l)))
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        if self.made_up(lease) {
            lock(&self.leases).remove(&lease.instance_id);
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
        if self.made_up(lease) {
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
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
}

/// A [`Provider`] whose handles are [`BrokenStore`]s over one fresh, uniquely named memory store.
pub struct BrokenProvider {
    name: String,
    _keep: MemoryStore,
    flaw: Flaw,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
    options: ElectionOptions,
}

impl BrokenProvider {
    /// A provider with `flaw` and `options`.
    pub fn new(flaw: Flaw, options: ElectionOptions) -> Self {
        let name = format!("broken-{}", uuid::Uuid::new_v4().simple());
        BrokenProvider { _keep: MemoryStore::named(&name), name, flaw, leases: Arc::default(), options }
    }
}

#[leader_core::async_trait]
impl Provider for BrokenProvider {
    fn name(&self) -> &'static str {
        "broken-memory"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(BrokenStore::new(MemoryStore::named(&self.name), self.flaw, self.leases.clone())))
    }
    fn options(&self) -> ElectionOptions {
        self.options.clone()
    }
}
