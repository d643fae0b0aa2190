//! [`ConsulStore`]: the [`LeaseStore`] over Consul sessions and KV.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use hyper::Method;
use leader_core::{
    async_trait, validate_election_name, validate_participant_id, validate_prefix, Acquire, AcquireRequest,
    Capabilities, ElectionOptions, Error, LeaderInfo, Lease, LeaseStore, Metadata, Result,
};

use crate::api::{self, KvEntry, LeaseValue, SessionHandle, TxnOp, TxnOutcome};
use crate::config::ConsulConfig;
use crate::http::{https_client, Http};

/// Consul's shortest session TTL.
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// Consul's longest session TTL.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// How often one `try_acquire` goes round when Consul changes under it (key deleted between two
/// reads, session expired); each round is a real change, so a few are plenty.
const ACQUIRE_ROUNDS: usize = 4;

/// A lease store over Consul. Cheap to clone (clones share the client and the sessions).
#[derive(Clone)]
pub struct ConsulStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ConsulConfig>,
    http: Http,
    consul: rs_consul::Consul,
    /// One session per (election, instance): created at its first acquire attempt, destroyed on
    /// release/withdraw, forgotten when Consul says it is gone.
    sessions: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for ConsulStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulStore").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ConsulStore {
    /// A store for a `consul://` URL. Sends nothing yet (the first call does).
    pub fn connect(url: &str) -> Result<Self> {
        Self::with_config(ConsulConfig::from_url(url)?)
    }

    /// A store configured from `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN` and `CONSUL_HTTP_SSL`, as
    /// Consul's CLI reads them (see [`ConsulConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::with_config(ConsulConfig::from_env()?)
    }

    /// A store with a prepared configuration.
    pub fn with_config(config: ConsulConfig) -> Result<Self> {
        let config = Arc::new(config);
        let client = https_client()?;
        let consul = rs_consul::ConsulBuilder::new(rs_consul::Config {
            address: config.address.clone(),
            token: config.token.clone(),
            hyper_builder: hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new()),
        })
        .with_https_client(client.clone())
        .build();
        let http = Http::new(client, config.clone());
        Ok(ConsulStore { inner: Arc::new(Inner { config, http, consul, sessions: Mutex::default() }) })
    }

    /// The configuration.
    pub fn config(&self) -> &ConsulConfig {
        &self.inner.config
    }

    fn key(&self, election: &str) -> String {
        self.inner.config.key(election)
    }

    fn cached_session(&self, election: &str, instance_id: &str) -> Option<String> {
        lock(&self.inner.sessions).get(&(election.to_owned(), instance_id.to_owned())).cloned()
    }

    /// Makes `session` this instance's session (a lock of ours held by a session we did not
    /// cache: e.g. two racing first attempts).
    fn adopt_session(&self, election: &str, instance_id: &str, session: &str) {
        lock(&self.inner.sessions).insert((election.to_owned(), instance_id.to_owned()), session.to_owned());
    }

    fn forget_session(&self, election: &str, instance_id: &str, session: &str) {
        let mut sessions = lock(&self.inner.sessions);
        let k = (election.to_owned(), instance_id.to_owned());
        if sessions.get(&k).is_some_and(|s| s == session) {
            sessions.remove(&k);
        }
    }

    /// The session of this (election, instance), created if there is none; `true` with a session
    /// created by this call (its TTL counts from now).
    async fn session_for(&self, req: &AcquireRequest) -> Result<(String, bool)> {
        if let Some(s) = self.cached_session(&req.election, &req.instance_id) {
            return Ok((s, false));
        }
        let body = api::SessionCreate::new(
            format!("leader:{}:{}", req.election, req.participant_id),
            req.ttl,
            self.inner.config.lock_delay,
        );
        let body = serde_json::to_vec(&body).map_err(|e| Error::backend("cannot encode a session").with_source(e))?;
        let http = &self.inner.http;
        let resp = http.send(Method::PUT, http.url("session/create", &[]), body, http.timeout()).await?;
        if resp.status != 200 {
            return Err(api::status_error("session create", resp.status, &resp.body));
        }
        let id = api::decode_session_created(&resp.body)?;
        // Kept before anything else can be awaited: a cancelled acquire that already created the
        // session finds it again on its retry (and so finds its own lock, same token). If another
        // call for the same instance cached one first, that one is used (ours expires unused).
        let cached =
            lock(&self.inner.sessions).entry((req.election.clone(), req.instance_id.clone())).or_insert(id).clone();
        Ok((cached, true))
    }

    /// The session to lock with in this acquire, its TTL counting from now: Consul restarts a
    /// session's timer on create and renew only, not on `lock`. A session cached from an earlier
    /// attempt (a follower's, made at its first attempt and idle while it followed) is renewed
    /// first; had it been locked with as it was, Consul could reap it (and delete the key,
    /// `Behavior: delete`) one TTL after it was *made*, long before the new leader's local
    /// deadline. A session Consul no longer knows is replaced by a new one.
    async fn fresh_session_for(&self, req: &AcquireRequest) -> Result<String> {
        let (session, created) = self.session_for(req).await?;
        if created || self.renew_session(&session).await? {
            return Ok(session);
        }
        self.forget_session(&req.election, &req.instance_id, &session);
        Ok(self.session_for(req).await?.0)
    }

    /// `PUT /v1/session/renew/<id>`: `false` when Consul no longer knows the session.
    async fn renew_session(&self, session: &str) -> Result<bool> {
        let http = &self.inner.http;
        let resp = http
            .send(Method::PUT, http.url(&format!("session/renew/{session}"), &[]), Vec::new(), http.timeout())
            .await?;
        if let Some(ttl) = api::decode_session_renewed(resp.status, &resp.body)? {
            tracing::trace!(session, ttl, "renewed Consul session");
            return Ok(true);
        }
        Ok(false)
    }

    /// `PUT /v1/session/destroy/<id>`: deletes every key the session holds (Behavior: delete), at
    /// once. Idempotent.
    async fn destroy_session(&self, session: &str) -> Result<()> {
        let http = &self.inner.http;
        let resp = http
            .send(Method::PUT, http.url(&format!("session/destroy/{session}"), &[]), Vec::new(), http.timeout())
            .await?;
        if resp.status != 200 {
            return Err(api::status_error("session destroy", resp.status, &resp.body));
        }
        Ok(())
    }

    async fn txn(&self, ops: &[TxnOp]) -> Result<TxnOutcome> {
        let body = serde_json::to_vec(ops).map_err(|e| Error::backend("cannot encode a transaction").with_source(e))?;
        let http = &self.inner.http;
        let resp = http.send(Method::PUT, http.url("txn", &[]), body, http.timeout()).await?;
        api::decode_txn(resp.status, &resp.body)
    }

    /// Reads one key through rs-consul: the entry and its (already base64-decoded) value.
    async fn read(&self, key: &str, recurse: bool) -> Result<Vec<(KvEntry, Option<String>)>> {
        let req = rs_consul::ReadKeyRequest {
            key,
            datacenter: self.inner.config.datacenter.as_deref().unwrap_or(""),
            recurse,
            ..Default::default()
        };
        let read = self.inner.consul.read_key(req);
        match tokio::time::timeout(self.inner.http.timeout(), read).await {
            Err(_) => Err(Error::timeout("Consul KV read did not answer in time")),
            Ok(Ok(meta)) => Ok(meta
                .response
                .into_iter()
                .map(|r| {
                    let entry = KvEntry {
                        key: r.key,
                        create_index: r.create_index.max(0).unsigned_abs(),
                        modify_index: r.modify_index.max(0).unsigned_abs(),
                        lock_index: r.lock_index.max(0).unsigned_abs(),
                        value: None,
                        session: r.session,
                    };
                    (entry, r.value)
                })
                .collect()),
            // rs-consul reports an absent key as an unexpected 404.
            Ok(Err(rs_consul::ConsulError::UnexpectedResponseCode(status, _))) if status.as_u16() == 404 => {
                Ok(Vec::new())
            }
            Ok(Err(e)) => Err(map_rs_consul(e, &self.inner.config.address)),
        }
    }

    async fn read_one(&self, key: &str) -> Result<Option<(KvEntry, Option<String>)>> {
        Ok(self.read(key, false).await?.into_iter().find(|(e, _)| e.key == key))
    }

    fn committed_lease(&self, election: &str, outcome: &TxnOutcome) -> Result<Lease> {
        let entry =
            outcome.entry().ok_or_else(|| Error::backend("Consul committed the transaction but sent no key"))?;
        api::entry_to_lease(election, entry, true)?
            .ok_or_else(|| Error::backend("Consul committed a lock but the key has no session"))
    }

    /// The session a lease of ours is held by: from its handle, else (a lease read back with
    /// `current`) the cached one.
    fn session_of(&self, lease: &Lease) -> Option<String> {
        lease
            .handle
            .get::<SessionHandle>()
            .map(|h| h.session.clone())
            .or_else(|| self.cached_session(&lease.election, &lease.instance_id))
    }

    /// Our tenure as the store has it now: the entry, if `session` holds the key and the entry is
    /// still the tenure `lease` names (same instance, same `CreateIndex`).
    async fn our_entry(&self, lease: &Lease, session: &str) -> Result<Option<KvEntry>> {
        let Some((entry, value)) = self.read_one(&self.key(&lease.election)).await? else { return Ok(None) };
        let held = api::decoded_entry_to_lease(&lease.election, &entry, value.as_deref(), false).ok().flatten();
        let same = entry.session.as_deref() == Some(session)
            && held.is_some_and(|h| h.instance_id == lease.instance_id && h.token == lease.token);
        Ok(same.then_some(entry))
    }
}

