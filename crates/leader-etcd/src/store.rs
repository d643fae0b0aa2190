//! [`EtcdStore`] and its [`LeaseStore`] implementation.
//!
//! One key per election, `<prefix>/<election>`, holding JSON `{participant_id, instance_id,
//! metadata}` and bound to an etcd lease of the participant that holds it. See the crate docs
//! for the transactions, the lease scope and the tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use futures::stream::BoxStream;
use leader_core::{
    async_trait, validate_election_name, validate_instance_id, validate_metadata, validate_participant_id,
    validate_prefix, Acquire, AcquireRequest, Capabilities, ElectionOptions, Error, FencingToken, LeaderInfo, Lease,
    LeaseHandle, LeaseStore, Metadata, Renewal, Result,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{EtcdStoreBuilder, Tls};
use crate::endpoints::Endpoints;
use crate::error::{etcd_error, lease_not_found};

/// etcd's largest lease TTL (`MaxLeaseTTL`, 9 000 000 000 s).
const MAX_TTL_SECS: u64 = 9_000_000_000;

/// How many times one call starts over when the lease it used turned out to be gone.
const ATTEMPTS: usize = 3;

/// How many leases one batch transaction carries, as nested transactions. etcd refuses a
/// transaction with more than `--max-txn-ops` operations (128 by default), counting a nested
/// transaction's own operations against what the outer one leaves: 64 nested transactions of at
/// most two compares each stay within the default with room to spare.
const BATCH_TXN_OPS: usize = 64;

/// A lease store on etcd v3: one key per election under a prefix, each bound to an etcd lease of
/// its holder. Cheap to clone: clones share the client (its connections) and the participants'
/// leases. See the crate docs.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) endpoints: Arc<Endpoints>,
    pub(crate) prefix: String,
    /// The server's smallest lease TTL, in seconds (learnt when connecting).
    min_ttl: u64,
    /// The etcd lease of each participant (election, instance id) on this handle; see `OwnLease`.
    leases: Mutex<HashMap<(String, String), OwnLease>>,
    /// Keys this handle's watches saw deleted since anyone here last looked at them (see
    /// `acquire`).
    pub(crate) freed: Arc<Mutex<HashSet<String>>>,
    /// An open keep-alive stream per lease id we keep alive (see `keep_alive`).
    keepers: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Option<Keeper>>>>>,
    authenticated: bool,
    tls: bool,
}

/// A participant's own etcd lease. Granted when it first finds its election free; kept alive only
/// by its own acquire and renew calls (never in the background), reused across its tenures while
/// it lives, forgotten (left to expire) when it is gone or the participant withdraws.
#[derive(Debug, Clone, Copy)]
struct OwnLease {
    id: i64,
    ttl: u64,
    /// Our estimate of when the server expires it: the send time of the last grant or keep-alive
    /// that succeeded, plus the TTL. The server never expires it earlier (same clock rate).
    alive_until: Instant,
}

/// A keep-alive stream of one lease, kept open between calls: a keep-alive on it is one message
/// each way, where opening a stream per call costs the stream's setup on both sides too.
struct Keeper {
    keeper: etcd_client::LeaseKeeper,
    answers: etcd_client::LeaseKeepAliveStream,
}

impl Keeper {
    /// One keep-alive: the TTL the server answered (0: the lease is gone).
    async fn exchange(&mut self) -> std::result::Result<i64, etcd_client::Error> {
        self.keeper.keep_alive().await?;
        match self.answers.message().await? {
            Some(answer) => Ok(answer.ttl()),
            None => Err(etcd_client::Error::WatchError("the keep-alive stream ended".into())),
        }
    }
}

/// What a [`Lease`] of ours carries in its [`LeaseHandle`]: the etcd lease the key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle {
    pub(crate) lease_id: i64,
    pub(crate) ttl: u64,
}

