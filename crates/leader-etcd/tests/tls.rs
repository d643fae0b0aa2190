//! TLS against the test server's TLS port, which `scripts/servers up etcd` opens with a throwaway
//! CA's certificate for 127.0.0.1 and requires client certificates of the same CA (the CA, the
//! keys and the endpoint are in `.servers/etcd/tls/`). Skips when they are not there (no openssl
//! where the server was started).
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;

use common::{acquired, request, unique, url, LEASE};
use leader_core::{ErrorKind, LeaseStore};
use leader_etcd::{EtcdConfig, EtcdStore, TlsFiles};

fn tls_dir() -> Option<(PathBuf, String)> {
    let dir = common::state_dir("etcd").join("tls");
    match std::fs::read_to_string(dir.join("endpoint")) {
        Ok(endpoint) => Some((dir, endpoint.trim().to_owned())),
        Err(_) => {
            eprintln!("leader-etcd: skipping TLS test: no TLS endpoint in {}", dir.display());
            None
        }
    }
}

#[tokio::test]
async fn tls_with_the_test_ca_and_a_client_certificate() {
    if url().is_none() {
        return;
    }
    let Some((dir, endpoint)) = tls_dir() else { return };
    let ca = dir.join("ca.crt");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));

    // From a URL: etcds://, the CA and the client certificate as parameters.
    let url = format!(
        "etcds://{endpoint}/tls-test?ca_file={}&cert_file={}&key_file={}",
        ca.display(),
        cert.display(),
        key.display()
    );
    let s = EtcdStore::connect(&url).await.unwrap();
    let e = unique("tls");
    let lease = acquired(s.try_acquire(&request(&e, "p", "i")).await.unwrap());
    assert!(s.renew(&lease, LEASE).await.unwrap().is_some());
    let mut watch = s.watch(&e, None).expect("watch");
    futures::StreamExt::next(&mut watch).await.expect("the watch is in place over TLS");
    assert!(s.release(&lease).await.unwrap());

    // From a configuration: the same.
    let mut config = EtcdConfig::new([endpoint.clone()]);
    config.prefix = "/tls-test".into();
    let mut files = TlsFiles::default();
    files.ca_file = Some(ca.clone());
    files.cert_file = Some(cert.clone());
    files.key_file = Some(key.clone());
    config.tls = Some(files);
    config.connect().await.unwrap();

    // Without a client certificate the server refuses; with the Mozilla roots instead of the test
    // CA the client refuses the server. Both when connecting.
    let quick = "connect_timeout=2s&request_timeout=2s";
    let no_identity = format!("etcds://{endpoint}/tls-test?ca_file={}&{quick}", ca.display());
    let err = EtcdStore::connect(&no_identity).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let untrusted =
        format!("etcds://{endpoint}/tls-test?cert_file={}&key_file={}&{quick}", cert.display(), key.display());
    let err = EtcdStore::connect(&untrusted).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
