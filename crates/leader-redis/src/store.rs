//! [`RedisStore`]: the [`LeaseStore`] over one fred client (or pool) and one subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, ServerInterface};
use fred::prelude::Config;
use fred::types::{ClusterHash, CustomCommand};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use leader_core::{
    async_trait, validate_election_name, validate_instance_id, validate_participant_id, validate_prefix, Acquire,
    AcquireRequest, Capabilities, ElectionOptions, Error, LeaderInfo, Lease, LeaseStore, Metadata, Refusal, Renewal,
    Result,
};

use crate::builder::RedisStoreBuilder;
use crate::clock::ServerClock;
use crate::error::from_fred;
use crate::keys::Keys;
use crate::liveness::Liveness;
use crate::reply::{parse, parse_timed, Reply, WaitReason};
use crate::scripts::{scripts, LuaScript};
use crate::subscriber::Subscriber;

/// A Redis lease store. Cheap to clone (clones share the connections).
///
/// See the crate docs for the key layout, the guarantees and what a Redis restart or failover does.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) enum Conn {
    Client(Client),
    Pool(Pool),
}

impl Conn {
    /// The client for the next command (a pool hands them out in turn).
    pub(crate) fn client(&self) -> &Client {
        match self {
            Conn::Client(c) => c,
            Conn::Pool(p) => p.next(),
        }
    }
}

/// `WAIT replicas timeout` after acquire and renew.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitForReplicas {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

pub(crate) struct Inner {
    pub(crate) conn: Conn,
    /// Whether we made the client (and so close it when the store goes).
    pub(crate) owned: bool,
    pub(crate) keys: Keys,
    pub(crate) max_lease: Duration,
    /// How long after the server's start (or promotion) nobody is elected; `None`: the asking
    /// election's lease.
    pub(crate) quarantine: Option<Duration>,
    pub(crate) wait: Option<WaitForReplicas>,
    pub(crate) subscriber: Option<Subscriber>,
    /// The server's clock, for the deadlines of acquire and renew.
    pub(crate) clock: ServerClock,
    /// The shortest `operation_timeout` of the elections checked against this store (µs; 0: none).
    pub(crate) call_budget_us: AtomicU64,
    /// Reconnects a connection that stopped answering (stores that made their own client).
    pub(crate) liveness: Option<Liveness>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let (Conn::Client(client), Ok(runtime)) = (&self.conn, tokio::runtime::Handle::try_current()) {
            let client = client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.inner.keys.prefix())
            .field("max_lease", &self.inner.max_lease)
            .field("quarantine", &self.inner.quarantine)
            .field("wait_for_replicas", &self.inner.wait)
            .field("push", &self.inner.subscriber.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder that connects to `url`: `redis://`, `rediss://` (TLS), `redis-cluster://`,
    /// `rediss-cluster://`, `redis-sentinel://`, `rediss-sentinel://` in fred's URL forms, plus this
    /// crate's parameters (`key_prefix`, `max_lease`, `quarantine`, `wait_replicas`, `wait_timeout`).
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::from_url(url)
    }

    /// A builder over a fred `Config` (the store makes and owns its client).
    pub fn from_config(config: Config) -> RedisStoreBuilder {
        RedisStoreBuilder::from_config(config)
    }

    /// A builder over your fred client, which you have initialised (`init`) and keep managing
    /// (reconnect policy, closing). The store opens one subscriber connection of its own with the
    /// client's configuration.
    pub fn from_client(client: Client) -> RedisStoreBuilder {
        RedisStoreBuilder::from_client(client)
    }

    /// A builder over your fred pool (initialised by you); each call takes the pool's next client.
    pub fn from_pool(pool: Pool) -> RedisStoreBuilder {
        RedisStoreBuilder::from_pool(pool)
    }

