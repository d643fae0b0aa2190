//! The conformance suite against the Consul agent at `LEADER_TEST_CONSUL_URL`, e.g.
//! `consul://127.0.0.1:8500` (docker compose: see the crate README). Without the variable every
//! test prints why it did not run and passes, unless `LEADER_TEST_REQUIRE` names `consul`.
//!
//! Leases are 10 s, Consul's shortest session TTL; the crash scenarios check the documented bound
//! of 2 x lease + retry (Consul may reap a dead session up to twice its TTL late).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_consul::ConsulStore;
use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_testkit::Provider;

struct Consul {
    url: String,
}

#[leader_core::async_trait]
impl Provider for Consul {
    fn name(&self) -> &'static str {
        "consul"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(ConsulStore::connect(&self.url)?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(leader_consul::MIN_TTL)
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        let url = url::Url::parse(&self.url).ok()?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
        (host.as_str(), url.port().unwrap_or(8500)).to_socket_addrs().ok()?.next()
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let mut url = url::Url::parse(&self.url).ok()?;
        url.set_ip_host(addr.ip()).ok()?;
        url.set_port(Some(addr.port())).ok()?;
        Some(ConsulStore::connect(url.as_str()).map(|s| Arc::new(s) as Arc<dyn LeaseStore>))
    }
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("consul")?;
    Some(Arc::new(Consul { url }))
}

// Keeps the constant honest: the suite's lease is what check_options accepts.
#[test]
fn suite_lease_is_accepted() {
    let store = ConsulStore::connect("consul://127.0.0.1:8500").expect("valid URL");
    assert!(store.check_options(&ElectionOptions::from_lease(leader_consul::MIN_TTL)).is_ok());
    assert!(store.check_options(&ElectionOptions::from_lease(Duration::from_secs(9))).is_err());
}

leader_testkit::conformance_tests!(provider);
