//! Shared by the integration tests: the server URL, stores with the test session timeout, names.
#![allow(dead_code)]

pub mod provider;
pub mod proxy;

use std::time::Duration;

use leader_core::ElectionOptions;
use leader_zookeeper::ZooKeeperStore;

/// The test session timeout = the test lease (the server runs tickTime=500, sessions 1-60 s).
pub const SESSION: Duration = Duration::from_secs(4);

/// `LEADER_TEST_ZOOKEEPER_URL`, or `None` after printing why the test does not run (a failure
/// when `LEADER_TEST_REQUIRE` names zookeeper).
pub fn url() -> Option<String> {
    match std::env::var("LEADER_TEST_ZOOKEEPER_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
            if required.split(',').any(|p| p.trim() == "zookeeper") {
                panic!("LEADER_TEST_ZOOKEEPER_URL is not set but LEADER_TEST_REQUIRE names zookeeper");
            }
            eprintln!("skipped: LEADER_TEST_ZOOKEEPER_URL is not set (run scripts/servers up zookeeper)");
            None
        }
    }
}

/// `url` with the test session timeout.
pub fn with_session(url: &str, session: Duration) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}session_timeout={}ms", session.as_millis())
}

/// A new store handle (its own session) on the test server.
pub async fn store(url: &str) -> ZooKeeperStore {
    ZooKeeperStore::connect(&with_session(url, SESSION)).await.expect("connect to the test ZooKeeper")
}

pub fn options() -> ElectionOptions {
    ElectionOptions::from_lease(SESSION)
}

/// A unique election name.
pub fn unique(name: &str) -> String {
    format!("{name}-{:08x}", fastrand::u32(..))
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