    /// Connects to `url` with the default settings (see [`RedisStore::builder`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).build().await
    }

    /// A client of the store (the pool's next one), for your own commands, e.g. a fenced write in
    /// a script that checks the token in [`RedisStore::lease_key`].
    pub fn client(&self) -> &Client {
        self.inner.conn.client()
    }

    /// The subscriber client behind `watch`, if push notifications are on.
    pub fn subscriber_client(&self) -> Option<&fred::clients::SubscriberClient> {
        self.inner.subscriber.as_ref().map(Subscriber::client)
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The string key holding `election`'s lease while it is held: `instance \n token \n
    /// participant \n acquired_at_us \n metadata_json`, with the lease's expiry as its `PX`.
    ///
    /// A fenced write in your own script can compare the token there with the one the leader
    /// passes: `string.match(redis.call('GET', KEYS[1]) or '', '^[^\n]*\n(%d+)\n')`.
    pub fn lease_key(&self, election: &str) -> String {
        self.inner.keys.lease(election)
    }

    /// The pub/sub channel the scripts publish election names on.
    pub fn channel(&self) -> &str {
        self.inner.keys.channel()
    }

    /// How long after a server's start (or a replica's promotion) nobody is elected, if set with
    /// [`RedisStoreBuilder::quarantine`]; `None` (the default): the lease of the election asking.
    pub fn quarantine(&self) -> Option<Duration> {
        self.inner.quarantine
    }

    /// The acquire script alone on this store's client, for `leader-bench`'s floor column.
    pub fn raw_floor(&self) -> Arc<dyn leader_core::RawFloor> {
        Arc::new(crate::floor::RedisFloor { store: self.clone() })
    }

    /// The longest lease this store accepts.
    pub fn max_lease(&self) -> Duration {
        self.inner.max_lease
    }

    pub(crate) fn acquire_args(&self, req: &AcquireRequest) -> Result<(Vec<String>, Vec<String>)> {
        validate_election_name(&req.election)?;
        validate_participant_id(&req.participant_id)?;
        validate_instance_id(&req.instance_id)?;
        let ttl = self.ttl_ms(req.ttl)?;
        let keys = &self.inner.keys;
        let metadata = encode_metadata(&req.metadata)?;
        let wait = self.inner.quarantine.unwrap_or(req.ttl);
        Ok((
            vec![keys.lease(&req.election), keys.token(&req.election), keys.epoch(&req.election)],
            vec![
                req.instance_id.clone(),
                req.participant_id.clone(),
                ttl,
                metadata,
                wait.as_millis().to_string(),
                keys.channel().to_owned(),
                req.election.clone(),
                self.deadline(req.ttl).to_string(),
            ],
        ))
    }

    /// The server time after which an acquire or renew sent now must change nothing: the
    /// shortest `operation_timeout` of the elections on this store (by then their callers have
    /// given up), or a sixth of the lease (the default `operation_timeout`) if none was checked.
    fn deadline(&self, ttl: Duration) -> u64 {
        let budget = match self.inner.call_budget_us.load(Ordering::Relaxed) {
            0 => ttl / 6,
            us => Duration::from_micros(us),
        };
        self.inner.clock.deadline(budget)
    }

    /// Runs a script on `client`, watching that the connection answers (see `liveness`).
    async fn run<R: fred::prelude::FromValue>(
        &self,
        script: &LuaScript,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        let Some(liveness) = &self.inner.liveness else { return script.run(client, keys, args).await };
        liveness.sending(client, self.inner.subscriber.as_ref().map(Subscriber::client));
        let result = script.run(client, keys, args).await;
        // A result or an error reply: the server answered.
        if result.as_ref().map_or_else(|e| e.kind() == leader_core::ErrorKind::Backend, |_| true) {
            liveness.answered();
        }
        result
    }

    /// Parses a reply and feeds its server time to the clock.
    fn parse_observed(&self, election: &str, fields: Vec<String>) -> Result<Reply> {
        let parsed = parse_timed(election, fields)?;
        if let Some(us) = parsed.server_us {
            self.inner.clock.observe(us);
        }
        Ok(parsed.reply)
    }

    /// What the store answers while the acquire script elects nobody. The reason stays the same
    /// from one attempt to the next (the election logs it when it changes); how long is `retry_in`.
    fn refusal(&self, election: &str, left: Duration, why: WaitReason, ttl: Duration) -> Refusal {
        let wait = humantime::format_duration(self.inner.quarantine.unwrap_or(ttl));
        let reason = match why {
            WaitReason::Start => format!(
                "the Redis server started less than one lease ({wait}) ago and may have lost, in a restart, \
                 leases whose holders still lead: nobody is elected until one lease after its start"
            ),
            WaitReason::Promotion => format!(
                "the Redis server was promoted from replica (a failover) less than one lease ({wait}) ago and may \
                 lack leases the old primary granted: nobody is elected until one lease after it was first seen \
                 as primary"
            ),
            WaitReason::Gone => format!(
                "the lease key {} disappeared before the lease's end (evicted under a maxmemory-policy, or \
                 deleted by hand): nobody is elected until that lease would have ended",
                self.inner.keys.lease(election)
            ),
        };
        Refusal::new(reason).retry_in(left)
    }

    fn ttl_ms(&self, ttl: Duration) -> Result<String> {
        if ttl < Duration::from_millis(1) || ttl > self.inner.max_lease {
            return Err(Error::invalid_argument(format!(
                "lease ttl {} is outside this store's 1ms..{} (raise max_lease)",
                humantime::format_duration(ttl),
                humantime::format_duration(self.inner.max_lease)
            )));
        }
        Ok(ttl.as_millis().to_string())
    }

    /// `WAIT` on the connection the write went through, if configured.
    async fn wait_for_replicas(&self, client: &Client) -> Result<()> {
        let Some(wait) = self.inner.wait else { return Ok(()) };
        let timeout_ms = i64::try_from(wait.timeout.as_millis()).unwrap_or(i64::MAX);
        let acked: i64 = client.wait(i64::from(wait.replicas), timeout_ms).await.map_err(from_fred)?;
        if acked < i64::from(wait.replicas) {
            return Err(Error::unavailable(format!(
                "WAIT: {acked} of {} replicas acknowledged the lease within {}",
                wait.replicas,
                humantime::format_duration(wait.timeout)
            )));
        }
        Ok(())
    }

    async fn read(&self, election: &str) -> Result<Option<LeaderInfo>> {
        let fields: Vec<String> =
            self.run(&scripts().read, self.client(), vec![self.inner.keys.lease(election)], Vec::new()).await?;
        match self.parse_observed(election, fields)? {
            Reply::Theirs(lease) => Ok(Some(lease)),
            Reply::Nothing => Ok(None),
            other => Err(unexpected(election, &other)),
        }
    }

    async fn scan_elections(&self, prefix: &str) -> Result<Vec<String>> {
        let client = self.client();
        let pattern = self.inner.keys.scan_pattern(prefix);
        let keys: Vec<fred::types::Key> = if client.is_clustered() {
            client.scan_cluster_buffered(pattern, Some(200), None).try_collect().await
        } else {
            client.scan_buffered(pattern, Some(200), None).try_collect().await
        }
        .map_err(from_fred)?;
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|k| k.as_str())
            .filter_map(|k| self.inner.keys.election_of(k).map(str::to_owned))
            .filter(|name| name.starts_with(prefix))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The most leases one batch script handles: the script runs atomically, and other clients wait
/// while it runs (about 15 µs per lease here: 1 024 leases hold the server for some 15 ms).
const BATCH_CHUNK: usize = 1024;

impl RedisStore {
    /// One renew script call for `chunk` (standalone and Sentinel).
    async fn renew_chunk(&self, chunk: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let mut answers: Vec<Option<Result<Option<Lease>>>> = Vec::with_capacity(chunk.len());
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        let mut sent = Vec::new();
        let ttl = chunk.iter().map(|r| r.ttl).min().unwrap_or_default();
        args.push(self.deadline(ttl).to_string());
        for (i, r) in chunk.iter().enumerate() {
            match self.ttl_ms(r.ttl) {
                Ok(ttl_ms) => {
                    keys.push(self.inner.keys.lease(&r.lease.election));
                    keys.push(self.inner.keys.token(&r.lease.election));
                    args.push(owner(&r.lease));
                    args.push(ttl_ms);
                    sent.push(i);
                    answers.push(None);
                }
                // A lease the script cannot carry gets its own error; the others go on.
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !sent.is_empty() {
            let client = self.client();
            let replies: Result<Vec<Vec<String>>> = self.run(&scripts().renew_batch, client, keys, args).await;
            // A renewal of ours needs the replicas' acknowledgement, as a single renew does.
            let replicas = match &replies {
                Ok(r) if r.iter().any(|f| f.first().is_some_and(|t| t == "A")) => self.wait_for_replicas(client).await,
                _ => Ok(()),
            };
            match replies {
                Ok(replies) if replies.len() == 1 && replies[0].first().is_some_and(|t| t == "L") => {
                    for &i in &sent {
                        answers[i] = Some(Err(late("renew", &chunk[i].lease.election)));
                    }
                }
                Ok(replies) if replies.len() == sent.len() => {
                    for (&i, fields) in sent.iter().zip(replies) {
                        let election = &chunk[i].lease.election;
                        answers[i] = Some(match self.parse_observed(election, fields) {
                            Ok(Reply::Ours(Some(renewed))) => match &replicas {
                                Ok(()) => Ok(Some(renewed)),
                                Err(e) => Err(Error::new(e.kind(), e.to_string())),
                            },
                            Ok(Reply::Nothing) => Ok(None),
                            Ok(other) => Err(unexpected(election, &other)),
                            Err(e) => Err(e),
                        });
                    }
                }
                Ok(replies) => {
                    let e =
                        format!("the batch renew script answered {} replies for {} leases", replies.len(), sent.len());
                    for &i in &sent {
                        answers[i] = Some(Err(Error::backend(e.clone())));
                    }
                }
                Err(e) => {
                    for &i in &sent {
                        answers[i] = Some(Err(Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("renew_batch: no answer")))).collect()
    }

    /// One release script call for `chunk` (standalone and Sentinel).
    async fn release_chunk(&self, chunk: &[Lease]) -> Vec<Result<bool>> {
        let keys = &self.inner.keys;
        let mut k = Vec::with_capacity(chunk.len() * 2);
        let mut args = Vec::with_capacity(chunk.len() * 2 + 1);
        args.push(keys.channel().to_owned());
        for l in chunk {
            k.push(keys.lease(&l.election));
            k.push(keys.token(&l.election));
            args.push(owner(l));
            args.push(l.election.clone());
        }
        let replies: Result<Vec<String>> = self.run(&scripts().release_batch, self.client(), k, args).await;
        match replies {
            Ok(replies) if replies.len() == chunk.len() => replies
                .iter()
                .zip(chunk)
                .map(|(r, l)| match r.as_str() {
                    "A" => Ok(true),
                    "N" => Ok(false),
                    other => Err(Error::backend(format!(
                        "unexpected reply from the batch release script for {:?}: {other:?}",
                        l.election
                    ))),
                })
                .collect(),
            Ok(replies) => {
                let e =
                    format!("the batch release script answered {} replies for {} leases", replies.len(), chunk.len());
                chunk.iter().map(|_| Err(Error::backend(e.clone()))).collect()
            }
            Err(e) => chunk.iter().map(|_| Err(Error::new(e.kind(), e.to_string()))).collect(),
        }
    }

    /// Cluster: every lease's renew script in one pipeline, which fred splits by node.
    async fn renew_pipelined(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let client = self.client();
        let pipeline = client.pipeline();
        let mut answers: Vec<Option<Result<Option<Lease>>>> = Vec::with_capacity(batch.len());
        let mut sent = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let ttl_ms = match self.ttl_ms(r.ttl) {
                Ok(ttl_ms) => ttl_ms,
                Err(e) => {
                    answers.push(Some(Err(e)));
                    continue;
                }
            };
            // EVALSHA sha 2 lease record owner ttl deadline, routed by its first key (fred's
            // pipeline has no script methods). Buffered: nothing is sent until `try_all`.
            let args = vec![
                scripts().renew.sha().to_owned(),
                "2".to_owned(),
                self.inner.keys.lease(&r.lease.election),
                self.inner.keys.token(&r.lease.election),
                owner(&r.lease),
                ttl_ms,
                self.deadline(r.ttl).to_string(),
            ];
            let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false);
            let queued: std::result::Result<(), fred::error::Error> = pipeline.custom(evalsha, args).await;
            match queued {
                Ok(()) => {
                    sent.push(i);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(from_fred(e)))),
            }
        }
        if let Some(liveness) = &self.inner.liveness {
            liveness.sending(client, self.inner.subscriber.as_ref().map(Subscriber::client));
        }
        let replies = pipeline.try_all::<Vec<String>>().await;
        if replies.iter().any(Result::is_ok) {
            if let Some(liveness) = &self.inner.liveness {
                liveness.answered();
            }
        }
        for (&i, reply) in sent.iter().zip(replies) {
            let r = &batch[i];
            answers[i] = Some(match reply {
                // The script cache is empty on that node (a restart, a new primary): the single
                // renew loads it.
                Err(e) if e.details().starts_with("NOSCRIPT") => self.renew(&r.lease, r.ttl).await,
                Err(e) => Err(from_fred(e)),
                Ok(fields) => match self.parse_observed(&r.lease.election, fields) {
                    Ok(Reply::Ours(Some(renewed))) => Ok(Some(renewed)),
                    Ok(Reply::Nothing) => Ok(None),
                    Ok(Reply::Late) => Err(late("renew", &r.lease.election)),
                    Ok(other) => Err(unexpected(&r.lease.election, &other)),
                    Err(e) => Err(e),
                },
            });
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("renew_batch: no answer")))).collect()
    }
}

/// What the renew, release and metadata scripts compare the lease value's start with.
fn owner(lease: &Lease) -> String {
    format!("{}\n{}\n", lease.instance_id, lease.token.get())
}

fn encode_metadata(metadata: &Metadata) -> Result<String> {
    serde_json::to_string(metadata).map_err(|e| Error::invalid_argument(format!("metadata cannot be encoded: {e}")))
}

fn late(op: &str, election: &str) -> Error {
    Error::timeout(format!(
        "the {op} for {election:?} reached the Redis server after its deadline (the caller's operation_timeout) \
         and changed nothing"
    ))
}

fn unexpected(election: &str, reply: &Reply) -> Error {
    Error::backend(format!("unexpected reply from the lease script for {election:?}: {reply:?}"))
}

#[async_trait]
impl LeaseStore for RedisStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let (keys, args) = self.acquire_args(req)?;
        let client = self.client();
        let fields: Vec<String> = self.run(&scripts().acquire, client, keys, args).await?;
        match self.parse_observed(&req.election, fields)? {
            Reply::Ours(Some(lease)) => {
                self.wait_for_replicas(client).await?;
                Ok(Acquire::Acquired(lease))
            }
            Reply::Theirs(holder) => Ok(Acquire::Held(Some(holder))),
            Reply::Wait { left, why } => Ok(Acquire::Refused(self.refusal(&req.election, left, why, req.ttl))),
            Reply::Policy(policy) => Ok(Acquire::Refused(Refusal::new(format!(
                "the Redis server's maxmemory-policy is {policy}, which may evict any key, this election's lease \
                 and its record ({}) included; set maxmemory-policy to noeviction",
                self.inner.keys.token(&req.election)
            )))),
            Reply::Late => Err(late("acquire", &req.election)),
            other => Err(unexpected(&req.election, &other)),
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let ttl_ms = self.ttl_ms(ttl)?;
        let client = self.client();
        let keys = &self.inner.keys;
        let fields: Vec<String> = self
            .run(
                &scripts().renew,
                client,
                vec![keys.lease(&lease.election), keys.token(&lease.election)],
                vec![owner(lease), ttl_ms, self.deadline(ttl).to_string()],
            )
            .await?;
        match self.parse_observed(&lease.election, fields)? {
            Reply::Ours(Some(renewed)) => {
                self.wait_for_replicas(client).await?;
                Ok(Some(renewed))
            }
            Reply::Nothing => Ok(None),
            Reply::Late => Err(late("renew", &lease.election)),
            other => Err(unexpected(&lease.election, &other)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let keys = &self.inner.keys;
        let fields: Vec<String> = self
            .run(
                &scripts().release,
                self.client(),
                vec![keys.lease(&lease.election), keys.token(&lease.election)],
                vec![owner(lease), keys.channel().to_owned(), lease.election.clone()],
            )
            .await?;
        match parse(&lease.election, fields)? {
            Reply::Ours(None) => Ok(true),
            Reply::Nothing => Ok(false),
            other => Err(unexpected(&lease.election, &other)),
        }
    }

    /// Standalone and Sentinel: one script call per 1 024 leases (`BATCH_CHUNK`). Cluster: the leases'
    /// keys live on different nodes, so each gets its renew script, sent as one pipeline (one
    /// write per node).
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        if self.client().is_clustered() {
            if self.inner.wait.is_some() {
                // WAIT acknowledges the writes of one connection: one per renewal, as alone.
                return futures::future::join_all(batch.iter().map(|r| self.renew(&r.lease, r.ttl))).await;
            }
            return self.renew_pipelined(batch).await;
        }
        let chunks = batch.chunks(BATCH_CHUNK).map(|chunk| self.renew_chunk(chunk));
        futures::future::join_all(chunks).await.into_iter().flatten().collect()
    }

    /// Like [`renew_batch`](Self::renew_batch).
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        if self.client().is_clustered() {
            return futures::future::join_all(leases.iter().map(|l| self.release(l))).await;
        }
        let chunks = leases.chunks(BATCH_CHUNK).map(|chunk| self.release_chunk(chunk));
        futures::future::join_all(chunks).await.into_iter().flatten().collect()
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let keys = &self.inner.keys;
        let fields: Vec<String> = self
            .run(
                &scripts().update_metadata,
                self.client(),
                vec![keys.lease(&lease.election)],
                vec![owner(lease), encode_metadata(metadata)?, keys.channel().to_owned(), lease.election.clone()],
            )
            .await?;
        match parse(&lease.election, fields)? {
            Reply::Ours(Some(updated)) => Ok(Some(updated)),
            Reply::Nothing => Ok(None),
            other => Err(unexpected(&lease.election, &other)),
        }
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        self.read(election).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let names = self.scan_elections(prefix).await?;
        // A lease may expire between SCAN and the read: it is then left out.
        let reads = names.into_iter().map(|name| {
            let store = self.clone();
            async move { store.read(&name).await }
        });
        let leases: Vec<Option<LeaderInfo>> = futures::stream::iter(reads).buffered(16).try_collect().await?;
        Ok(leases.into_iter().flatten().collect())
    }

    fn watch(&self, election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.subscriber.as_ref()?.watch(election)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: self.inner.subscriber.is_some(),
            pushes_expiry: false,
            server_side_expiry: true,
            durable_tokens: false,
            cross_host: true,
            survives_store_failover: false,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        // Acquires and renews sent from now on carry a deadline no later than the shortest
        // operation_timeout of the elections on this store (see `deadline`).
        if options.lease_duration > self.inner.max_lease {
            return Err(Error::invalid_argument(format!(
                "lease_duration {} is longer than this Redis store's max_lease {}; raise max_lease",
                humantime::format_duration(options.lease_duration),
                humantime::format_duration(self.inner.max_lease)
            )));
        }
        if options.lease_duration < Duration::from_millis(10) {
            return Err(Error::invalid_argument(format!(
                "lease_duration {} is below 10ms; Redis expires keys with millisecond resolution",
                humantime::format_duration(options.lease_duration)
            )));
        }
        if let Some(wait) = self.inner.wait {
            if wait.timeout >= options.operation_timeout {
                return Err(Error::invalid_argument(format!(
                    "wait_for_replicas timeout {} must be less than operation_timeout {}, or every acquire would time out first",
                    humantime::format_duration(wait.timeout),
                    humantime::format_duration(options.operation_timeout)
                )));
            }
        }
        // Only options an election could run with (core validates before it asks the store).
        if options.validate().is_ok() {
            let us = u64::try_from(options.operation_timeout.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = self
                .inner
                .call_budget_us
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| (old == 0 || us < old).then_some(us));
        }
        Ok(())
    }
}
