//! The conformance suite (leader-testkit) against the Redis server in `LEADER_TEST_REDIS_URL`,
//! with the fault proxy between participants and the server for partition and slow-store scenarios.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, Error, LeaseStore, Result};
use leader_redis::RedisStore;
use leader_testkit::Provider;

mod common;

struct Redis {
    url: String,
    addr: Option<SocketAddr>,
    /// One key prefix per provider, so scenarios of this run never meet other runs' keys.
    key_prefix: String,
    /// A handle of the suite's own, for `break_lease`.
    admin: RedisStore,
}

impl Redis {
    async fn open(&self, url: &str) -> Result<Arc<dyn LeaseStore>> {
        let store = RedisStore::builder(url)
            .key_prefix(&self.key_prefix)
            .max_lease(Duration::from_secs(10))
            // Test leases are 2 s: notice a blackholed connection well within one lease.
            .unresponsive_timeout(Duration::from_millis(800))
            .connection_timeout(Duration::from_millis(800))
            .build()
            .await?;
        Ok(Arc::new(store))
    }
}

#[leader_core::async_trait]
impl Provider for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        self.open(&self.url).await
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(2))
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let mut url = match url::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => return Some(Err(Error::invalid_argument(format!("test URL {:?}: {e}", self.url)))),
        };
        if url.set_ip_host(addr.ip()).is_err() || url.set_port(Some(addr.port())).is_err() {
            return Some(Err(Error::invalid_argument(format!("cannot point {:?} at {addr}", self.url))));
        }
        Some(self.open(url.as_str()).await)
    }

    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        Some(common::break_lease(&self.admin, election).await)
    }
}

async fn make_provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("redis")?;
    let parsed = url::Url::parse(&url).expect("LEADER_TEST_REDIS_URL is a URL");
    // Only a plain single-server URL can be proxied.
    let addr = (parsed.scheme() == "redis")
        .then(|| (parsed.host_str()?, parsed.port().unwrap_or(6379)).to_socket_addrs().ok()?.next())
        .flatten();
    // The suite runs with the store's real first-contact rule: the server must have been up for
    // longer than the test lease, or the first elections would wait for it.
    common::wait_until_up_for(&url, Duration::from_secs(2)).await;
    let key_prefix = format!("conf-{:08x}", fastrand::u32(..));
    let admin = RedisStore::builder(&url).key_prefix(&key_prefix).build().await.expect("the test server answers");
    Some(Arc::new(Redis { url, addr, key_prefix, admin }))
}

leader_testkit::conformance_tests!(make_provider);

/// The provider's `break_lease` (used by the suite's end-path scenarios): the holder's next renew
/// answers "not yours", and another participant may take the lease at once.
#[tokio::test]
async fn provider_break_lease_takes_the_lease_away() {
    let Some(provider) = make_provider().await else { return };
    let store = provider.store().await.unwrap();
    let election = format!("break-{:08x}", fastrand::u32(..));
    let req = |who: &str| leader_core::AcquireRequest {
        election: election.clone(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-{:08x}", fastrand::u32(..)),
        ttl: Duration::from_secs(2),
        metadata: Default::default(),
    };
    let (a, b) = (req("a"), req("b"));
    let leader_core::Acquire::Acquired(lease) = store.try_acquire(&a).await.unwrap() else { panic!("not acquired") };
    provider.break_lease(&a.election).await.expect("supported").unwrap();
    assert!(store.renew(&lease, a.ttl).await.unwrap().is_none(), "the holder's renew must answer not yours");
    let taken = store.try_acquire(&b).await.unwrap();
    assert!(matches!(&taken, leader_core::Acquire::Acquired(l) if l.token > lease.token), "{taken:?}");
}
