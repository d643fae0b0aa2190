//! The `leader-testkit` conformance suite against a real etcd (`LEADER_TEST_ETCD_URL`), with the
//! fault proxy between a participant and the server for the partition and slow-store scenarios.
//! Every handle is a store of its own (own client, own connection), as separate processes have.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_etcd::{EtcdConfig, EtcdStore};
use leader_testkit::Provider;

/// The test lease: 3 s (etcd's smallest TTL is 2 s; 3 s leaves 500 ms operation timeouts for
/// Raft writes on a loaded machine).
const LEASE: Duration = Duration::from_secs(3);

struct Etcd {
    config: EtcdConfig,
    addr: SocketAddr,
    /// For `break_lease`: a handle of the suite's own.
    admin: EtcdStore,
}

#[leader_core::async_trait]
impl Provider for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(self.config.connect().await?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(LEASE)
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let mut config = self.config.clone();
        config.endpoints = vec![addr.to_string()];
        Some(config.connect().await.map(|s| Arc::new(s) as Arc<dyn LeaseStore>))
    }

    /// Revokes the holder's etcd lease behind its back (etcd deletes the key with it).
    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        Some(break_lease(&self.admin, election).await)
    }
}

async fn break_lease(admin: &EtcdStore, election: &str) -> Result<()> {
    let key = admin.key(election)?;
    let mut client = admin.client().await?;
    let resp = client.get(key.as_str(), None).await.map_err(|e| leader_core::Error::backend(e.to_string()))?;
    if let Some(kv) = resp.kvs().first() {
        client.lease_revoke(kv.lease()).await.map_err(|e| leader_core::Error::backend(e.to_string()))?;
    }
    Ok(())
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("etcd")?;
    let config = EtcdConfig::from_url(&url).expect("LEADER_TEST_ETCD_URL is an etcd:// URL");
    let addr = config.endpoints[0]
        .to_socket_addrs()
        .expect("the test server's host resolves")
        .next()
        .expect("the test server's host has an address");
    let admin = config.connect().await.expect("the test etcd answers");
    Some(Arc::new(Etcd { config, addr, admin }))
}

leader_testkit::conformance_tests!(provider);
