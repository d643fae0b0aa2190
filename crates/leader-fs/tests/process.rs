//! Holders in other processes: this test binary re-executes itself as the holder
//! (`child_holder`, driven by environment variables), then kills or stops it (SIGKILL, SIGSTOP,
//! SIGCONT through `kill(1)`), also while it is inside a critical section of the store (a test
//! hook stops the child there).
//!
//! `LEADER_FS_TAKEOVER_RUNS=20` makes `takeover_times` measure over 20 runs (default 3).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use leader_core::{Acquire, AcquireRequest, ChangeKind, Election, ElectionOptions, LeaseStore, Metadata, Result};
use leader_fs::hooks::Point;
use leader_fs::FsStore;

const ENV_DIR: &str = "LEADER_FS_TEST_CHILD_DIR";
const ENV_ELECTION: &str = "LEADER_FS_TEST_CHILD_ELECTION";
const ENV_MODE: &str = "LEADER_FS_TEST_CHILD_MODE";
/// `claimed` or `rewritten`: the child stops itself (SIGSTOP) at that hook point.
const ENV_PAUSE: &str = "LEADER_FS_TEST_CHILD_PAUSE";

const LEASE: Duration = Duration::from_secs(2);

fn options() -> ElectionOptions {
    ElectionOptions::from_lease(LEASE)
}

/// The hook point the child stops at, and whether it may stop now.
static PAUSE_AT: OnceLock<Point> = OnceLock::new();
static PAUSE_ARMED: AtomicBool = AtomicBool::new(false);

fn pause_hook(point: Point) {
    if PAUSE_AT.get() == Some(&point) && PAUSE_ARMED.swap(false, Ordering::SeqCst) {
        // Wait here, inside the store's critical section, until the parent has stopped this
        // process (SIGSTOP), taken over, created the release file and resumed it (SIGCONT).
        // (Stopping itself with kill(1) would be asynchronous: the stop could land later.)
        println!("PAUSING at {point:?}");
        let release = release_file(&std::env::var(ENV_DIR).unwrap_or_default());
        while !release.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("RESUMED at {point:?}");
    }
}

/// The file whose creation lets a paused child out of its hook.
fn release_file(dir: &str) -> std::path::PathBuf {
    std::path::Path::new(dir).join("release-paused-child")
}

