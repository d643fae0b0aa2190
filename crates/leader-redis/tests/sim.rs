//! The randomised simulation (`leader_testkit::sim`) against the Redis in `LEADER_TEST_REDIS_URL`,
//! in real time: a few seeds at once, each participant connected through a fault proxy of its own.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, Error, LeaseStore, Result};
use leader_redis::RedisStore;
use leader_testkit::sim::{self, Replay, SimConfig};
use leader_testkit::Provider;

const LEASE: Duration = Duration::from_secs(2);
const REPLAY: Replay = Replay { package: "leader-redis", binary: "sim", test: "sim_redis" };

struct Redis {
    url: url::Url,
    addr: SocketAddr,
    prefix: String,
}

impl Redis {
    async fn open(&self, url: &url::Url) -> Result<Arc<dyn LeaseStore>> {
        let store = RedisStore::builder(url.as_str())
            .key_prefix(&self.prefix)
            .quarantine(Duration::ZERO) // the shared test server is not restarted by these tests
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
        ElectionOptions::from_lease(LEASE)
    }
    fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let mut url = self.url.clone();
        if url.set_ip_host(addr.ip()).is_err() || url.set_port(Some(addr.port())).is_err() {
            return Some(Err(Error::invalid_argument(format!("cannot point {} at {addr}", self.url))));
        }
        Some(self.open(&url).await)
    }
}

#[test]
fn sim_redis() {
    let Some(raw) = leader_testkit::provider_url("redis") else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "leader-redis: skipping sim_redis: LEADER_TEST_REDIS_URL is not set");
        return;
    };
    let url = url::Url::parse(&raw).expect("LEADER_TEST_REDIS_URL is a URL");
    assert_eq!(url.scheme(), "redis", "the simulation proxies a plain redis:// server");
    let addr = (url.host_str().expect("a host"), url.port().unwrap_or(6379))
        .to_socket_addrs()
        .expect("the host resolves")
        .next()
        .expect("an address");
    let prefix = format!("sim-{:08x}", fastrand::u32(..));
    let make =
        move |_seed: u64| Arc::new(Redis { url: url.clone(), addr, prefix: prefix.clone() }) as Arc<dyn Provider>;
    let config = SimConfig::real_time(LEASE);
    let seeds = sim::seeds_from_env(6);
    let summary = sim::run_seeds(&seeds, seeds.len(), Duration::from_secs(600), &REPLAY, |seed| {
        sim::run_real_time(&make, &config, seed)
    });
    summary.print("redis", &REPLAY);
    assert!(
        summary.failures.is_empty(),
        "{} of {} seeds failed (replay commands above)",
        summary.failures.len(),
        summary.seeds
    );
}