/// The value stored in an election's key.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    participant_id: String,
    instance_id: String,
    #[serde(default)]
    metadata: Metadata,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints.urls())
            .field("prefix", &self.inner.prefix)
            .field("min_lease_ttl_s", &self.inner.min_ttl)
            .field("authenticated", &self.inner.authenticated)
            .field("tls", &self.inner.tls)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// A builder: endpoints, prefix, authentication, TLS, timeouts.
    pub fn builder() -> EtcdStoreBuilder {
        EtcdStoreBuilder::default()
    }

    /// Connects to `etcd://[user:password@]host:port[,host:port]/prefix[?params]` (`etcds://`
    /// for TLS); see [`EtcdConfig::from_url`](crate::EtcdConfig::from_url).
    ///
    /// # Errors
    /// See [`EtcdStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        crate::EtcdConfig::from_url(url)?.connect().await
    }

    pub(crate) async fn open(b: EtcdStoreBuilder) -> Result<Self> {
        let urls = b.endpoint_urls()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(b.connect_timeout)
            .with_timeout(b.request_timeout)
            // HTTP/2 pings on connections with open streams (watches), so a dead server or a
            // black-holed connection is noticed; not more often than etcd's default
            // --grpc-keepalive-min-time (5 s) allows, and not on idle connections, which etcd
            // answers with GOAWAY (too_many_pings).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false)
            // A member cut off from its cluster answers at once ("no leader") instead of letting
            // reads and writes wait for a leader that may not come; its watches are cancelled.
            .with_require_leader(true);
        if let Some((user, password)) = &b.user {
            options = options.with_user(user.clone(), password.clone()).with_auto_token_refresh(true);
        }
        let tls = match b.tls {
            Tls::Off => false,
            #[cfg(feature = "tls")]
            Tls::On(tls) => {
                options = options.with_tls(tls);
                true
            }
        };
        let endpoints = Arc::new(Endpoints::new(urls.clone(), options));
        let limit = (b.connect_timeout + b.request_timeout) * 2;
        let min_ttl = match tokio::time::timeout(limit, probe(&endpoints, &b.prefix)).await {
            Ok(result) => result?,
            Err(_) => return Err(Error::unavailable(format!("no etcd endpoint of {urls:?} answered in time"))),
        };
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                endpoints,
                prefix: b.prefix,
                min_ttl,
                leases: Mutex::new(HashMap::new()),
                keepers: Mutex::new(HashMap::new()),
                freed: Arc::new(Mutex::new(HashSet::new())),
                authenticated: b.user.is_some(),
                tls,
            }),
        })
    }

    /// The etcd client of this store's current endpoint (a clone: same connection), for what
    /// this crate does not wrap: reading the keys, administration, tests that delete a key or
    /// revoke a lease from outside.
    ///
    /// # Errors
    /// When the client cannot be made (with credentials, it authenticates on first use).
    pub async fn client(&self) -> Result<Client> {
        self.inner.endpoints.current_client().await.map_err(|e| etcd_error("connect", e))
    }

    /// The key prefix every election lives under.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key of `election`: `<prefix>/<election>`.
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for an invalid election name.
    pub fn key(&self, election: &str) -> Result<String> {
        validate_election_name(election)?;
        Ok(self.key_unchecked(election))
    }

    pub(crate) fn key_unchecked(&self, election: &str) -> String {
        format!("{}/{election}", self.inner.prefix)
    }

    /// The server's smallest lease TTL, learnt when the store connected: `check_options` refuses a
    /// shorter `lease_duration`. etcd makes it 1.5 × its election timeout, rounded up to whole
    /// seconds (2 s with the default 1 s election timeout).
    pub fn min_lease(&self) -> Duration {
        Duration::from_secs(self.inner.min_ttl)
    }

    /// `ttl` as whole seconds the server will grant: refuses fractions, and anything below the
    /// server's minimum (which it would silently raise) or above its maximum.
    pub(crate) fn ttl_secs(&self, ttl: Duration, what: &str) -> Result<u64> {
        let shown = humantime::format_duration(ttl);
        if ttl.subsec_nanos() != 0 {
            return Err(Error::invalid_argument(format!(
                "{what} {shown} is not a whole number of seconds: etcd lease TTLs are whole seconds \
                 (use e.g. ElectionOptions::from_lease(Duration::from_secs({})))",
                ttl.as_secs().max(self.inner.min_ttl)
            )));
        }
        let secs = ttl.as_secs();
        if secs < self.inner.min_ttl {
            return Err(Error::invalid_argument(format!(
                "{what} {shown} is below this etcd cluster's smallest lease TTL {}s (1.5 x its election \
                 timeout, rounded up); use at least {}s",
                self.inner.min_ttl, self.inner.min_ttl
            )));
        }
        if secs > MAX_TTL_SECS {
            return Err(Error::invalid_argument(format!(
                "{what} {shown} is above etcd's largest lease TTL of {MAX_TTL_SECS}s"
            )));
        }
        Ok(secs)
    }

    // ---- participants' leases -------------------------------------------------------------

    /// Our lease for (election, instance) with this TTL, if we believe it still lives.
    fn cached_lease(&self, election: &str, instance: &str, ttl: u64) -> Option<OwnLease> {
        let leases = lock(&self.inner.leases);
        let own = leases.get(&(election.to_owned(), instance.to_owned()))?;
        (own.ttl == ttl && own.alive_until > Instant::now()).then_some(*own)
    }

    /// Remembers (or refreshes) our lease for (election, instance), alive until `sent + ttl`.
    fn remember(&self, election: &str, instance: &str, id: i64, ttl: u64, sent: Instant) {
        let mut leases = lock(&self.inner.leases);
        let now = Instant::now();
        // Forget leases that have surely expired (participants that went away), and their
        // keep-alive streams.
        if leases.len() >= 64 {
            leases.retain(|_, l| l.alive_until > now);
            let live: std::collections::HashSet<i64> = leases.values().map(|l| l.id).collect();
            lock(&self.inner.keepers).retain(|id, _| live.contains(id));
        }
        let alive_until = sent + Duration::from_secs(ttl);
        let entry =
            leases.entry((election.to_owned(), instance.to_owned())).or_insert(OwnLease { id, ttl, alive_until });
        if entry.id != id {
            *entry = OwnLease { id, ttl, alive_until };
        } else if alive_until > entry.alive_until {
            entry.alive_until = alive_until;
        }
    }

    /// Forgets our lease `id` of (election, instance) (it is gone, or we leave).
    fn forget(&self, election: &str, instance: &str, id: Option<i64>) {
        let mut leases = lock(&self.inner.leases);
        let key = (election.to_owned(), instance.to_owned());
        if leases.get(&key).is_some_and(|l| id.is_none_or(|id| l.id == id)) {
            if let Some(gone) = leases.remove(&key) {
                lock(&self.inner.keepers).remove(&gone.id);
            }
        }
    }

    /// Grants a fresh lease for (election, instance) and remembers it.
    async fn grant(&self, election: &str, instance: &str, ttl: u64) -> Result<OwnLease> {
        let sent = Instant::now();
        let secs = i64::try_from(ttl).unwrap_or(i64::MAX);
        let resp = self
            .inner
            .endpoints
            .call(|c| async move { c.lease_client().grant(secs, None).await })
            .await
            .map_err(|e| etcd_error("lease grant", e))?;
        let granted = u64::try_from(resp.ttl()).unwrap_or(0);
        if granted < ttl {
            // Never expected (we only ask for TTLs at or above the minimum): do not use a lease
            // that would expire before the caller's deadline.
            return Err(Error::backend(format!("etcd granted a {granted}s lease where {ttl}s was asked for")));
        }
        // A larger grant (the cluster's minimum grew) only makes expiry later: safe.
        self.remember(election, instance, resp.id(), ttl, sent);
        Ok(OwnLease { id: resp.id(), ttl, alive_until: sent + Duration::from_secs(ttl) })
    }

    /// One keep-alive of lease `id`: `Ok(true)` when the server refreshed it to its full TTL,
    /// `Ok(false)` when the lease is gone (expired or revoked).
    ///
    /// It goes over the lease's open keep-alive stream when there is one, else opens one (which
    /// sends the first keep-alive). The stream is taken out of its slot while in use and put back
    /// only after a whole exchange: a call dropped half-way (its answer still on the way) drops the
    /// stream with it, so no later call can read that stale answer.
    pub(crate) async fn keep_alive(&self, id: i64) -> Result<bool> {
        let slot = lock(&self.inner.keepers).entry(id).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(mut keeper) = slot.take() {
            match keeper.exchange().await {
                Ok(ttl) if ttl > 0 => {
                    *slot = Some(keeper);
                    return Ok(true);
                }
                Ok(_) => return Ok(false),
                // The stream broke (its member went away): open a new one below.
                Err(e) => tracing::debug!(error = %e, "leader-etcd: keep-alive stream lost; opening another"),
            }
        }
        match self.inner.endpoints.call(|c| async move { c.lease_client().keep_alive(id).await }).await {
            Ok((keeper, answers)) => {
                *slot = Some(Keeper { keeper, answers });
                Ok(true)
            }
            Err(e) if lease_not_found(&e) => Ok(false),
            Err(e) => Err(etcd_error("lease keep-alive", e)),
        }
    }

    // ---- reading ---------------------------------------------------------------------------

    pub(crate) async fn txn(&self, txn: Txn) -> std::result::Result<TxnResponse, etcd_client::Error> {
        self.inner
            .endpoints
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut resp = self
            .inner
            .endpoints
            .call(|c| async move { c.kv_client().get(key, None).await })
            .await
            .map_err(|e| etcd_error("get", e))?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// The lease a key describes (anyone's: no handle).
    fn lease_of(&self, election: &str, kv: &KeyValue) -> Lease {
        // Only we write these keys; a value that does not decode (written by hand) still means the
        // election is held, by someone we cannot name.
        let record: Record = serde_json::from_slice(kv.value()).unwrap_or(Record {
            participant_id: String::new(),
            instance_id: String::new(),
            metadata: Metadata::new(),
        });
        Lease {
            election: election.to_owned(),
            participant_id: record.participant_id,
            instance_id: record.instance_id,
            token: FencingToken::new(u64::try_from(kv.create_revision()).unwrap_or(0)),
            acquired_at: None,
            expires_at: None,
            expires_in: None,
            metadata: record.metadata,
            handle: LeaseHandle::default(),
        }
    }

    /// Our lease: the request's identity, the key's token, bound to `handle`.
    fn own_lease(req: &AcquireRequest, token: i64, handle: Handle) -> Lease {
        Lease {
            election: req.election.clone(),
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
            acquired_at: None,
            expires_at: None,
            expires_in: Some(Duration::from_secs(handle.ttl)),
            metadata: req.metadata.clone(),
            handle: LeaseHandle::new(handle),
        }
    }

    fn encode(participant_id: &str, instance_id: &str, metadata: &Metadata) -> Result<Vec<u8>> {
        let record = Record {
            participant_id: participant_id.to_owned(),
            instance_id: instance_id.to_owned(),
            metadata: metadata.clone(),
        };
        serde_json::to_vec(&record).map_err(|e| Error::invalid_argument("metadata does not serialise").with_source(e))
    }

    fn instance_of(kv: &KeyValue) -> Option<String> {
        serde_json::from_slice::<Record>(kv.value()).ok().map(|r| r.instance_id)
    }

    // ---- acquiring ---------------------------------------------------------------------------

    /// The acquire transaction: if the key does not exist, create it bound to lease `lease_id`;
    /// otherwise read it. One round trip.
    pub(crate) fn acquire_txn(key: &str, value: &[u8], lease_id: i64) -> Txn {
        Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease_id)))])
            .or_else([TxnOp::get(key, None)])
    }

    /// The key a failed acquire transaction read.
    fn read_back(resp: TxnResponse) -> Option<KeyValue> {
        resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        })
    }

    /// The key is ours (same instance) from an earlier call: bind it to `own` (a lease of ours
    /// that was just granted or kept alive, so the TTL is fresh) with the request's value.
    /// `Ok(None)`: the key changed under us (start over).
    async fn claim_own(&self, key: &str, kv: &KeyValue, value: &[u8], own: OwnLease) -> Result<Option<i64>> {
        let rev = kv.create_revision();
        if kv.lease() == own.id && kv.value() == value {
            return Ok(Some(rev));
        }
        let txn = Txn::new().when([Compare::create_revision(key, CompareOp::Equal, rev)]).and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(own.id)),
        )]);
        match self.txn(txn).await {
            Ok(r) if r.succeeded() => Ok(Some(rev)),
            Ok(_) => Ok(None),
            Err(e) if lease_not_found(&e) => Ok(None),
            Err(e) => Err(etcd_error("acquire", e)),
        }
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        validate_participant_id(&req.participant_id)?;
        validate_instance_id(&req.instance_id)?;
        validate_metadata(&req.metadata)?;
        let ttl = self.ttl_secs(req.ttl, "lease ttl")?;
        let key = self.key_unchecked(&req.election);
        let value = Self::encode(&req.participant_id, &req.instance_id, &req.metadata)?;
        let (election, instance) = (req.election.as_str(), req.instance_id.as_str());
        // Whether a watch of this handle saw the key deleted since it was last looked at here.
        let mut freed = lock(&self.inner.freed).remove(&key);
        for _ in 0..ATTEMPTS {
            let sent = Instant::now();
            let (own, outcome) = match self.cached_lease(election, instance, ttl) {
                Some(own) => {
                    // Our lease from an earlier tenure (or attempt): the transaction puts the key
                    // on it while a keep-alive, sent at the same time, gives it its full TTL again.
                    // Both must succeed: then the key lives at least `ttl` from `sent`.
                    let (txn, alive) =
                        tokio::join!(self.txn(Self::acquire_txn(&key, &value, own.id)), self.keep_alive(own.id));
                    match alive {
                        Ok(true) => self.remember(election, instance, own.id, ttl, sent),
                        Ok(false) => {
                            // Gone (revoked, or expired before we asked): a key put on it is gone
                            // too or goes with it. Start over with a fresh lease.
                            self.forget(election, instance, Some(own.id));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    (own, txn)
                }
                None => {
                    // No lease of ours: look first, and take a lease only when the election is
                    // free, so followers cost the cluster no writes. When a watch of this handle
                    // has just seen the key deleted (the follower woken by a release or an
                    // expiry), skip the look: the transaction reads the key anyway if someone
                    // was faster, and the lease is then wasted.
                    if !std::mem::take(&mut freed) {
                        match self.get(&key).await? {
                            Some(kv) if Self::instance_of(&kv).as_deref() != Some(instance) => {
                                return Ok(Acquire::Held(Some(self.lease_of(election, &kv))));
                            }
                            _ => {}
                        }
                    }
                    let own = self.grant(election, instance, ttl).await?;
                    let txn = self.txn(Self::acquire_txn(&key, &value, own.id)).await;
                    (own, txn)
                }
            };
            let resp = match outcome {
                Ok(resp) => resp,
                Err(e) if lease_not_found(&e) => {
                    self.forget(election, instance, Some(own.id));
                    continue;
                }
                Err(e) => return Err(etcd_error("acquire", e)),
            };
            let handle = Handle { lease_id: own.id, ttl };
            if resp.succeeded() {
                let token = resp.header().map(|h| h.revision()).unwrap_or(0);
                return Ok(Acquire::Acquired(Self::own_lease(req, token, handle)));
            }
            let Some(kv) = Self::read_back(resp) else { continue };
            if Self::instance_of(&kv).as_deref() != Some(instance) {
                return Ok(Acquire::Held(Some(self.lease_of(election, &kv))));
            }
            // Already ours (a retried acquire, or manual mode refreshing): same token, fresh TTL.
            if let Some(token) = self.claim_own(&key, &kv, &value, own).await? {
                return Ok(Acquire::Acquired(Self::own_lease(req, token, handle)));
            }
        }
        Err(Error::unavailable(format!(
            "etcd acquire of {:?}: the lease it was bound to kept disappearing ({ATTEMPTS} attempts)",
            req.election
        )))
    }

    // ---- renewing ------------------------------------------------------------------------------

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        validate_election_name(&lease.election)?;
        let ttl = self.ttl_secs(ttl, "renew ttl")?;
        let key = self.key_unchecked(&lease.election);
        let token = token_param(lease)?;
        let handle = lease.handle.get::<Handle>().copied();
        let Some(handle) = handle.filter(|h| h.ttl == ttl) else {
            // A lease without our handle (made by another store handle) or with another TTL: bind
            // the key to a fresh lease of ours with this TTL.
            return self.rebind(lease, &key, token, ttl).await;
        };
        let sent = Instant::now();
        // The keep-alive refreshes the TTL; the read-only transaction checks, at the same time,
        // that the key is still the one this tenure created and still bound to that lease.
        let check = Txn::new().when([
            Compare::create_revision(key.as_str(), CompareOp::Equal, token),
            Compare::lease(key.as_str(), CompareOp::Equal, handle.lease_id),
        ]);
        let (alive, checked) = tokio::join!(self.keep_alive(handle.lease_id), self.txn(check));
        if !alive? {
            self.forget(&lease.election, &lease.instance_id, Some(handle.lease_id));
            return Ok(None);
        }
        self.remember(&lease.election, &lease.instance_id, handle.lease_id, ttl, sent);
        if !checked.map_err(|e| etcd_error("renew", e))?.succeeded() {
            return Ok(None);
        }
        let mut renewed = lease.clone();
        renewed.expires_in = Some(Duration::from_secs(ttl));
        Ok(Some(renewed))
    }

    /// [`LeaseStore::renew_batch`]: what [`renew_lease`](Self::renew_lease) does for each lease,
    /// with its checks gathered. The keep-alives of all the leases' etcd leases go out at once,
    /// each on its lease's open keep-alive stream (one message each way; etcd-client cannot put
    /// several lease ids on one stream, and the lease scope is one etcd lease per participant, see
    /// the crate docs); the checks go out at the same time as one read-only transaction per
    /// [`BATCH_TXN_OPS`] leases, holding a nested transaction per lease with that lease's own
    /// compares (create revision and lease), so that each lease gets its own verdict. One round
    /// trip in all, and one transaction instead of one per lease. Leases that need a fresh etcd
    /// lease (another TTL, or a lease of another store handle) are renewed on their own, at the
    /// same time.
    async fn renew_many(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let mut answers: Vec<Option<Result<Option<Lease>>>> = batch.iter().map(|_| None).collect();
        // The leases checked together: (index, key, token, handle).
        let mut fast: Vec<(usize, String, i64, Handle)> = Vec::new();
        let mut alone = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let checked = validate_election_name(&r.lease.election)
                .and_then(|()| Ok((self.ttl_secs(r.ttl, "renew ttl")?, token_param(&r.lease)?)));
            match checked {
                Err(e) => answers[i] = Some(Err(e)),
                Ok((ttl, token)) => match r.lease.handle.get::<Handle>().copied().filter(|h| h.ttl == ttl) {
                    Some(handle) => fast.push((i, self.key_unchecked(&r.lease.election), token, handle)),
                    None => alone.push(i),
                },
            }
        }
        let sent = Instant::now();
        // One keep-alive per etcd lease, even if a batch names one twice.
        let ids: Vec<i64> = fast.iter().map(|f| f.3.lease_id).collect::<HashSet<_>>().into_iter().collect();
        let checks = fast.chunks(BATCH_TXN_OPS).map(|chunk| {
            let txn = Txn::new().and_then(
                chunk
                    .iter()
                    .map(|(_, key, token, handle)| {
                        TxnOp::txn(Txn::new().when([
                            Compare::create_revision(key.as_str(), CompareOp::Equal, *token),
                            Compare::lease(key.as_str(), CompareOp::Equal, handle.lease_id),
                        ]))
                    })
                    .collect::<Vec<_>>(),
            );
            self.txn(txn)
        });
        let (alive, checks, singles) = tokio::join!(
            futures::future::join_all(ids.iter().map(|&id| self.keep_alive(id))),
            futures::future::join_all(checks),
            futures::future::join_all(alone.iter().map(|&i| self.renew_lease(&batch[i].lease, batch[i].ttl))),
        );
        let alive: HashMap<i64, Result<bool>> = ids.into_iter().zip(alive).collect();
        for (i, single) in alone.into_iter().zip(singles) {
            answers[i] = Some(single);
        }
        for (chunk, checked) in fast.chunks(BATCH_TXN_OPS).zip(checks) {
            let verdicts =
                checked.map_err(|e| etcd_error("renew", e)).and_then(|resp| nested_verdicts(&resp, chunk.len()));
            for (k, (i, _, _, handle)) in chunk.iter().enumerate() {
                let lease = &batch[*i].lease;
                answers[*i] = Some(match alive.get(&handle.lease_id) {
                    None => Err(Error::backend("renew_batch: no keep-alive answer")),
                    Some(Err(e)) => Err(copy_error(e)),
                    Some(Ok(false)) => {
                        self.forget(&lease.election, &lease.instance_id, Some(handle.lease_id));
                        Ok(None)
                    }
                    Some(Ok(true)) => {
                        self.remember(&lease.election, &lease.instance_id, handle.lease_id, handle.ttl, sent);
                        match &verdicts {
                            Err(e) => Err(copy_error(e)),
                            Ok(v) if !v[k] => Ok(None),
                            Ok(_) => {
                                let mut renewed = lease.clone();
                                renewed.expires_in = Some(Duration::from_secs(handle.ttl));
                                Ok(Some(renewed))
                            }
                        }
                    }
                });
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("renew_batch: no answer")))).collect()
    }

    /// [`LeaseStore::release_batch`]: one transaction per [`BATCH_TXN_OPS`] leases, holding a
    /// nested transaction per lease that deletes its key if it still has the lease's create
    /// revision, exactly as [`release`](LeaseStore::release) does; each nested transaction answers
    /// for its own lease. A key named twice in a batch is released on its own afterwards (etcd
    /// refuses a transaction that deletes one key twice), which answers `false` as a second
    /// release would.
    async fn release_many(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let mut answers: Vec<Option<Result<bool>>> = leases.iter().map(|_| None).collect();
        let mut seen = HashSet::new();
        let (mut together, mut again) = (Vec::new(), Vec::new());
        for (i, lease) in leases.iter().enumerate() {
            match validate_election_name(&lease.election).and_then(|()| token_param(lease)) {
                Err(e) => answers[i] = Some(Err(e)),
                Ok(token) => {
                    let key = self.key_unchecked(&lease.election);
                    if seen.insert(key.clone()) {
                        together.push((i, key, token));
                    } else {
                        again.push(i);
                    }
                }
            }
        }
        let txns = together.chunks(BATCH_TXN_OPS).map(|chunk| {
            let txn = Txn::new().and_then(
                chunk
                    .iter()
                    .map(|(_, key, token)| {
                        TxnOp::txn(
                            Txn::new()
                                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, *token)])
                                .and_then([TxnOp::delete(key.as_str(), None)]),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            self.txn(txn)
        });
        let results = futures::future::join_all(txns).await;
        for (chunk, result) in together.chunks(BATCH_TXN_OPS).zip(results) {
            let verdicts =
                result.map_err(|e| etcd_error("release", e)).and_then(|resp| nested_verdicts(&resp, chunk.len()));
            for (k, (i, _, _)) in chunk.iter().enumerate() {
                answers[*i] = Some(match &verdicts {
                    Ok(v) => Ok(v[k]),
                    Err(e) => Err(copy_error(e)),
                });
            }
        }
        for i in again {
            answers[i] = Some(self.release(&leases[i]).await);
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("release_batch: no answer")))).collect()
    }

    /// Binds our key (create revision `token`) to a fresh lease of ours with `ttl`, keeping its value.
    async fn rebind(&self, lease: &Lease, key: &str, token: i64, ttl: u64) -> Result<Option<Lease>> {
        let own = self.grant(&lease.election, &lease.instance_id, ttl).await?;
        let txn = Txn::new().when([Compare::create_revision(key, CompareOp::Equal, token)]).and_then([TxnOp::put(
            key,
            "",
            Some(PutOptions::new().with_lease(own.id).with_ignore_value()),
        )]);
        match self.txn(txn).await {
            Ok(r) if r.succeeded() => {
                let mut renewed = lease.clone();
                renewed.expires_in = Some(Duration::from_secs(ttl));
                renewed.handle = LeaseHandle::new(Handle { lease_id: own.id, ttl });
                Ok(Some(renewed))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(etcd_error("renew", e)),
        }
    }
}

