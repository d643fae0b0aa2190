//! Every provider fails the same way on a wrong address: `connect` makes one round trip and
//! answers `Unavailable`, with a message (not only the source chain) naming the endpoint and the
//! operating system's cause. Port 1 on loopback is closed on any ordinary machine, so no server is
//! needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use leader::ErrorKind;

/// `connect(url)` must fail, within `within`, as `Unavailable` with `endpoint` and the OS's
/// "connection refused" in the message itself.
#[allow(dead_code)]
async fn refused(url: &str, endpoint: &str) {
    let within = Duration::from_secs(30);
    let result = tokio::time::timeout(within, leader::connect(url)).await;
    let Ok(result) = result else { panic!("connect({url:?}) did not answer within {within:?}") };
    let Err(err) = result else { panic!("connect({url:?}) succeeded against a closed port") };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{url}: {err}");
    let message = err.message();
    assert!(message.contains(endpoint), "{url}: the message {message:?} does not name {endpoint}");
    assert!(
        message.to_ascii_lowercase().contains("refused"),
        "{url}: the message {message:?} does not give the OS cause"
    );
    #[cfg(unix)]
    {
        let shown = err.to_string();
        assert!(shown.matches("os error").count() <= 1, "{url}: the OS error is shown twice: {shown}");
    }
    println!("{url}: {err}");
}

/// A directory that cannot be created: the OS error once, in the message.
#[cfg(all(feature = "fs", target_os = "linux"))]
#[tokio::test]
async fn fs_names_the_os_error_once() {
    let Err(err) = leader::connect("file:///proc/nope").await else { panic!("a store under /proc") };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("/proc/nope") && err.message().contains("os error 2"), "{err}");
    let shown = err.to_string();
    assert_eq!(shown.matches("No such file or directory").count(), 1, "{shown}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_refused() {
    refused("postgres://127.0.0.1:1/x", "127.0.0.1:1").await;
}

#[cfg(feature = "azblob")]
#[tokio::test]
async fn azblob_refused() {
    refused("azblob://devstoreaccount1@127.0.0.1:1/leader-test", "127.0.0.1:1").await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_refused() {
    refused("redis://127.0.0.1:1", "127.0.0.1:1").await;
}

#[cfg(feature = "zookeeper")]
#[tokio::test]
async fn zookeeper_refused() {
    refused("zk://127.0.0.1:1/leader-test", "127.0.0.1:1").await;
}

#[cfg(feature = "sqlserver")]
#[tokio::test]
async fn sqlserver_refused() {
    refused("mssql://sa:secret@127.0.0.1:1/master", "127.0.0.1:1").await;
}

#[cfg(feature = "consul")]
#[tokio::test]
async fn consul_refused() {
    refused("consul://127.0.0.1:1", "127.0.0.1:1").await;
}
