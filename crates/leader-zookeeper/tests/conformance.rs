//! The conformance suite (leader-testkit) against a real ZooKeeper.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_testkit::Provider;
use leader_zookeeper::ZooKeeperStore;

/// The test session timeout, which is the lease (the test server has tickTime=500).
const SESSION: Duration = Duration::from_secs(4);

struct ZooKeeper {
    hosts: String,
    root: String,
}

impl ZooKeeper {
    fn new(url: &str) -> Option<Self> {
        let rest = url.split_once("://")?.1;
        let rest = rest.split('?').next().unwrap_or(rest);
        let (hosts, root) = rest.split_once('/').unwrap_or((rest, "leader-test"));
        Some(ZooKeeper { hosts: hosts.to_owned(), root: format!("/{}", root.trim_end_matches('/')) })
    }

    async fn connect(&self, hosts: &str) -> Result<Arc<dyn LeaseStore>> {
        let store = ZooKeeperStore::builder(hosts).root(&self.root).session_timeout(SESSION).connect().await?;
        Ok(Arc::new(store))
    }
}

#[leader_core::async_trait]
impl Provider for ZooKeeper {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        self.connect(&self.hosts).await
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(SESSION)
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        // The fault proxy fronts the first server (the test server is standalone).
        self.hosts.split(',').next()?.to_socket_addrs().ok()?.next()
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        Some(self.connect(&addr.to_string()).await)
    }
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("zookeeper")?;
    let Some(provider) = ZooKeeper::new(&url) else {
        panic!("LEADER_TEST_ZOOKEEPER_URL {url:?} is not zk://host:port/root");
    };
    Some(Arc::new(provider))
}

leader_testkit::conformance_tests!(provider);
