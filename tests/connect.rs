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

#[cfg(feature = "memory")]
#[tokio::test]
async fn memory_without_a_name_is_refused() {
    let Err(err) = leader::connect("memory://").await else { panic!("memory:// gave a store") };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("memory://NAME"), "{err}");
}

/// The provider's own type, from a store `leader::connect` gave, through two layers.
#[cfg(feature = "memory")]
#[tokio::test]
async fn downcast_through_connect_and_layers() {
    use leader::layer::{CircuitBreakerLayer, LeaseStoreExt, RetryLayer};
    use leader::memory::MemoryStore;
    let store = leader::connect("memory://downcast")
        .await
        .unwrap()
        .layer(RetryLayer::new())
        .layer(CircuitBreakerLayer::new(3, std::time::Duration::from_secs(1)));
    assert!(store.downcast_ref::<MemoryStore>().is_some());
    assert!(store.downcast_ref::<String>().is_none());
}

/// Every provider whose server is here: `downcast_ref` reaches its type through a layer.
#[tokio::test]
async fn downcast_every_provider_here() {
    #[allow(unused_imports)]
    use leader::layer::{LeaseStoreExt, RetryLayer};
    #[allow(unused_mut)]
    let mut checked = Vec::<&str>::new();
    #[allow(unused_macros)]
    macro_rules! check {
        ($feature:literal, $var:literal, $ty:ty) => {
            #[cfg(feature = $feature)]
            if let Ok(url) = std::env::var($var) {
                let store = leader::connect(&url).await.unwrap().layer(RetryLayer::new());
                assert!(store.downcast_ref::<$ty>().is_some(), "{} through a layer", stringify!($ty));
                checked.push($feature);
            }
        };
    }
    check!("postgres", "LEADER_TEST_POSTGRES_URL", leader::postgres::PostgresStore);
    check!("redis", "LEADER_TEST_REDIS_URL", leader::redis::RedisStore);
    check!("zookeeper", "LEADER_TEST_ZOOKEEPER_URL", leader::zookeeper::ZooKeeperStore);
    check!("azblob", "LEADER_TEST_AZBLOB_URL", leader::azblob::AzureBlobStore);
    check!("sqlserver", "LEADER_TEST_SQLSERVER_URL", leader::sqlserver::SqlServerStore);
    check!("consul", "LEADER_TEST_CONSUL_URL", leader::consul::ConsulStore);
    check!("etcd", "LEADER_TEST_ETCD_URL", leader::etcd::EtcdStore);
    #[cfg(feature = "fs")]
    {
        let dir = std::env::temp_dir().join(format!("leader-downcast-{}", std::process::id()));
        let store = leader::connect(&format!("file://{}", dir.display())).await.unwrap().layer(RetryLayer::new());
        assert!(store.downcast_ref::<leader::fs::FsStore>().is_some());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        checked.push("fs");
    }
    println!("downcast checked for: {checked:?}");
}

/// Azure Storage connection strings are accepted by `connect`; the container is `Container=NAME`.
#[cfg(feature = "azblob")]
#[tokio::test]
async fn azure_connection_strings() {
    use leader::azblob::{AzureBlobStore, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    // Against a closed port: accepted (not InvalidArgument), then unreachable, and the key never shown.
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};\
         BlobEndpoint=http://127.0.0.1:1/{DEV_ACCOUNT};Container=leader-test"
    );
    let Err(err) = leader::connect(&cs).await else { panic!("connected to a closed port") };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("127.0.0.1:1"), "{err}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&DEV_ACCOUNT_KEY[..20]), "the key is shown: {shown}");
    }
    // UseDevelopmentStorage=true is Azurite's default port: reachable or not, never refused as input.
    if let Err(err) = leader::connect("UseDevelopmentStorage=true").await {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("127.0.0.1:10000"), "{err}");
    }
    // A bad string is refused without echoing the key.
    let bad = "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;DefaultEndpointsProtocol=gopher;Bogus";
    let Err(err) = leader::connect(bad).await else { panic!("accepted {bad}") };
    assert!(!format!("{err} {err:?}").contains("c2VjcmV0LWtleQ"), "{err}");

    // Against the test server, when there is one.
    let Ok(url) = std::env::var("LEADER_TEST_AZBLOB_URL") else {
        println!("LEADER_TEST_AZBLOB_URL is not set: the connection string is not tried against Azurite");
        return;
    };
    let host_port = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap();
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};\
         BlobEndpoint=http://{host_port}/{DEV_ACCOUNT};Container=leader-test"
    );
    let store = leader::connect(&cs).await.unwrap();
    let azure = store.downcast_ref::<AzureBlobStore>().unwrap();
    assert_eq!(azure.container(), "leader-test");
    let election = leader::Election::builder(store, format!("cs-{}", std::process::id()))
        .options(leader::ElectionOptions::from_lease(std::time::Duration::from_secs(15)))
        .build()
        .unwrap();
    assert!(election.try_acquire().await.unwrap());
    election.stop().await.unwrap();
}

