//! The `leader-testkit` conformance suite against a real PostgreSQL (`LEADER_TEST_POSTGRES_URL`),
//! with the fault proxy between participants and the server for the partition and slow-store
//! scenarios. Every handle is a store of its own (own pool, own LISTEN connection), as separate
//! processes would have.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, Error, LeaseStore, Result};
use leader_postgres::PostgresStore;
use leader_testkit::Provider;

struct Postgres {
    url: url::Url,
    addr: SocketAddr,
}

impl Postgres {
    fn open(url: &str) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(PostgresStore::builder().url(url).pool_max_size(4).build()?))
    }
}

#[leader_core::async_trait]
impl Provider for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Self::open(self.url.as_str())
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(3))
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let mut url = self.url.clone();
        let moved = url.set_ip_host(addr.ip()).is_ok() && url.set_port(Some(addr.port())).is_ok();
        if !moved {
            return Some(Err(Error::invalid_argument(format!("cannot point the test URL at {addr}"))));
        }
        Some(Self::open(url.as_str()))
    }

    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        let store = PostgresStore::builder().url(self.url.as_str()).pool_max_size(1).build();
        Some(
            async move {
                let store = store?;
                let client = store.pool().get().await.map_err(|e| Error::unavailable(e.to_string()))?;
                // Expire the holder's lease by the database clock, as if it had stopped renewing.
                let sql = format!(
                    "UPDATE {} SET expires_at = now() - interval '1 millisecond' WHERE election_name = $1",
                    store.table_name()
                );
                client.execute(sql.as_str(), &[&election]).await.map_err(|e| Error::backend(e.to_string()))?;
                Ok(())
            }
            .await,
        )
    }
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let Some(raw) = leader_testkit::provider_url("postgres") else {
        // provider_url's own line goes through eprintln!, which libtest captures for passing
        // tests: say it once where it shows.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "leader-postgres: skipping the conformance suite: LEADER_TEST_POSTGRES_URL is not set"
            );
        });
        return None;
    };
    let url = url::Url::parse(&raw).expect("LEADER_TEST_POSTGRES_URL is a URL");
    let host = url.host_str().expect("LEADER_TEST_POSTGRES_URL names a host").to_owned();
    let port = url.port().unwrap_or(5432);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .expect("the test server's host resolves")
        .next()
        .expect("the test server's host has an address");
    // Create the schema once up front, so that concurrent scenarios do not all start with DDL.
    PostgresStore::from_url(&raw).expect("test URL").ensure_schema().await.expect("test server answers");
    Some(Arc::new(Postgres { url, addr }))
}

leader_testkit::conformance_tests!(provider);
