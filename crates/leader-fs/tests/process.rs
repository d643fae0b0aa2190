//! Holders in other processes: this test binary re-executes itself as the holder
//! (`child_holder`, driven by environment variables), then kills or stops it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, LeaseStore, Metadata, Result};
use leader_fs::FsStore;

const ENV_DIR: &str = "LEADER_FS_TEST_CHILD_DIR";
const ENV_ELECTION: &str = "LEADER_FS_TEST_CHILD_ELECTION";
const ENV_MODE: &str = "LEADER_FS_TEST_CHILD_MODE";

/// Not a test of its own: the body of the child process. Without the variables it does nothing.
#[test]
fn child_holder() {
    let (Ok(dir), Ok(election), Ok(mode)) =
        (std::env::var(ENV_DIR), std::env::var(ENV_ELECTION), std::env::var(ENV_MODE))
    else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(FsStore::open(&dir).expect("store"));
        // Both the election and the store must live until the process is killed.
        let (token, _keep) = match mode.as_str() {
            // A real participant: renews in the background until killed.
            "election" => {
                let e = Election::builder(store.clone(), &election)
                    .participant_id("child")
                    .options(ElectionOptions::from_lease(Duration::from_secs(3)))
                    .build()
                    .expect("election");
                e.start().await.expect("start");
                (e.wait_for_leadership().await.expect("lead").token(), Some(e))
            }
            // One acquire with a 2 s lease and no renewals: only the reaper ends it.
            _ => {
                let req = AcquireRequest {
                    election,
                    participant_id: "child".into(),
                    instance_id: format!("child-{}", std::process::id()),
                    ttl: Duration::from_secs(2),
                    metadata: Metadata::new(),
                };
                let token = match store.try_acquire(&req).await.expect("acquire") {
                    Acquire::Acquired(l) => l.token,
                    other => panic!("child could not acquire: {other:?}"),
                };
                (token, None)
            }
        };
        println!("ACQUIRED {token}");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// The holder process, killed when the test ends however it ends.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the holder and waits until it says it leads.
fn spawn_holder(dir: &std::path::Path, election: &str, mode: &str) -> Holder {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_holder", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_ELECTION, election)
        .env(ENV_MODE, mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
            if line.contains("ACQUIRED ") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(_) => Holder(child),
        Err(_) => {
            let _ = child.kill();
            panic!("the child did not acquire");
        }
    }
}

fn signal(child: &Holder, sig: &str) {
    let ok = Command::new("kill").arg(sig).arg(child.0.id().to_string()).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {}", child.0.id());
}

async fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_process_is_replaced_within_2s() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "crash";
    let mut child = spawn_holder(dir.path(), election, "election");

    let store = Arc::new(FsStore::open(dir.path())?);
    let follower = Election::builder(store.clone(), election)
        .participant_id("parent")
        .options(ElectionOptions::from_lease(Duration::from_secs(3)))
        .build()?;
    follower.start().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_leader());
    assert_eq!(store.current(election).await?.map(|l| l.participant_id), Some("child".into()));

    child.0.kill().expect("SIGKILL"); // the kernel closes its lock file
    let _ = child.0.wait();
    let took = wait_until(Duration::from_secs(2), || follower.is_leader()).await;
    eprintln!("SIGKILL of the holder -> follower leads in {took:?} (lease 3 s)");
    assert!(took.is_some(), "the follower did not lead within 2 s of the crash");
    assert_eq!(follower.leadership().map(|l| l.token().get()), Some(2));
    follower.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_keeps_its_lease_until_it_resumes() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "paused";
    let child = spawn_holder(dir.path(), election, "raw");
    signal(&child, "-STOP");

    let store = Arc::new(FsStore::open(dir.path())?);
    let follower = Election::builder(store.clone(), election)
        .participant_id("parent")
        .options(ElectionOptions::from_lease(Duration::from_secs(2)))
        .build()?;
    follower.start().await?;
    // Well past the child's 2 s lease: it is overdue but still holds its lock, so nobody may
    // take over (safe, not live).
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(!follower.is_leader(), "took over from a stopped holder that still holds its lock");
    let holder = store.current(election).await?.expect("the stopped holder is still shown");
    assert_eq!(holder.participant_id, "child");
    assert_eq!(holder.expires_in, None, "overdue: nobody can say when it lets go");

    // Resumed, its reaper finds the lease past due and frees the lock: the follower is pushed.
    let resumed = Instant::now();
    signal(&child, "-CONT");
    let took = wait_until(Duration::from_secs(2), || follower.is_leader()).await;
    eprintln!("SIGCONT of the overdue holder -> follower leads in {:?}", took.map(|_| resumed.elapsed()));
    drop(child);
    assert!(took.is_some(), "the follower did not lead within 2 s of the holder resuming");
    follower.stop().await?;
    Ok(())
}
