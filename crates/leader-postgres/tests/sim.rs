//! The randomised simulation (`leader_testkit::sim`) against the PostgreSQL in
//! `LEADER_TEST_POSTGRES_URL`, in real time: a few seeds at once, each participant connected
//! through a fault proxy of its own (pauses are black holes; crashes and `connection_reset`
//! faults reset its connections).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, Error, LeaseStore, Result};
use leader_postgres::PostgresStore;
use leader_testkit::sim::{self, Replay, SimConfig};
use leader_testkit::Provider;

const LEASE: Duration = Duration::from_secs(3);
const REPLAY: Replay = Replay { package: "leader-postgres", binary: "sim", test: "sim_postgres" };

struct Postgres {
    url: url::Url,
    addr: SocketAddr,
}

impl Postgres {
    fn open(url: &url::Url) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(PostgresStore::builder().url(url.as_str()).pool_max_size(2).build()?))
    }
}

#[leader_core::async_trait]
impl Provider for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Self::open(&self.url)
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
        Some(Self::open(&url))
    }
}

#[test]
fn sim_postgres() {
    let Some(raw) = leader_testkit::provider_url("postgres") else {
        use std::io::Write;
        let _ =
            writeln!(std::io::stderr(), "leader-postgres: skipping sim_postgres: LEADER_TEST_POSTGRES_URL is not set");
        return;
    };
    let url = url::Url::parse(&raw).expect("LEADER_TEST_POSTGRES_URL is a URL");
    let addr = (url.host_str().expect("a host"), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .expect("the host resolves")
        .next()
        .expect("an address");
    let make = move |_seed: u64| Arc::new(Postgres { url: url.clone(), addr }) as Arc<dyn Provider>;
    let config = SimConfig::real_time(LEASE);
    let seeds = sim::seeds_from_env(6);
    let summary = sim::run_seeds(&seeds, seeds.len(), Duration::from_secs(600), &REPLAY, |seed| {
        sim::run_real_time(&make, &config, seed)
    });
    summary.print("postgres", &REPLAY);
    assert!(
        summary.failures.is_empty(),
        "{} of {} seeds failed (replay commands above)",
        summary.failures.len(),
        summary.seeds
    );
}
