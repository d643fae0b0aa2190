//! The election recipe on ZooKeeper: one ephemeral sequential node per candidate under
//! `<root>/<election>`, the lowest leads.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use leader_core::{
    validate_election_name, validate_metadata, validate_participant_id, validate_prefix, Acquire, AcquireRequest,
    Error, LeaderInfo, Lease, Metadata, Result,
};
use zookeeper_client::{self as zk, CreateMode, Stat};

use crate::guard::NodeRef;
use crate::nodes::{self, Candidate, NodeData, NodeHandle};
use crate::session::{zk_error, Inner, Session};

/// Rounds of list-and-look before giving up when the queue keeps changing under us.
const ROUNDS: usize = 8;

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
        let data_instance = serde_json::from_slice::<NodeData>(&data).ok().map(|d| d.instance_id);
        if stat.ephemeral_owner != s.id
            || nodes::token_of(&stat) != lease.token
            || data_instance.as_deref() != Some(lease.instance_id.as_str())
        {
            return Ok(None);
        }
        Ok(Some((s, handle.path.clone(), data, stat)))
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