/// An rs-consul error, naming the agent's address and the OS cause in the message.
fn map_rs_consul(e: rs_consul::ConsulError, address: &str) -> Error {
    use rs_consul::ConsulError as E;
    let cause = leader_core::cause_of(&e);
    match e {
        E::ResponseError(_) | E::TimeoutExceeded(_) => {
            Error::unavailable(format!("Consul at {address} did not answer: {cause}")).with_source(e)
        }
        other => Error::backend(format!("Consul KV read at {address} failed: {cause}")).with_source(other),
    }
}

fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(Error::invalid_argument(format!(
            "Consul session TTL (the lease) is {}; Consul accepts 10s to 86400s, so lease_duration must be at least 10s",
            humantime::format_duration(ttl)
        )));
    }
    Ok(())
}

#[async_trait]
impl LeaseStore for ConsulStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        validate_participant_id(&req.participant_id)?;
        check_ttl(req.ttl)?;
        let key = self.key(&req.election);
        let value = LeaseValue {
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            metadata: req.metadata.clone(),
        }
        .encode()?;
        for _ in 0..ACQUIRE_ROUNDS {
            // Its TTL counts from this acquire (created or renewed just now): the local deadline
            // of a tenure won here counts from the acquire's send, earlier still.
            let session = self.fresh_session_for(req).await?;
            let outcome = self.txn(&api::txn_acquire(&key, &value, &session)).await?;
            if let TxnOutcome::Committed(_) = outcome {
                return Ok(Acquire::Acquired(self.committed_lease(&req.election, &outcome)?));
            }
            if !outcome.failed_at(0) {
                // The key was free but the lock failed: our session is gone (expired while we
                // followed), or lock-delay holds the key after an invalidation.
                if self.renew_session(&session).await? {
                    return Ok(Acquire::Held(None)); // lock-delay: nobody may take it yet
                }
                self.forget_session(&req.election, &req.instance_id, &session);
                continue;
            }
            // The key exists: whose is it?
            let Some((entry, decoded)) = self.read_one(&key).await? else { continue }; // deleted meanwhile
            if entry.session.is_none() {
                // Left unlocked by someone else's write: replace it (new CreateIndex).
                let outcome = self.txn(&api::txn_replace_unlocked(&key, entry.modify_index, &value, &session)).await?;
                if let TxnOutcome::Committed(_) = outcome {
                    return Ok(Acquire::Acquired(self.committed_lease(&req.election, &outcome)?));
                }
                continue;
            }
            let holder = api::decoded_entry_to_lease(&req.election, &entry, decoded.as_deref(), false);
            let ours = holder.as_ref().is_ok_and(|h| h.as_ref().is_some_and(|h| h.instance_id == req.instance_id));
            let Some(holding) = entry.session.clone().filter(|_| ours) else {
                // Another's (a value we cannot read is still someone's lock).
                return Ok(Acquire::Held(holder.ok().flatten()));
            };
            // Already ours (the instance id is unique to one Election object): a fresh TTL
            // (session renew, unless it is the session just renewed or made above) and the new
            // metadata, same token. The session holding it is ours, even if it is not the one
            // cached.
            let fresh = holding == session;
            let session = holding;
            self.adopt_session(&req.election, &req.instance_id, &session);
            if !fresh && !self.renew_session(&session).await? {
                self.forget_session(&req.election, &req.instance_id, &session);
                continue;
            }
            let outcome = self.txn(&api::txn_update_value(&key, &session, entry.modify_index, &value)).await?;
            if let TxnOutcome::Committed(_) = outcome {
                return Ok(Acquire::Acquired(self.committed_lease(&req.election, &outcome)?));
            }
        }
        Err(Error::backend(format!("Consul key {key:?} kept changing during the acquire; try again")))
    }

    async fn renew(&self, lease: &Lease, _ttl: Duration) -> Result<Option<Lease>> {
        // The session's TTL was fixed at creation (= lease_duration); renew restarts it.
        let Some(session) = self.session_of(lease) else { return Ok(None) };
        if !self.renew_session(&session).await? {
            // Invalidated by Consul (expired, destroyed): a loss.
            self.forget_session(&lease.election, &lease.instance_id, &session);
            return Ok(None);
        }
        let outcome = self.txn(&api::txn_check(&self.key(&lease.election), &session)).await?;
        if !matches!(outcome, TxnOutcome::Committed(_)) {
            return Ok(None);
        }
        let now = self.committed_lease(&lease.election, &outcome)?;
        Ok(now.same_tenure(lease).then_some(now))
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let Some(session) = self.session_of(lease) else { return Ok(false) };
        let key = self.key(&lease.election);
        let current = self.read_one(&key).await?;
        let (entry, value) = match &current {
            Some((entry, value)) => (Some(entry), value.as_deref()),
            None => (None, None),
        };
        let held_by_session = entry.is_some_and(|e| e.session.as_deref() == Some(session.as_str()));
        let this_tenure = entry.is_some_and(|e| {
            api::decoded_entry_to_lease(&lease.election, e, value, false)
                .ok()
                .flatten()
                .is_some_and(|h| h.same_tenure(lease))
        });
        let released = match entry {
            Some(e) if held_by_session && this_tenure => {
                matches!(self.txn(&api::txn_release(&key, &session, e.modify_index)).await?, TxnOutcome::Committed(_))
            }
            // The session holds a later tenure of this instance: a late release of an old lease
            // changes nothing.
            Some(_) if held_by_session => return Ok(false),
            _ => false,
        };
        // The session was this instance's for this election and holds nothing now: destroy it,
        // so nothing of it outlives the release. The next acquire makes a new one.
        self.destroy_session(&session).await?;
        self.forget_session(&lease.election, &lease.instance_id, &session);
        Ok(released)
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        leader_core::validate_metadata(metadata)?;
        let Some(session) = self.session_of(lease) else { return Ok(None) };
        let Some(entry) = self.our_entry(lease, &session).await? else { return Ok(None) };
        let value = LeaseValue {
            participant_id: lease.participant_id.clone(),
            instance_id: lease.instance_id.clone(),
            metadata: metadata.clone(),
        }
        .encode()?;
        let key = self.key(&lease.election);
        let outcome = self.txn(&api::txn_update_value(&key, &session, entry.modify_index, &value)).await?;
        match outcome {
            TxnOutcome::Committed(_) => Ok(Some(self.committed_lease(&lease.election, &outcome)?)),
            TxnOutcome::RolledBack(_) => Ok(None),
        }
    }

    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        // No queue to leave, but the session goes: destroying it releases at once whatever it
        // still holds (Behavior: delete).
        if let Some(session) = self.cached_session(election, instance_id) {
            self.destroy_session(&session).await?;
            self.forget_session(election, instance_id, &session);
        }
        Ok(())
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        match self.read_one(&self.key(election)).await? {
            Some((entry, value)) => api::decoded_entry_to_lease(election, &entry, value.as_deref(), false),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let base = &self.inner.config.prefix;
        let mut out = Vec::new();
        for (entry, value) in self.read(&self.key(prefix), true).await? {
            let Some(election) = entry.key.strip_prefix(base.as_str()) else { continue };
            if validate_election_name(election).is_err() {
                continue; // a nested or foreign key under our prefix
            }
            match api::decoded_entry_to_lease(election, &entry, value.as_deref(), false) {
                Ok(Some(lease)) => out.push(lease),
                Ok(None) => {}
                Err(e) => tracing::debug!(key = %entry.key, error = %e, "skipping a key that is not a lease"),
            }
        }
        out.sort_by(|a, b| a.election.cmp(&b.election));
        Ok(out)
    }

    fn watch(&self, election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        Some(watch_key(self.inner.http.clone(), self.key(election)))
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        check_options(options)
    }
}