/// No error message or `Debug` output of any provider's configuration shows a password or key.
#[tokio::test]
async fn no_secret_in_any_error() {
    const SECRET: &str = "Sup3rSecretValue";
    #[allow(unused_mut)]
    let mut urls: Vec<String> = vec![
        format!("gopher://u:{SECRET}@h/x"),
        format!("not a url with password={SECRET}"),
        format!("AccountName=a;AccountKey={SECRET};Bogus"),
    ];
    #[cfg(feature = "postgres")]
    urls.extend([
        format!("postgres://u:{SECRET}@127.0.0.1:1/db"),
        format!("postgres://u:{SECRET}@127.0.0.1:1/db?bogus=1"),
        format!("postgres://u:{SECRET}@127.0.0.1:1/db?pool_size=0"),
    ]);
    #[cfg(feature = "redis")]
    urls.extend([format!("redis://:{SECRET}@127.0.0.1:1/0"), format!("redis://u:{SECRET}@127.0.0.1:1/0?bogus=1")]);
    #[cfg(feature = "zookeeper")]
    urls.push(format!("zk://u:{SECRET}@127.0.0.1:1/x"));
    #[cfg(feature = "sqlserver")]
    urls.extend([
        format!("mssql://sa:{SECRET}@127.0.0.1:1/db"),
        format!("mssql://sa:{SECRET}@127.0.0.1:1/db?bogus=1"),
        format!("Server=tcp:127.0.0.1,1;User Id=sa;Password={SECRET};Bogus=1"),
    ]);
    #[cfg(feature = "consul")]
    urls.extend([
        format!("consul://127.0.0.1:1?token={SECRET}"),
        format!("consul://127.0.0.1:1?token={SECRET}&bogus=1"),
    ]);
    #[cfg(feature = "azblob")]
    urls.extend([
        format!("azblob://acct:{SECRET}@127.0.0.1:1/cont"),
        format!("azblob://acct:{SECRET}@127.0.0.1:1/cont?bogus=1"),
        format!("azblob://acct@127.0.0.1:1/cont?sas=sv%3D1%26sig%3D{SECRET}"),
        format!("azblob://acct@127.0.0.1:1/Bad_Container?key={SECRET}"),
        format!(
            "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=U3VwM3JTZWNyZXRWYWx1ZQ==;BlobEndpoint=http://127.0.0.1:1/a?sig={SECRET}"
        ),
    ]);
    // The providers' own configuration types and stores, built from those inputs.
    #[allow(unused_mut)]
    let mut debug: Vec<String> = Vec::new();
    #[cfg(feature = "postgres")]
    {
        use leader::postgres::PostgresStore;
        let url = format!("postgres://u:{SECRET}@127.0.0.1:1/db");
        debug.push(format!("{:?}", PostgresStore::builder().url(url.as_str())));
        debug.push(format!("{:?}", PostgresStore::from_url(&url).unwrap()));
    }
    #[cfg(feature = "azblob")]
    {
        use leader::azblob::AzureBlobStore;
        let key = "U3VwM3JTZWNyZXRWYWx1ZQ==";
        debug.push(format!("{:?}", AzureBlobStore::builder().account_key("acct", key).container("cont")));
        debug.push(format!(
            "{:?}",
            AzureBlobStore::from_url(&format!("azblob://acct@127.0.0.1:1/cont?key={key}")).unwrap()
        ));
        debug.push(format!("{:?}", AzureBlobStore::builder().sas(&format!("sv=1&sig={SECRET}"))));
    }
    #[cfg(feature = "sqlserver")]
    {
        use leader::sqlserver::SqlServerConfig;
        debug.push(format!("{:?}", SqlServerConfig::parse(&format!("mssql://sa:{SECRET}@127.0.0.1:1/db")).unwrap()));
        debug.push(format!(
            "{:?}",
            SqlServerConfig::parse(&format!("Server=tcp:h,1;User Id=sa;Password={SECRET}")).unwrap()
        ));
    }
    #[cfg(feature = "consul")]
    debug.push(format!(
        "{:?}",
        leader::consul::ConsulConfig::from_url(&format!("consul://127.0.0.1:1?token={SECRET}")).unwrap()
    ));
    for shown in &debug {
        assert!(!shown.contains(SECRET) && !shown.contains("U3VwM3JTZWNyZXRWYWx1ZQ"), "Debug shows a secret: {shown}");
    }

    for url in &urls {
        let config = leader::Config {
            store: url.clone(),
            election: "e".into(),
            participant_id: None,
            options: Default::default(),
            metadata: Default::default(),
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "Config's Debug shows the secret: {debug}");
        let Err(err) = leader::connect(url).await else { continue };
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains(SECRET) && !shown.contains("U3VwM3JTZWNyZXRWYWx1ZQ"), "{url}: {shown}");
    }
}
