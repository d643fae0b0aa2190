//! The shared conformance suite against a real blob service (Azurite in CI), with 15 s leases
//! (Azure's minimum). Each scenario runs on its own election and the testkit runs them
//! concurrently (`LEADER_TEST_CONCURRENCY`, default 8), so the suite takes 1-1.5 minutes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use leader_azblob::AzureBlobStore;
use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_testkit::Provider;

struct Azure {
    url: String,
}

#[leader_core::async_trait]
impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azblob"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(AzureBlobStore::from_url(&self.url)?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(15))
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        let (host, port) = endpoint_host_port(&self.url)?;
        (host.as_str(), port).to_socket_addrs().ok()?.next()
    }

    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        let url = redirect(&self.url, addr)?;
        Some(AzureBlobStore::from_url(&url).map(|s| Arc::new(s) as Arc<dyn LeaseStore>))
    }

    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        let broken = async {
            AzureBlobStore::from_url(&self.url)?.break_lease(election, Duration::ZERO).await?;
            Ok(())
        };
        Some(broken.await)
    }
}

/// The blob endpoint's host and port, from an `azblob://` URL or a connection string.
fn endpoint_host_port(url: &str) -> Option<(String, u16)> {
    let endpoint = match connection_string_endpoint(url) {
        Some(e) => url::Url::parse(&e).ok()?,
        None => url::Url::parse(url).ok()?,
    };
    let default = if endpoint.scheme() == "http" { 80 } else { 443 };
    Some((endpoint.host_str()?.to_owned(), endpoint.port().unwrap_or(default)))
}

fn connection_string_endpoint(s: &str) -> Option<String> {
    s.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("BlobEndpoint").then(|| v.trim().to_owned())
    })
}

/// The same URL with the endpoint's address replaced by `addr` (the fault proxy).
fn redirect(url: &str, addr: SocketAddr) -> Option<String> {
    if let Some(endpoint) = connection_string_endpoint(url) {
        let mut e = url::Url::parse(&endpoint).ok()?;
        e.set_ip_host(addr.ip()).ok()?;
        e.set_port(Some(addr.port())).ok()?;
        let replaced = e.as_str().trim_end_matches('/').to_owned();
        return Some(url.replace(&endpoint, &replaced));
    }
    let mut u = url::Url::parse(url).ok()?;
    u.set_ip_host(addr.ip()).ok()?;
    u.set_port(Some(addr.port())).ok()?;
    Some(u.to_string())
}

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("azblob")?;
    Some(Arc::new(Azure { url }))
}

leader_testkit::conformance_tests!(provider);

#[test]
fn redirect_keeps_account_container_and_credential() {
    let addr: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    assert_eq!(
        redirect("azblob://devstoreaccount1@127.0.0.1:50000/leader-test", addr).as_deref(),
        Some("azblob://devstoreaccount1@127.0.0.1:41000/leader-test")
    );
    let cs = "AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:50000/a;Container=abc";
    assert_eq!(
        redirect(cs, addr).as_deref(),
        Some("AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:41000/a;Container=abc")
    );
    assert_eq!(endpoint_host_port(cs), Some(("127.0.0.1".to_owned(), 50000)));
}