/// Whether each of the `n` nested transactions of a batch transaction succeeded, in order.
fn nested_verdicts(resp: &TxnResponse, n: usize) -> Result<Vec<bool>> {
    let verdicts: Vec<bool> = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Txn(t) => Some(t.succeeded()),
            _ => None,
        })
        .collect();
    if verdicts.len() != n {
        return Err(Error::backend(format!(
            "etcd answered {} of the {n} nested transactions of a batch",
            verdicts.len()
        )));
    }
    Ok(verdicts)
}

/// A copy of `e` for another lease of the same batch (`Error` is not `Clone`): its kind, and its
/// message with the source's words.
fn copy_error(e: &Error) -> Error {
    let message = match std::error::Error::source(e) {
        Some(source) if !e.message().contains(&source.to_string()) => format!("{}: {source}", e.message()),
        _ => e.message().to_owned(),
    };
    Error::new(e.kind(), message)
}

fn token_param(lease: &Lease) -> Result<i64> {
    i64::try_from(lease.token.get())
        .map_err(|_| Error::invalid_argument(format!("token {} is not an etcd revision", lease.token)))
}

/// What a new store asks the cluster: its smallest lease TTL (it grants a 1-second lease and
/// revokes it: the TTL the server gave is its minimum), and one read under the prefix, so that
/// missing credentials or permissions show now rather than at the first election.
async fn probe(endpoints: &Endpoints, prefix: &str) -> Result<u64> {
    let resp = endpoints
        .call(|c| async move { c.lease_client().grant(1, None).await })
        .await
        .map_err(|e| etcd_error("connect (lease grant)", e))?;
    let ttl = u64::try_from(resp.ttl()).unwrap_or(1).max(1);
    let id = resp.id();
    if let Err(e) = endpoints.call(|c| async move { c.lease_client().revoke(id).await }).await {
        // It expires by itself in a few seconds.
        tracing::debug!(error = %e, "leader-etcd: could not revoke the probe lease");
    }
    let key = format!("{prefix}/");
    endpoints
        .call(|c| {
            let key = key.clone();
            async move { c.kv_client().get(key, None).await }
        })
        .await
        .map_err(|e| etcd_error("connect (read under the prefix)", e))?;
    Ok(ttl)
}

