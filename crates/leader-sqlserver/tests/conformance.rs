//! The conformance suite against the SQL Server at `LEADER_TEST_SQLSERVER_URL`, e.g.
//! `mssql://sa:LeaderTest_Passw0rd@127.0.0.1:1433/master?trust_server_certificate=true`
//! (docker compose: see the crate README). Without the variable every test prints why it did not
//! run and passes, unless `LEADER_TEST_REQUIRE` names `sqlserver`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_sqlserver::SqlServerStore;
use leader_testkit::Provider;

struct SqlServer {
    url: String,
}

impl SqlServer {
    /// The URL with its host and port replaced (for the fault proxy); only for URL forms.
    fn url_at(&self, addr: SocketAddr) -> Option<String> {
        let mut url = url::Url::parse(&self.url).ok()?;
        url.set_ip_host(addr.ip()).ok()?;
        url.set_port(Some(addr.port())).ok()?;
        Some(url.to_string())
    }
}

#[leader_core::async_trait]
impl Provider for SqlServer {
    fn name(&self) -> &'static str {
        "sqlserver"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(SqlServerStore::connect(&self.url).await?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(3))
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        let url = url::Url::parse(&self.url).ok()?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
        (host.as_str(), url.port().unwrap_or(1433)).to_socket_addrs().ok()?.next()
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let url = self.url_at(addr)?;
        Some(SqlServerStore::connect(&url).await.map(|s| Arc::new(s) as Arc<dyn LeaseStore>))
    }
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("sqlserver")?;
    Some(Arc::new(SqlServer { url }))
}

leader_testkit::conformance_tests!(provider);
