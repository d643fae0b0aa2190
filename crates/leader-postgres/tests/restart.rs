//! Server restarts and outages. These stop the server, so they never touch the shared test server
//! (`LEADER_TEST_POSTGRES_URL`, where the conformance suite and the other tests run at the same
//! time, possibly from other test binaries under a parallel runner): they start a second
//! throwaway cluster of their own on port 55433 with the same script (`LEADER_POSTGRES_PORT=55433
//! scripts/servers up postgres`), and run one at a time inside this binary. They run when
//! `LEADER_TEST_POSTGRES_URL` is set (the signal that PostgreSQL tests are wanted here), and skip
//! otherwise like every other test of the crate.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{request, unique, url};
use leader_core::{Acquire, Election, ElectionOptions, Leadership, LeaseStore};
use leader_postgres::PostgresStore;
use tokio::time::Instant;

const PORT: &str = "55433";

/// One disruptive test at a time: they share the second server, which each test also starts
/// (`own_server`) while holding this lock.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Runs `scripts/servers ARGS` for the second server, on a blocking thread: the elections under
/// test must keep running (renewing, stepping down) while the script waits for the server.
async fn servers(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = args.join(" ");
    let status = tokio::task::spawn_blocking(move || {
        Command::new(repo_root().join("scripts").join("servers")).args(&args).env("LEADER_POSTGRES_PORT", PORT).status()
    })
    .await
    .expect("the script's thread")
    .expect("scripts/servers runs");
    assert!(status.success(), "scripts/servers {shown} failed ({status})");
}

/// The second server's URL, started if needed; `None` (skip) when PostgreSQL tests are not wanted.
async fn own_server() -> Option<String> {
    url()?;
    servers(&["up", "postgres"]).await;
    Some(format!("postgres://postgres@127.0.0.1:{PORT}/postgres"))
}

/// Samples both participants every few milliseconds and remembers whether both ever led at once.
fn watch_exclusion(a: Election, b: Election) -> (Arc<AtomicBool>, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let both = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (both2, stop2) = (both.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            if a.is_leader() && b.is_leader() {
                both2.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (both, stop, task)
}

/// The first of `els` seen leading within `within`, with its tenure.
async fn wait_for_a_leader(els: &[&Election], within: Duration) -> (usize, Leadership) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = els.iter().enumerate().find_map(|(i, e)| e.leadership().map(|l| (i, l))) {
            return found;
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_one_leader_and_growing_tokens() {
    // The lock first: `scripts/servers up` of one test must not run while the other test stops or
    // starts the same server (plain `cargo test` runs both at once in this process).
    let _serial = SERIAL.lock().await;
    let Some(url) = own_server().await else { return };
    let e = unique("restart-");
    let options = ElectionOptions::from_lease(Duration::from_secs(3));
    let a = Election::new(Arc::new(PostgresStore::from_url(&url).unwrap()), &e, "a", options.clone()).unwrap();
    let b = Election::new(Arc::new(PostgresStore::from_url(&url).unwrap()), &e, "b", options).unwrap();
    a.start().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap().token();
    b.start().await.unwrap();
    let (both, stop, monitor) = watch_exclusion(a.clone(), b.clone());

    servers(&["restart", "postgres"]).await;

    // Someone leads again (the old leader's renew may simply succeed on the restarted server).
    let (i, tenure) = wait_for_a_leader(&[&a, &b], Duration::from_secs(20)).await;
    let (leader, follower) = if i == 0 { (&a, &b) } else { (&b, &a) };
    let token = tenure.token();
    assert!(token >= first, "token went back across the restart: {token} < {first}");
    // A new tenure after the restart takes a greater token than every one before it.
    leader.stop().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), follower.wait_for_leadership()).await.unwrap().unwrap();
    assert!(next.token() > token, "token {} after {token}", next.token());
    follower.stop().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    monitor.await.unwrap();
    assert!(!both.load(Ordering::Relaxed), "two leaders at once across the restart");

    // The store's own calls work again, and tokens are durable: a fresh store sees them.
    let fresh = PostgresStore::from_url(&url).unwrap();
    match fresh.try_acquire(&request(&e, "c", "ic", Duration::from_secs(3))).await.unwrap() {
        Acquire::Acquired(l) => assert!(l.token > next.token()),
        other => panic!("released election still held: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_outage_steps_the_leader_down_and_a_leader_returns() {
    // The lock first: `scripts/servers up` of one test must not run while the other test stops or
    // starts the same server (plain `cargo test` runs both at once in this process).
    let _serial = SERIAL.lock().await;
    let Some(url) = own_server().await else { return };
    let e = unique("outage-");
    let options = ElectionOptions::from_lease(Duration::from_secs(3));
    let a = Election::new(Arc::new(PostgresStore::from_url(&url).unwrap()), &e, "a", options.clone()).unwrap();
    let b = Election::new(Arc::new(PostgresStore::from_url(&url).unwrap()), &e, "b", options.clone()).unwrap();
    a.start().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap().token();
    b.start().await.unwrap();
    let (both, stop, monitor) = watch_exclusion(a.clone(), b.clone());

    servers(&["down", "postgres"]).await;
    let down_at = Instant::now();
    // The leader steps down by its local deadline (renew_deadline after its last successful renew).
    while a.is_leader() {
        assert!(down_at.elapsed() < options.renew_deadline + Duration::from_secs(1), "leader kept leading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Hold the outage past a whole lease, so the old lease is surely gone from the store's view.
    tokio::time::sleep(options.lease_duration).await;
    servers(&["up", "postgres"]).await;
    let (_, tenure) = wait_for_a_leader(&[&a, &b], Duration::from_secs(20)).await;
    let token = tenure.token();
    assert!(token >= first);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    monitor.await.unwrap();
    assert!(!both.load(Ordering::Relaxed), "two leaders at once across the outage");
}