#[async_trait]
impl LeaseStore for EtcdStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// One transaction: create the key bound to our lease if it does not exist, else read it.
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.acquire(req).await
    }

    /// A keep-alive of the tenure's etcd lease and, at the same time, a read-only transaction that
    /// checks the key still has this tenure's create revision and lease.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.renew_lease(lease, ttl).await
    }

    /// The keep-alives of all the leases at once, on their open streams, and one read-only
    /// transaction (per 64 leases) that checks every key at the same time, a nested transaction
    /// per lease: one round trip for the batch. Each lease is answered as by [`renew`](Self::renew).
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        self.renew_many(batch).await
    }

    /// One transaction (per 64 leases) holding a nested transaction per lease, each deleting its
    /// key if it still has the lease's create revision: one round trip, each lease answered as by
    /// [`release`](Self::release).
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        self.release_many(leases).await
    }

    /// Deletes the key if it still has this tenure's create revision. The participant's etcd lease
    /// stays (it expires, or carries the participant's next tenure).
    async fn release(&self, lease: &Lease) -> Result<bool> {
        validate_election_name(&lease.election)?;
        let key = self.key_unchecked(&lease.election);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, token_param(lease)?)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let resp = self.txn(txn).await.map_err(|e| etcd_error("release", e))?;
        Ok(resp.succeeded())
    }

    /// A put, guarded by the tenure's create revision, that keeps the key's lease.
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        validate_election_name(&lease.election)?;
        validate_metadata(metadata)?;
        let key = self.key_unchecked(&lease.election);
        let value = Self::encode(&lease.participant_id, &lease.instance_id, metadata)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, token_param(lease)?)])
            .and_then([TxnOp::put(key.as_str(), value, Some(PutOptions::new().with_ignore_lease()))]);
        let resp = self.txn(txn).await.map_err(|e| etcd_error("update_metadata", e))?;
        if !resp.succeeded() {
            return Ok(None);
        }
        let mut updated = lease.clone();
        updated.metadata = metadata.clone();
        Ok(Some(updated))
    }

    /// No queue in etcd. The participant is leaving (`Election::stop`): its etcd lease is revoked,
    /// which also deletes the key if a release did not get through.
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        let own = lock(&self.inner.leases).remove(&(election.to_owned(), instance_id.to_owned()));
        let Some(own) = own else { return Ok(()) };
        lock(&self.inner.keepers).remove(&own.id);
        match self.inner.endpoints.call(|c| async move { c.lease_client().revoke(own.id).await }).await {
            Ok(_) => Ok(()),
            Err(e) if lease_not_found(&e) => Ok(()),
            Err(e) => Err(etcd_error("lease revoke", e)),
        }
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let kv = self.get(&self.key_unchecked(election)).await?;
        Ok(kv.map(|kv| self.lease_of(election, &kv)))
    }

    /// One range read of `<prefix>/<prefix of names>`, in key order (= election order).
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let start = format!("{}/", self.inner.prefix);
        let range = format!("{start}{prefix}");
        let mut resp = self
            .inner
            .endpoints
            .call(|c| {
                let range = range.clone();
                async move { c.kv_client().get(range, Some(GetOptions::new().with_prefix())).await }
            })
            .await
            .map_err(|e| etcd_error("list", e))?;
        let mut out = Vec::new();
        for kv in resp.take_kvs() {
            let Some(name) = kv.key_str().ok().and_then(|k| k.strip_prefix(&start)) else { continue };
            // Keys below deeper paths (another store's prefix under ours) are not our elections.
            if validate_election_name(name).is_ok() {
                out.push(self.lease_of(name, &kv));
            }
        }
        Ok(out)
    }

    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        if validate_election_name(election).is_err() || instance_id.is_some_and(|i| validate_instance_id(i).is_err()) {
            return None;
        }
        crate::watch::stream(&self.inner.endpoints, &self.inner.freed, self.key_unchecked(election))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: true,
            // etcd deletes the key when its lease expires, and the watch sees the delete.
            pushes_expiry: true,
            server_side_expiry: true,
            // Revisions are the cluster's, persisted through Raft; never reset while the data lives.
            durable_tokens: true,
            cross_host: true,
            // Raft: a write is acknowledged once a majority has it; a new etcd leader has every
            // acknowledged write and extends every lease.
            survives_store_failover: true,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.ttl_secs(options.lease_duration, "lease_duration").map(drop)
    }
}
