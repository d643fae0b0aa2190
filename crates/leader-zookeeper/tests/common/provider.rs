//! The testkit [`Provider`] for ZooKeeper: a standalone server (tests/conformance.rs) or the
//! ensemble of tests/topology_ensemble.rs.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, Error, LeaseStore, Result};
use leader_testkit::Provider;
use leader_zookeeper::ZooKeeperStore;

pub struct ZkProvider {
    /// `host:port[,host:port]`: every new handle connects to these.
    pub hosts: String,
    pub root: String,
    pub session: Duration,
}

impl ZkProvider {
    /// From a `zk://hosts/root` URL, with `session` as the session timeout (= the test lease).
    pub fn from_url(url: &str, session: Duration) -> Option<Self> {
        let rest = url.split_once("://")?.1;
        let rest = rest.split('?').next().unwrap_or(rest);
        let (hosts, root) = rest.split_once('/').unwrap_or((rest, "leader-test"));
        Some(ZkProvider { hosts: hosts.to_owned(), root: format!("/{}", root.trim_end_matches('/')), session })
    }

    async fn connect(&self, hosts: &str) -> Result<Arc<dyn LeaseStore>> {
        let store = ZooKeeperStore::builder(hosts).root(&self.root).session_timeout(self.session).connect().await?;
        Ok(Arc::new(store))
    }

    /// Deletes the lowest candidate node of `election` (its holder's) from a session of our own.
    async fn delete_holder(&self, election: &str) -> Result<()> {
        use zookeeper_client as zk;
        let client = zk::Client::connect(&self.hosts)
            .await
            .map_err(|e| Error::unavailable(format!("raw ZooKeeper client for {}", self.hosts)).with_source(e))?;
        let epath = format!("{}/{election}", self.root);
        let children = match client.list_children(&epath).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(Error::unavailable(format!("list {epath}")).with_source(e)),
        };
        let lowest = children
            .iter()
            .filter(|c| c.starts_with("n_"))
            .filter_map(|c| Some((c.rsplit_once('_')?.1.parse::<u64>().ok()?, c)))
            .min();
        let Some((_, node)) = lowest else {
            return Err(Error::backend(format!("election {election} has no candidate node to take away")));
        };
        let path = format!("{epath}/{node}");
        client.delete(&path, None).await.map_err(|e| Error::backend(format!("delete {path}")).with_source(e))
    }
}

#[leader_core::async_trait]
impl Provider for ZkProvider {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        self.connect(&self.hosts).await
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(self.session)
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        // The fault proxy fronts the first server: a handle made by store_at talks to it alone.
        self.hosts.split(',').next()?.to_socket_addrs().ok()?.next()
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        Some(self.connect(&addr.to_string()).await)
    }

    /// Deletes the holder's node behind its back: its next renew finds the node gone.
    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        Some(self.delete_holder(election).await)
    }
}
