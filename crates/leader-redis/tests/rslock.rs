//! `rslock` 0.10 (Redlock) is a dev-dependency only for leader-bench's comparison; this checks that
//! its lock/unlock work against the test server, so the bench compares against something that runs.
//! It is not used by the store: see the crate docs for why Redlock is no correctness lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

#[tokio::test]
async fn rslock_lock_and_unlock_against_the_test_server() {
    let Some(url) = common::shared_url() else { return };
    let manager = rslock::LockManager::new(vec![url.clone()]);
    let resource = format!("rslock-smoke-{:08x}", fastrand::u32(..));
    let lock = manager.lock(resource.as_str(), Duration::from_secs(2)).await.expect("uncontended lock");
    assert!(lock.validity_time > 0);
    // Held: a second lock on the same resource fails (after rslock's own retries).
    let mut other = rslock::LockManager::new(vec![url]);
    other.set_retry(1, Duration::from_millis(10));
    assert!(other.lock(resource.as_str(), Duration::from_secs(2)).await.is_err());
    manager.unlock(&lock).await;
    let again = other.lock(resource.as_str(), Duration::from_secs(2)).await.expect("free after unlock");
    other.unlock(&again).await;
}