/// What this store can do (see the README).
pub const CAPABILITIES: Capabilities = Capabilities {
    push_notifications: true,
    // An expired session deletes its key (Behavior: delete), which wakes the blocking queries.
    pushes_expiry: true,
    server_side_expiry: true,
    // CreateIndex is a Raft index: it only grows, across restarts of a persisted cluster.
    durable_tokens: true,
    cross_host: true,
    survives_store_failover: true,
    lists_elections: true,
    // Consul may reap an expired session up to 2x its TTL late.
    reap_multiplier: 2,
};

/// Refuses leases Consul cannot hold as a session TTL (10 s - 86400 s).
pub(crate) fn check_options(options: &ElectionOptions) -> Result<()> {
    check_ttl(options.lease_duration)
}

/// Followers' push channel: blocking queries on the election's key. The first read takes the
/// current `X-Consul-Index`; each later one waits (`?index=N&wait=...`) until the key changes
/// (created, locked, rewritten, deleted by release or by session expiry), then yields once. Any
/// error ends the stream (the driver polls and watches again). Dropping the stream drops the
/// request in flight and its connection.
fn watch_key(http: Http, key: String) -> BoxStream<'static, ()> {
    stream::unfold((http, key, None::<u64>), |(http, key, mut index)| async move {
        loop {
            let (wait, timeout) = http.blocking_timeout();
            let query = match index {
                Some(i) => vec![("index", i.to_string()), ("wait", api::go_duration(wait))],
                None => Vec::new(),
            };
            let timeout = if index.is_some() { timeout } else { http.timeout() };
            let resp = match http.send(Method::GET, http.url(&format!("kv/{key}"), &query), Vec::new(), timeout).await {
                Ok(resp) if resp.status == 200 || resp.status == 404 => resp,
                Ok(resp) => {
                    tracing::debug!(status = resp.status, "Consul blocking query failed; followers poll");
                    return None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Consul blocking query failed; followers poll");
                    return None;
                }
            };
            // Consul's rules: an index below 1 is treated as 1; an index that goes backwards
            // (snapshot restore, leader change) means "start over", and may hide a change.
            let new = resp.index?.max(1);
            match index {
                None => index = Some(new),
                Some(old) if new == old => {} // the wait ran out without a change
                Some(_) => return Some(((), (http, key, Some(new)))),
            }
        }
    })
    .boxed()
}

/// `leader-bench`'s floor: the lock transaction alone, with one session made on first use.
pub(crate) struct Floor {
    pub(crate) store: ConsulStore,
    pub(crate) session: tokio::sync::OnceCell<String>,
}

#[async_trait]
impl leader_core::RawFloor for Floor {
    fn describe(&self) -> String {
        "one PUT /v1/txn (lock with a session + get)".to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        let req = AcquireRequest {
            election: election.to_owned(),
            participant_id: "leader-bench".to_owned(),
            instance_id: instance_id.to_owned(),
            ttl: Duration::from_secs(15),
            metadata: Metadata::new(),
        };
        let session =
            self.session.get_or_try_init(|| async { Ok::<_, Error>(self.store.session_for(&req).await?.0) }).await?;
        let value =
            LeaseValue { participant_id: req.participant_id, instance_id: req.instance_id, metadata: Metadata::new() }
                .encode()?;
        self.store.txn(&api::txn_floor(&self.store.key(election), &value, session)).await.map(drop)
    }
}