/// Not a test of its own: the body of the child process. Without the variables it does nothing.
#[test]
fn child_holder() {
    let (Ok(dir), Ok(election), Ok(mode)) =
        (std::env::var(ENV_DIR), std::env::var(ENV_ELECTION), std::env::var(ENV_MODE))
    else {
        return;
    };
    match std::env::var(ENV_PAUSE).as_deref() {
        Ok("claimed") => {
            let _ = PAUSE_AT.set(Point::Claimed);
            PAUSE_ARMED.store(true, Ordering::SeqCst);
        }
        Ok("rewritten") => {
            let _ = PAUSE_AT.set(Point::Rewritten); // armed once it leads
        }
        _ => {}
    }
    assert!(leader_fs::hooks::install(pause_hook));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(FsStore::open(&dir).expect("store"));
        match mode.as_str() {
            // A real participant: renews in the background; reports every change of its own.
            "election" => {
                let e = Election::builder(store.clone(), &election)
                    .participant_id("child")
                    .options(options())
                    .build()
                    .expect("election");
                let mut changes = e.changes();
                e.start().await.expect("start");
                let leadership = e.wait_for_leadership().await.expect("lead");
                println!("ACQUIRED {}", leadership.token());
                PAUSE_ARMED.store(PAUSE_AT.get().is_some(), Ordering::SeqCst);
                while let Some(change) = changes.next().await {
                    match change.kind {
                        ChangeKind::Acquired => println!("EVENT Acquired {:?}", change.token()),
                        ChangeKind::Lost => {
                            println!("EVENT Lost {:?}", change.reason);
                            // Its old lease is refused by the store too.
                            let renewed = store.renew(&leadership.info(), LEASE).await;
                            println!("RENEW_OLD {}", if matches!(renewed, Ok(None)) { "refused" } else { "accepted" });
                        }
                        ChangeKind::LeaderChanged => {}
                    }
                    if e.is_leader() && !leadership.is_valid() {
                        println!("LEADS_AGAIN");
                    }
                }
            }
            // One acquire with a 2 s lease and no renewals.
            _ => {
                let req = AcquireRequest {
                    election,
                    participant_id: "child".into(),
                    instance_id: format!("child-{}", std::process::id()),
                    ttl: LEASE,
                    metadata: Metadata::new(),
                };
                match store.try_acquire(&req).await.expect("acquire") {
                    Acquire::Acquired(l) => println!("ACQUIRED {}", l.token),
                    Acquire::Held(h) => println!("HELD {:?}", h.map(|h| h.token.get())),
                    Acquire::Refused(r) => println!("REFUSED {r:?}"),
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    });
}

/// The holder process, killed when the test ends however it ends; its stdout lines are kept.
struct Holder {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    dir: std::path::PathBuf,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Holder {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines printed so far (what the test harness prints before them removed).
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Waits until a line starting with `prefix` has been printed; returns it.
    fn wait_line(&self, prefix: &str, bound: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Some(l) = self.lines().into_iter().find(|l| l.starts_with(prefix)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(sig).arg(self.pid().to_string()).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// Lets it out of its pause hook (if it is in one) and resumes it (SIGCONT).
    fn resume(&self) {
        std::fs::write(release_file(&self.dir.to_string_lossy()), b"").expect("release file");
        self.signal("-CONT");
    }

    /// Whether the process is stopped (`ps` state `T`).
    fn stopped(&self) -> bool {
        Command::new("ps")
            .args(["-o", "stat=", "-p"])
            .arg(self.pid().to_string())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim_start().starts_with('T'))
    }

    /// Waits until the process is stopped.
    fn wait_stopped(&self, bound: Duration) {
        let start = Instant::now();
        while !self.stopped() {
            assert!(start.elapsed() < bound, "the child did not stop within {bound:?}: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts the holder process.
fn spawn_child(dir: &std::path::Path, election: &str, mode: &str, pause: Option<&str>) -> Holder {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "child_holder", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_ELECTION, election)
        .env(ENV_MODE, mode)
        .env_remove(ENV_PAUSE)
        .stdout(Stdio::piped());
    if let Some(p) = pause {
        cmd.env(ENV_PAUSE, p);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
            // The harness prints "test child_holder ... " before the child's first line.
            let line = line.strip_prefix("test child_holder ... ").map(str::to_owned).unwrap_or(line);
            sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        }
    });
    Holder { child, lines, dir: dir.to_owned() }
}

/// Starts the holder and waits until it says it leads; returns it with its token.
fn spawn_holder(dir: &std::path::Path, election: &str, mode: &str, pause: Option<&str>) -> (Holder, u64) {
    let holder = spawn_child(dir, election, mode, pause);
    let line = holder.wait_line("ACQUIRED ", Duration::from_secs(20));
    let token = line.and_then(|l| l["ACQUIRED ".len()..].trim().parse().ok());
    let Some(token) = token else { panic!("the child did not acquire: {:?}", holder.lines()) };
    (holder, token)
}

async fn follower(dir: &std::path::Path, election: &str) -> Result<(Arc<FsStore>, Election)> {
    let store = Arc::new(FsStore::open(dir)?);
    let e = Election::builder(store.clone(), election).participant_id("parent").options(options()).build()?;
    e.start().await?;
    Ok((store, e))
}

async fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// The bound the issue sets for a takeover from a stopped holder (lease + retry), plus slack for
/// a busy machine.
fn stopped_takeover_bound() -> Duration {
    options().lease_duration + options().retry_interval + Duration::from_secs(1)
}

/// After SIGCONT: the old holder reports `Lost`, its old lease is refused by the store, and it
/// does not lead again while `follower` keeps leading with `token`.
async fn resumed_holder_stays_out(child: &Holder, follower: &Election, token: u64) {
    child.resume();
    let lost = child.wait_line("EVENT Lost", Duration::from_secs(5));
    assert!(lost.is_some(), "the resumed holder did not report Lost: {:?}", child.lines());
    let renew = child.wait_line("RENEW_OLD", Duration::from_secs(5));
    assert_eq!(renew.as_deref(), Some("RENEW_OLD refused"), "{:?}", child.lines());
    // Watch for two leases: it campaigns as a follower and must not lead.
    tokio::time::sleep(LEASE * 2).await;
    let lines = child.lines();
    let after_loss = lines.iter().skip_while(|l| !l.starts_with("EVENT Lost"));
    assert!(
        !after_loss.clone().any(|l| l.starts_with("EVENT Acquired") || l.starts_with("LEADS_AGAIN")),
        "the old holder led again: {lines:?}"
    );
    assert_eq!(follower.leadership().map(|l| l.token().get()), Some(token), "the follower kept its tenure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_process_is_replaced_within_2s() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "crash";
    let (mut child, token) = spawn_holder(dir.path(), election, "election", None);
    let (store, follower) = follower(dir.path(), election).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_leader());
    assert_eq!(store.current(election).await?.map(|l| l.participant_id), Some("child".into()));

    child.child.kill().expect("SIGKILL"); // the kernel frees its lock and closes its FIFO
    let _ = child.child.wait();
    let took = wait_until(Duration::from_secs(2), || follower.is_leader()).await;
    eprintln!("SIGKILL of the holder -> follower leads in {took:?} (lease {LEASE:?})");
    assert!(took.is_some(), "the follower did not lead within 2 s of the crash");
    assert_eq!(follower.leadership().map(|l| l.token().get()), Some(token + 1));
    follower.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_loses_its_lease_at_expiry_and_stays_out_when_resumed() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "paused";
    let (child, token) = spawn_holder(dir.path(), election, "election", None);
    let (store, follower) = follower(dir.path(), election).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_leader());

    let stopped = Instant::now();
    child.signal("-STOP");
    child.wait_stopped(Duration::from_secs(5));
    let took = wait_until(stopped_takeover_bound(), || follower.is_leader()).await.map(|_| stopped.elapsed());
    eprintln!("SIGSTOP of the holder -> follower leads in {took:?} (lease {LEASE:?})");
    assert!(
        took.is_some(),
        "the follower did not take over from the stopped holder within {:?}",
        stopped_takeover_bound()
    );
    let new = follower.leadership().map(|l| l.token().get()).expect("token");
    assert!(new > token, "successor token {new} is not greater than {token}");
    assert!(child.stopped(), "the holder was still stopped when the follower took over");
    assert_eq!(store.current(election).await?.map(|l| l.participant_id), Some("parent".into()));

    resumed_holder_stays_out(&child, &follower, new).await;
    follower.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stopped_inside_its_renew_section_loses_its_lease_at_expiry() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "paused-renew";
    let (child, token) = spawn_holder(dir.path(), election, "election", Some("rewritten"));
    let (_store, follower) = follower(dir.path(), election).await?;
    // Its next renew writes its record and stops the process before it looks for newer claims.
    assert!(child.wait_line("PAUSING at Rewritten", Duration::from_secs(5)).is_some(), "{:?}", child.lines());
    child.signal("-STOP");
    child.wait_stopped(Duration::from_secs(5));
    let took = wait_until(stopped_takeover_bound(), || follower.is_leader()).await;
    eprintln!("holder stopped inside its renew -> follower leads in {took:?} (lease {LEASE:?})");
    assert!(took.is_some(), "the follower did not take over within {:?}", stopped_takeover_bound());
    let new = follower.leadership().map(|l| l.token().get()).expect("token");
    assert!(new > token, "successor token {new} is not greater than {token}");

    resumed_holder_stays_out(&child, &follower, new).await;
    assert!(child.lines().iter().any(|l| l == "RESUMED at Rewritten"));
    follower.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquirer_stopped_inside_its_claim_section_does_not_block_the_election() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let election = "paused-claim";
    // The child links its claim (token 1, locked) and stops before its acquire returns.
    let child = spawn_child(dir.path(), election, "raw", Some("claimed"));
    assert!(child.wait_line("PAUSING at Claimed", Duration::from_secs(20)).is_some(), "{:?}", child.lines());
    child.signal("-STOP");
    child.wait_stopped(Duration::from_secs(5));
    let stopped = Instant::now();
    let (store, follower) = follower(dir.path(), election).await?;
    let h = store.current(election).await?.expect("the stopped claimant is shown while its lease lasts");
    assert_eq!((h.participant_id.as_str(), h.token.get()), ("child", 1));

    let took = wait_until(stopped_takeover_bound(), || follower.is_leader()).await;
    eprintln!(
        "acquirer stopped inside its claim -> follower leads {:?} after the stop",
        took.map(|_| stopped.elapsed())
    );
    assert!(took.is_some(), "the follower did not take over within {:?}", stopped_takeover_bound());
    assert_eq!(follower.leadership().map(|l| l.token().get()), Some(2));

    // Resumed, the child finds its claim superseded: its acquire answers Held, never Acquired.
    child.resume();
    let answer = child.wait_line("HELD", Duration::from_secs(5));
    assert_eq!(answer.as_deref(), Some("HELD Some(2)"), "{:?}", child.lines());
    assert!(!child.lines().iter().any(|l| l.starts_with("ACQUIRED")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(follower.leadership().map(|l| l.token().get()), Some(2), "the follower kept its tenure");
    follower.stop().await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Takeover times, SIGSTOP and SIGKILL of a renewing holder (2 s lease), over
/// `LEADER_FS_TAKEOVER_RUNS` runs (default 3). Prints p50/max; asserts the generous bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_times() -> Result<()> {
    let runs: usize = std::env::var("LEADER_FS_TAKEOVER_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut stops, mut kills) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for kill in [false, true] {
            let election = format!("timing-{run}-{}", if kill { "kill" } else { "stop" });
            let (mut child, token) = spawn_holder(dir.path(), &election, "election", None);
            let (_store, follower) = follower(dir.path(), &election).await?;
            // Let the follower settle into its wait, at a varying phase of the renew cycle.
            tokio::time::sleep(Duration::from_millis(300 + 97 * run as u64 % 600)).await;
            assert!(!follower.is_leader());
            let start = Instant::now();
            if kill {
                child.child.kill().expect("SIGKILL");
                let _ = child.child.wait();
            } else {
                child.signal("-STOP");
            }
            let bound = if kill { Duration::from_secs(1) } else { stopped_takeover_bound() };
            let took = wait_until(bound, || follower.is_leader()).await.map(|_| start.elapsed());
            let Some(took) = took else { panic!("run {run} (kill: {kill}): no takeover within {bound:?}") };
            assert!(follower.leadership().is_some_and(|l| l.token().get() > token));
            if kill {
                kills.push(took)
            } else {
                stops.push(took)
            }
            follower.stop().await?;
            drop(child);
        }
    }
    stops.sort();
    kills.sort();
    eprintln!(
        "takeover over {runs} runs, lease {LEASE:?}: SIGSTOP p50 {:?} max {:?}; SIGKILL p50 {:?} max {:?}",
        percentile(&stops, 0.5),
        stops.last().copied().unwrap_or_default(),
        percentile(&kills, 0.5),
        kills.last().copied().unwrap_or_default()
    );
    Ok(())
}
