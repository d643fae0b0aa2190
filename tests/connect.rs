//! `leader::connect`: schemes by feature, clear errors, no password in messages.

use leader::ErrorKind;

#[tokio::test]
async fn unknown_scheme_lists_the_supported_ones() {
    let Err(err) = leader::connect("gopher://user:secret@host/x").await else { panic!("accepted") };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let msg = err.to_string();
    assert!(msg.contains("\"gopher\""), "{msg}");
    for scheme in leader::supported_schemes() {
        assert!(msg.contains(&format!("{scheme}://")), "{msg} lacks {scheme}");
    }
    assert!(!msg.contains("secret"), "the password is redacted: {msg}");
}

#[tokio::test]
async fn not_a_url_is_an_invalid_argument() {
    for url in ["", "memory", "://x", "no scheme here"] {
        let Err(err) = leader::connect(url).await else { panic!("{url:?} accepted") };
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url:?}");
    }
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn memory_urls_share_state_by_name() {
    use leader::{Acquire, AcquireRequest};
    let a = leader::connect("memory://shared-by-name").await.unwrap();
    let b = leader::connect("memory://shared-by-name").await.unwrap();
    let req = |i: &str| AcquireRequest {
        election: "e".into(),
        participant_id: i.into(),
        instance_id: i.into(),
        ttl: std::time::Duration::from_secs(5),
        metadata: Default::default(),
    };
    assert!(matches!(a.try_acquire(&req("a")).await.unwrap(), Acquire::Acquired(_)));
    assert!(matches!(b.try_acquire(&req("b")).await.unwrap(), Acquire::Held(Some(_))));
    let c = leader::connect("MEMORY://other").await.unwrap();
    assert!(matches!(c.try_acquire(&req("c")).await.unwrap(), Acquire::Acquired(_)));
}

#[cfg(feature = "etcd")]
#[tokio::test]
async fn etcd_urls_open_an_etcd_store() {
    // A bad etcd URL is refused before any connection, without its password.
    let Err(err) = leader::connect("etcd://u:hunter2@127.0.0.1:2379/a b").await else { panic!("accepted") };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let Ok(url) = std::env::var("LEADER_TEST_ETCD_URL") else {
        eprintln!("skipping the etcd part: LEADER_TEST_ETCD_URL is not set");
        return;
    };
    let store = leader::connect(&url).await.unwrap();
    assert!(store.downcast_ref::<leader::etcd::EtcdStore>().is_some());
    assert!(store.capabilities().pushes_expiry);
}
