//! The election recipe on ZooKeeper: one ephemeral sequential node per candidate under
//! `<root>/<election>`, the lowest leads.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use leader_core::{
    validate_election_name, validate_metadata, validate_participant_id, validate_prefix, Acquire, AcquireRequest,
    Error, LeaderInfo, Lease, Metadata, Renewal, Result,
};
use zookeeper_client::{self as zk, CreateMode, Stat};

use crate::guard::NodeRef;
use crate::nodes::{self, Candidate, NodeData, NodeHandle};
use crate::session::{zk_error, Inner, Session};

/// Rounds of list-and-look before giving up when the queue keeps changing under us.
const ROUNDS: usize = 8;

/// The most path bytes one multi-read or multi-op of a batch carries: a quarter of the server's
/// default request limit (`jute.maxbuffer`, 1 MiB), which leaves room for the node data a
/// response carries and for servers configured lower.
const MULTI_READ_BYTES: usize = 256 * 1024;

/// Bytes a multi-op adds per operation besides its path (its header, the path's length, the
/// version or watch flag).
const MULTI_OP_OVERHEAD: usize = 24;

/// A node as read: its data and stat.
type Node = (Vec<u8>, Stat);

/// Whether the node read for `lease` (`data`, `stat`) is still its own: of our session `session_id`,
/// with the lease's token and instance.
fn is_ours(lease: &Lease, session_id: i64, data: &[u8], stat: &Stat) -> bool {
    let data_instance = serde_json::from_slice::<NodeData>(data).ok().map(|d| d.instance_id);
    stat.ephemeral_owner == session_id
        && nodes::token_of(stat) == lease.token
        && data_instance.as_deref() == Some(lease.instance_id.as_str())
}

/// Every lease of a batch that needed the session gets its error (`Error` is not `Clone`: each
/// gets a copy of its kind and words); the others are not ours.
fn per_lease_error<T: Default>(paths: &[Option<String>], e: &Error) -> Vec<Result<T>> {
    let message = match std::error::Error::source(e) {
        Some(source) => format!("{}: {source}", e.message()),
        None => e.message().to_owned(),
    };
    paths
        .iter()
        .map(|p| if p.is_some() { Err(Error::new(e.kind(), message.clone())) } else { Ok(T::default()) })
        .collect()
}

