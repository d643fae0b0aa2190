//! TLS with rustls against the test server, which `scripts/servers up postgres` starts with a
//! throwaway CA's certificate for 127.0.0.1 (in `.servers/postgres/tls/`). Skips when that
//! certificate is not there (no openssl where the server was started).
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{request, sql_client, unique, url, with_params};
use leader_core::{Acquire, LeaseStore};
use leader_postgres::PostgresStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn test_ca() -> Option<CertificateDer<'static>> {
    let dir = std::env::var_os("LEADER_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.servers"));
    let path = dir.join("postgres/tls/ca.crt");
    match std::fs::read(&path) {
        Ok(pem) => Some(CertificateDer::from_pem_slice(&pem).expect("the test CA is PEM")),
        Err(_) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "leader-postgres: skipping TLS test: no test CA at {}", path.display());
            None
        }
    }
}

fn client_config(ca: CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("the test CA is a certificate");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn sslmode_require_connects_with_rustls_and_verifies_the_server() {
    let Some(url) = url() else { return };
    let Some(ca) = test_ca() else { return };
    let app = unique("tls_");
    let tls_url = with_params(&url, &format!("sslmode=require&application_name={app}"));
    let store = PostgresStore::builder().url(&tls_url).tls(client_config(ca)).build().unwrap();
    let e = unique("tls-");
    let mut watch = store.watch(&e, None).expect("listener");
    futures::StreamExt::next(&mut watch).await.expect("LISTEN in place");
    match store.try_acquire(&request(&e, "p", "i", Duration::from_secs(3))).await.unwrap() {
        Acquire::Acquired(_) => {}
        other => panic!("not acquired: {other:?}"),
    }
    // Both the pooled and the LISTEN connection are encrypted.
    let rows = sql_client(&url)
        .await
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE $1 ORDER BY 1",
            &[&format!("{app}%")],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(seen.contains(&(app.clone(), true)), "{seen:?}");
    assert!(seen.contains(&(format!("{app}-listen"), true)), "{seen:?}");
    assert!(seen.iter().all(|(_, ssl)| *ssl), "{seen:?}");

    // Without the test CA among its roots, the server's certificate is refused.
    let untrusted = PostgresStore::from_url(&with_params(&url, "sslmode=require")).unwrap();
    let err = untrusted.try_acquire(&request(&e, "q", "j", Duration::from_secs(3))).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}