/// `items` in runs whose paths add up to at most [`MULTI_READ_BYTES`] each.
fn chunk_by_bytes<T>(items: &[T], path_len: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        bytes += path_len(item) + MULTI_OP_OVERHEAD;
        if bytes >= MULTI_READ_BYTES {
            chunks.push(&items[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

impl Inner {
    /// The candidates of an election, lowest first; `None` if the election node does not exist.
    pub(crate) async fn candidates(&self, s: &Session, epath: &str) -> Result<Option<Vec<Candidate>>> {
        match s.client.list_children(epath).await {
            Ok(children) => Ok(Some(nodes::candidates(children))),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(zk_error("list", epath)(e)),
        }
    }

    async fn get(&self, s: &Session, path: &str) -> Result<Option<(Vec<u8>, Stat)>> {
        match s.client.get_data(path).await {
            Ok(found) => Ok(Some(found)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(zk_error("get", path)(e)),
        }
    }

    /// Deletes a node, `false` if it was not there (or changed since `version`).
    async fn delete(&self, s: &Session, path: &str, version: Option<i32>) -> Result<bool> {
        match s.client.delete(path, version).await {
            Ok(()) => Ok(true),
            Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(false),
            Err(e) => Err(zk_error("delete", path)(e)),
        }
    }

    /// Creates this instance's candidate node, and the election node first if needed: its path
    /// and stat.
    async fn create_candidate(
        &self,
        s: &Session,
        epath: &str,
        instance_id: &str,
        data: &[u8],
    ) -> Result<(String, Stat)> {
        let prefix = nodes::node_prefix(epath, instance_id);
        let opts = CreateMode::EphemeralSequential.with_acls(self.acls());
        for _ in 0..3 {
            match s.client.create(&prefix, data, &opts).await {
                Ok((stat, seq)) => {
                    self.created.send_modify(|n| *n += 1);
                    return Ok((format!("{prefix}{seq}"), stat));
                }
                Err(zk::Error::NoNode) => self.ensure_election(s, epath).await?,
                Err(e) => return Err(zk_error("create candidate under", epath)(e)),
            }
        }
        Err(Error::backend(format!("could not create a candidate under {epath}: it kept disappearing")))
    }

    pub(crate) async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        validate_participant_id(&req.participant_id)?;
        nodes::validate_instance_id(&req.instance_id)?;
        validate_metadata(&req.metadata)?;
        let s = self.session().await?;
        let epath = self.election_path(&req.election);
        let wanted = NodeData {
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            metadata: req.metadata.clone(),
        };
        // The node this call created, with its stat: ours, with `wanted` as its data, and proven
        // alive at the ensemble leader by the create itself (a write goes through the leader).
        let mut created: Option<(String, Stat)> = None;
        for _ in 0..ROUNDS {
            let candidates = self.candidates(&s, &epath).await?.unwrap_or_default();
            // Find our node among the children (GUID protection: a create whose reply was lost is
            // found here, not repeated). Only a node of this very session is ours: a node with our
            // instance id from an earlier session of this store is stale (that session ended, or
            // after a server restart, may linger until the server expires it): delete it now. A
            // node of any other session is not ours, whatever its name says.
            //
            // The listing comes from the server we are connected to, which may lag the ensemble: a
            // node of ours that the ensemble leader already deleted (our session expired while that
            // server was cut off from it) would still be listed. So before answering `Acquired`,
            // our node is read through the ensemble leader (`synced`), unless this call created
            // it. The node heading the listing is read that way at once (one round trip either way).
            let mut own: Option<(Candidate, Vec<u8>, Stat, bool)> = None;
            let mut gone = HashSet::new();
            for c in candidates.iter().filter(|c| c.instance_id == req.instance_id) {
                let path = format!("{epath}/{}", c.name);
                if self.guards.expired(&path) {
                    // The node guard gave this node up (nobody stood behind it); it is being deleted.
                    gone.insert(c.name.clone());
                    continue;
                }
                let (found, synced) = match &created {
                    Some((p, stat)) if *p == path => (Some((wanted.encode(), *stat)), true),
                    _ if candidates.first().is_some_and(|first| first.name == c.name) => {
                        (self.synced_get(&s, &path).await?, true)
                    }
                    _ => (self.get(&s, &path).await?, false),
                };
                match found {
                    Some((data, stat)) if stat.ephemeral_owner == s.id => {
                        if own.is_none() {
                            own = Some((c.clone(), data, stat, synced));
                        } else {
                            // A second node of ours (cannot happen while calls are serialised
                            // per instance): keep the older one.
                            self.delete(&s, &path, Some(stat.version)).await?;
                            gone.insert(c.name.clone());
                        }
                    }
                    Some((_, stat)) if self.is_past_session(stat.ephemeral_owner) => {
                        self.delete(&s, &path, Some(stat.version)).await?;
                        gone.insert(c.name.clone());
                    }
                    Some(_) => {}
                    None => {
                        gone.insert(c.name.clone());
                    }
                }
            }
            let Some((own, data, stat, synced)) = own else {
                if created.is_some() {
                    // Our new node vanished before we saw it (election path deleted from outside):
                    // start over with a new one.
                    tracing::debug!(election = %req.election, "own candidate node vanished; creating another");
                }
                created = Some(self.create_candidate(&s, &epath, &req.instance_id, &wanted.encode()).await?);
                continue;
            };
            let Some(lowest) = candidates.iter().find(|c| !gone.contains(&c.name)) else { continue };
            let own_path = format!("{epath}/{}", own.name);
            let node =
                NodeRef { path: &own_path, session_id: s.id, election: &req.election, instance: &req.instance_id };
            if lowest.name == own.name {
                // Ours and created by this very session (the Curator double-leader bug, CURATOR-696,
                // was granting leadership on the lowest node of an earlier session), and seen
                // through the ensemble leader.
                let (data, stat) = if synced {
                    (data, stat)
                } else {
                    match self.synced_get(&s, &own_path).await? {
                        Some((data, stat)) if stat.ephemeral_owner == s.id => (data, stat),
                        _ => continue,
                    }
                };
                let Some((data, stat)) = self.publish(&s, &own_path, &wanted, data, stat).await? else { continue };
                if !self.touch_leader(&node, req.ttl) {
                    continue;
                }
                return Ok(Acquire::Acquired(nodes::lease_of(
                    &req.election,
                    &own_path,
                    &own.name,
                    &data,
                    &stat,
                    Some(s.id),
                )));
            }
            // Queued: the guard deletes the node if nobody stands behind it any more.
            if !self.touch_queued(&node, req.ttl) {
                continue;
            }
            let lpath = format!("{epath}/{}", lowest.name);
            match self.get(&s, &lpath).await? {
                Some((data, stat)) => {
                    return Ok(Acquire::Held(Some(nodes::lease_of(
                        &req.election,
                        &lpath,
                        &lowest.name,
                        &data,
                        &stat,
                        None,
                    ))))
                }
                None => continue, // the leader just left: look again
            }
        }
        Err(Error::backend(format!(
            "the candidates of election {:?} changed on every one of {ROUNDS} reads; try again",
            req.election
        )))
    }

    /// Brings our node's data up to date with the request (participant id or metadata changed);
    /// `None` if the node is gone.
    async fn publish(
        &self,
        s: &Session,
        path: &str,
        wanted: &NodeData,
        data: Vec<u8>,
        stat: Stat,
    ) -> Result<Option<(Vec<u8>, Stat)>> {
        if serde_json::from_slice::<NodeData>(&data).ok().as_ref() == Some(wanted) {
            return Ok(Some((data, stat)));
        }
        let bytes = wanted.encode();
        match s.client.set_data(path, &bytes, Some(stat.version)).await {
            Ok(stat) => Ok(Some((bytes, stat))),
            Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(None),
            Err(e) => Err(zk_error("set", path)(e)),
        }
    }

    /// Reads `path` as the ensemble leader has it: `sync` (which the connected server passes to
    /// the ensemble leader and answers only once it has applied everything the leader had
    /// committed by then), then `getData`, both sent at once. The server answers a session's
    /// requests in order, so the read waits for the sync: one round trip to the ensemble leader.
    ///
    /// A plain read is answered from the connected server's own copy. A server cut off from the
    /// ensemble leader keeps answering reads (and pings) until it notices, up to
    /// `syncLimit × tickTime` later, while the leader may expire the session meanwhile and delete
    /// its nodes; the sync cannot complete without the leader, so a cut-off server fails it.
    pub(crate) async fn synced_get(&self, s: &Session, path: &str) -> Result<Option<(Vec<u8>, Stat)>> {
        let sync = s.client.sync(path);
        let get = s.client.get_data(path);
        sync.await.map_err(zk_error("sync", path))?;
        match get.await {
            Ok(found) => Ok(Some(found)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(zk_error("get", path)(e)),
        }
    }

    /// Our node of `lease`, if it is still there, in our session, with the lease's token: its path
    /// and current data and stat. One round trip: to the connected server, or with `synced` to
    /// the ensemble leader (see [`Inner::synced_get`]).
    async fn own_node(&self, lease: &Lease, synced: bool) -> Result<Option<(Arc<Session>, String, Vec<u8>, Stat)>> {
        let Some(handle) = lease.handle.get::<NodeHandle>() else { return Ok(None) };
        if self.guards.expired(&handle.path) {
            return Ok(None);
        }
        let s = self.session().await?;
        if s.id != handle.session_id {
            // The session that created the node has expired, and its nodes with it.
            return Ok(None);
        }
        let found = if synced { self.synced_get(&s, &handle.path).await? } else { self.get(&s, &handle.path).await? };
        let Some((data, stat)) = found else { return Ok(None) };
        if !is_ours(lease, s.id, &data, &stat) {
            return Ok(None);
        }
        Ok(Some((s, handle.path.clone(), data, stat)))
    }

    /// The node path of each lease of a batch that may still be ours, as far as this process can
    /// tell without asking the server (what [`Inner::own_node`] checks before its read); `None`
    /// for the others, which are not ours. The session, unless no lease needs it: an error if
    /// none can be had (every lease with a path then answers it, as its single call would).
    async fn own_paths<'a>(
        &self,
        leases: impl Iterator<Item = &'a Lease>,
    ) -> (Vec<Option<String>>, Option<Result<Arc<Session>>>) {
        let paths: Vec<Option<(String, i64)>> = leases
            .map(|lease| {
                let handle = lease.handle.get::<NodeHandle>()?;
                (!self.guards.expired(&handle.path)).then(|| (handle.path.clone(), handle.session_id))
            })
            .collect();
        if paths.iter().all(Option::is_none) {
            return (vec![None; paths.len()], None);
        }
        let s = match self.session().await {
            Ok(s) => s,
            Err(e) => return (paths.into_iter().map(|p| p.map(|(path, _)| path)).collect(), Some(Err(e))),
        };
        // A node of an earlier session has expired with it.
        let paths = paths.into_iter().map(|p| p.filter(|(_, id)| *id == s.id).map(|(path, _)| path)).collect();
        (paths, Some(Ok(s)))
    }

    /// Reads the nodes at `paths` (`None`: skipped) with multi-reads sent at once, after a `sync`
    /// when `synced` (see [`Inner::synced_get`]): one round trip for the whole batch, as one
    /// `getData` (`synced_get`) is for one lease. Each node gets its own answer, as
    /// [`Inner::get`] would give it: `Ok(None)` when it does not exist.
    async fn multi_get(
        &self,
        s: &Session,
        paths: &[Option<String>],
        synced: bool,
    ) -> Vec<Option<Result<Option<Node>>>> {
        let mut answers: Vec<Option<Result<Option<Node>>>> = paths.iter().map(|_| None).collect();
        let wanted: Vec<(usize, &str)> =
            paths.iter().enumerate().filter_map(|(i, p)| p.as_deref().map(|p| (i, p))).collect();
        if wanted.is_empty() {
            return answers;
        }
        // Sent before the reads: the server answers a session's requests in order. The sync is
        // of the whole server, whatever its path; the root is one every lease of ours is under.
        let sync = synced.then(|| s.client.sync(&self.root));
        // Each multi-read request stays well under the server's request limit (`jute.maxbuffer`);
        // a batch of thousands of leases becomes a few requests, all sent before any answer is
        // awaited.
        let mut chunks = Vec::new();
        for chunk in chunk_by_bytes(&wanted, |(_, path)| path.len()) {
            let mut reader = s.client.new_multi_reader();
            let mut indices = Vec::with_capacity(chunk.len());
            for &(i, path) in chunk {
                match reader.add_get_data(path) {
                    Ok(()) => indices.push(i),
                    // An invalid path (not from a handle of ours): the single read fails too.
                    Err(e) => answers[i] = Some(Err(zk_error("get", path)(e))),
                }
            }
            chunks.push((indices, reader.commit()));
        }
        if let Some(sync) = sync {
            if let Err(e) = sync.await {
                for (indices, _) in &chunks {
                    for &i in indices {
                        answers[i] = Some(Err(zk_error("sync", &self.root)(e.clone())));
                    }
                }
                return answers;
            }
        }
        for (indices, read) in chunks {
            match read.await {
                Ok(results) if results.len() == indices.len() => {
                    for (i, result) in indices.into_iter().zip(results) {
                        let path = paths[i].as_deref().unwrap_or_default();
                        answers[i] = Some(match result {
                            zk::MultiReadResult::Data { data, stat } => Ok(Some((data, stat))),
                            zk::MultiReadResult::Error { err: zk::Error::NoNode } => Ok(None),
                            zk::MultiReadResult::Error { err } => Err(zk_error("get", path)(err)),
                            other => Err(Error::backend(format!(
                                "ZooKeeper multi-read answered getData of {path} with {other:?}"
                            ))),
                        });
                    }
                }
                Ok(results) => {
                    for i in indices {
                        answers[i] = Some(Err(Error::backend(format!(
                            "ZooKeeper multi-read answered {} of its reads",
                            results.len()
                        ))));
                    }
                }
                Err(e) => {
                    for i in indices {
                        answers[i] =
                            Some(Err(zk_error("multi-read get", paths[i].as_deref().unwrap_or_default())(e.clone())));
                    }
                }
            }
        }
        answers
    }

    /// [`LeaseStore::renew_batch`](leader_core::LeaseStore::renew_batch): one `sync` and one
    /// multi-read (a few for very large batches, sent together) for every lease that may still be
    /// ours, then the same checks and guard touch as [`Inner::renew`], per lease.
    pub(crate) async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let (paths, session) = self.own_paths(batch.iter().map(|r| &r.lease)).await;
        let s = match session {
            None => return batch.iter().map(|_| Ok(None)).collect(),
            Some(Ok(s)) => s,
            Some(Err(e)) => return per_lease_error(&paths, &e),
        };
        let reads = self.multi_get(&s, &paths, true).await;
        batch
            .iter()
            .zip(reads)
            .zip(&paths)
            .map(|((r, read), path)| {
                let (Some(read), Some(path)) = (read, path) else { return Ok(None) };
                let Some((data, stat)) = read? else { return Ok(None) };
                let lease = &r.lease;
                if !is_ours(lease, s.id, &data, &stat) {
                    return Ok(None);
                }
                let node = NodeRef { path, session_id: s.id, election: &lease.election, instance: &lease.instance_id };
                if !self.touch_leader(&node, r.ttl) {
                    return Ok(None);
                }
                let name = path.rsplit('/').next().unwrap_or_default();
                Ok(Some(nodes::lease_of(&lease.election, path, name, &data, &stat, Some(s.id))))
            })
            .collect()
    }

    pub(crate) async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        // The synced read is the round trip the local deadline rests on: the ensemble leader had
        // not expired the session when it passed the sync, which was after the renew was sent.
        // See "Ensembles" in the crate docs for the bounds this needs.
        let Some((s, path, data, stat)) = self.own_node(lease, true).await? else { return Ok(None) };
        let node = NodeRef { path: &path, session_id: s.id, election: &lease.election, instance: &lease.instance_id };
        if !self.touch_leader(&node, ttl) {
            return Ok(None);
        }
        let name = path.rsplit('/').next().unwrap_or_default();
        Ok(Some(nodes::lease_of(&lease.election, &path, name, &data, &stat, Some(s.id))))
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool> {
        let Some((s, path, _, stat)) = self.own_node(lease, false).await? else { return Ok(false) };
        let deleted = self.delete(&s, &path, Some(stat.version)).await?;
        self.guards.forget(&path);
        Ok(deleted)
    }

    /// [`LeaseStore::release_batch`](leader_core::LeaseStore::release_batch): one multi-read
    /// checks every lease that may still be ours (as [`Inner::release`] reads its node), then one
    /// multi-op deletes all the nodes found ours, each at the version read. A multi-op is
    /// all-or-nothing: if one of its deletes fails (a node deleted or changed since the read, by
    /// a race), nothing was deleted, and the nodes are then deleted one by one, concurrently, so
    /// that each lease gets the answer its own release would.
    pub(crate) async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let (paths, session) = self.own_paths(leases.iter()).await;
        let s = match session {
            None => return leases.iter().map(|_| Ok(false)).collect(),
            Some(Ok(s)) => s,
            Some(Err(e)) => return per_lease_error(&paths, &e),
        };
        let reads = self.multi_get(&s, &paths, false).await;
        let mut answers: Vec<Option<Result<bool>>> = leases.iter().map(|_| None).collect();
        // The nodes to delete: (index, path, version).
        let mut doomed: Vec<(usize, &str, i32)> = Vec::new();
        for (i, ((lease, read), path)) in leases.iter().zip(reads).zip(&paths).enumerate() {
            let (Some(read), Some(path)) = (read, path) else {
                answers[i] = Some(Ok(false));
                continue;
            };
            answers[i] = Some(match read {
                Err(e) => Err(e),
                Ok(Some((data, stat))) if is_ours(lease, s.id, &data, &stat) => {
                    doomed.push((i, path, stat.version));
                    continue;
                }
                Ok(_) => Ok(false),
            });
        }
        for chunk in chunk_by_bytes(&doomed, |(_, path, _)| path.len()) {
            let mut writer = s.client.new_multi_writer();
            let mut added = Vec::with_capacity(chunk.len());
            for &(i, path, version) in chunk {
                match writer.add_delete(path, Some(version)) {
                    Ok(()) => added.push((i, path, version)),
                    Err(e) => answers[i] = Some(Err(zk_error("delete", path)(e))),
                }
            }
            match writer.commit().await {
                Ok(_) => {
                    for (i, path, _) in added {
                        self.guards.forget(path);
                        answers[i] = Some(Ok(true));
                    }
                }
                Err(zk::MultiWriteError::OperationFailed { .. }) => {
                    // Nothing of the transaction was applied: one by one, each with its own answer.
                    let singles = added.iter().map(|&(_, path, version)| self.delete(&s, path, Some(version)));
                    for ((i, path, _), deleted) in added.iter().zip(futures::future::join_all(singles).await) {
                        if deleted.is_ok() {
                            self.guards.forget(path);
                        }
                        answers[*i] = Some(deleted);
                    }
                }
                Err(zk::MultiWriteError::RequestFailed { source }) => {
                    // Whether it was applied is unknown, as after a single delete's lost reply.
                    for (i, path, _) in added {
                        answers[i] = Some(Err(zk_error("delete", path)(source.clone())));
                    }
                }
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("release_batch: no answer")))).collect()
    }

    pub(crate) async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        validate_metadata(metadata)?;
        for _ in 0..3 {
            let Some((s, path, data, stat)) = self.own_node(lease, false).await? else { return Ok(None) };
            let mut node: NodeData = serde_json::from_slice(&data)
                .map_err(|e| Error::backend(format!("node {path} does not hold candidate data")).with_source(e))?;
            node.metadata = metadata.clone();
            let bytes = node.encode();
            match s.client.set_data(&path, &bytes, Some(stat.version)).await {
                Ok(stat) => {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    return Ok(Some(nodes::lease_of(&lease.election, &path, name, &bytes, &stat, Some(s.id))));
                }
                Err(zk::Error::NoNode) => return Ok(None),
                Err(zk::Error::BadVersion) => continue,
                Err(e) => return Err(zk_error("set", &path)(e)),
            }
        }
        Err(Error::backend(format!("the node of election {:?} kept changing under update_metadata", lease.election)))
    }

    pub(crate) async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        nodes::validate_instance_id(instance_id)?;
        let s = self.session().await?;
        let epath = self.election_path(election);
        for c in self.candidates(&s, &epath).await?.unwrap_or_default() {
            if c.instance_id == instance_id {
                let path = format!("{epath}/{}", c.name);
                self.delete(&s, &path, None).await?;
                self.guards.forget(&path);
            }
        }
        Ok(())
    }

    pub(crate) async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let s = self.session().await?;
        self.current_in(&s, election).await
    }

    async fn current_in(&self, s: &Session, election: &str) -> Result<Option<LeaderInfo>> {
        let epath = self.election_path(election);
        for _ in 0..ROUNDS {
            let Some(lowest) = self.candidates(s, &epath).await?.and_then(|c| c.into_iter().next()) else {
                return Ok(None);
            };
            let path = format!("{epath}/{}", lowest.name);
            if let Some((data, stat)) = self.get(s, &path).await? {
                // Our own session's node carries a handle, so that a holder that lost track of its
                // lease (stop() after a lost reply) can still release it.
                let own = (stat.ephemeral_owner == s.id).then_some(s.id);
                return Ok(Some(nodes::lease_of(election, &path, &lowest.name, &data, &stat, own)));
            }
        }
        Err(Error::backend(format!("the leader of election {election:?} changed on every one of {ROUNDS} reads")))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let s = self.session().await?;
        let mut names: Vec<String> = match s.client.list_children(&self.root).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(zk_error("list", &self.root)(e)),
        };
        names.retain(|n| n.starts_with(prefix) && validate_election_name(n).is_ok());
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if let Some(holder) = self.current_in(&s, &name).await? {
                out.push(holder);
            }
        }
        Ok(out)
    }
}
