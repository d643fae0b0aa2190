//! Crash failover: a holder dies without releasing → time until a waiting participant in this
//! process leads. The holder is a child process (this executable in its hidden `__hold` mode),
//! killed with SIGKILL; memory:// cannot cross processes, so there the holder's `Election` and
//! store handle are dropped in-process without a release. The kill comes at a random moment
//! within one lease after the survivor first looked, so that it falls anywhere in the holder's
//! renew cycle.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use leader::layer::Op;
use leader::{Election, ElectionOptions, Error, LeaseStore, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{bound, lead, next_acquired, participant, wait_for_calls, SETTLE};
use crate::stats::{ms, Summary};

/// The hidden first argument of the holder mode.
pub const HOLD_MODE: &str = "__hold";
/// What the holder prints on stdout, followed by its fencing token, once it leads.
pub const HOLDING: &str = "HOLDING";

/// How the holder is made to die.
#[derive(Debug, Clone)]
pub enum Crash {
    /// A child process running `exe __hold ...`, SIGKILLed.
    Process {
        /// The executable (the bench binary).
        exe: PathBuf,
        /// The store URL the child connects to.
        url: String,
    },
    /// An `Election` in this process on a clone of the store handle, dropped without release.
    InProcess,
}

/// Crash-failover times.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CrashReport {
    /// `process (SIGKILL)` or `in-process (drop without release)`.
    pub mode: String,
    /// The lease duration the holder used, in milliseconds.
    pub lease_ms: f64,
    /// Time from the kill to the parent's participant's `Acquired`.
    pub summary: Summary,
    /// Every run, in milliseconds.
    pub samples_ms: Vec<f64>,
}

/// `runs` crashes, each on a fresh election.
pub async fn run(
    store: &Arc<dyn LeaseStore>,
    run_id: &str,
    lease: Duration,
    runs: usize,
    crash: &Crash,
) -> Result<CrashReport> {
    let bound = bound(lease);
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let name = format!("bench-{run_id}-crash-{run}");
        let mut holder = match crash {
            Crash::Process { exe, url } => Holder::Child(spawn_holder(exe, url, &name, lease, bound).await?),
            Crash::InProcess => {
                let e = Election::new(store.clone(), &name, "bench-holder", ElectionOptions::from_lease(lease))?;
                e.start().await?;
                lead(&e, bound, "crash: in-process holder").await?;
                Holder::Local(Some(e))
            }
        };
        let (follower, probe) = participant(store, &name, "bench-survivor", lease, true)?;
        let mut changes = follower.changes();
        follower.start().await?;
        wait_for_calls(&probe, Op::TryAcquire, 1, bound, "crash: survivor's first attempt").await?;
        // Die at a random moment of the holder's renew cycle (renews come every lease/3), not
        // always just after it acquired, which would always leave a full lease to wait out.
        tokio::time::sleep(SETTLE + lease.mul_f64(fastrand::f64())).await;

        let start = Instant::now();
        holder.kill()?;
        let acquired = next_acquired(&mut changes, bound, "crash: survivor").await;
        holder.reap().await;
        follower.stop().await?;
        samples.push(acquired?.saturating_duration_since(start));
    }
    let mode = match crash {
        Crash::Process { .. } => "process (SIGKILL)",
        Crash::InProcess => "in-process (drop without release)",
    };
    Ok(CrashReport {
        mode: mode.to_owned(),
        lease_ms: ms(lease),
        summary: Summary::of(&samples),
        samples_ms: samples.into_iter().map(ms).collect(),
    })
}

enum Holder {
    Child(Child),
    Local(Option<Election>),
}

impl Holder {
    fn kill(&mut self) -> Result<()> {
        match self {
            // SIGKILL on Unix: no destructor, no release, no goodbye to the store.
            Holder::Child(child) => child
                .start_kill()
                .map_err(|e| Error::backend(format!("could not kill the holder process: {e}")).with_source(e)),
            // The last handle: the background task stops, the lease stays in the store.
            Holder::Local(e) => {
                drop(e.take());
                Ok(())
            }
        }
    }

    async fn reap(&mut self) {
        if let Holder::Child(child) = self {
            let _ = child.wait().await;
        }
    }
}

/// Starts `exe __hold` and waits for its `HOLDING <token>` line.
async fn spawn_holder(exe: &PathBuf, url: &str, election: &str, lease: Duration, bound: Duration) -> Result<Child> {
    let mut child = Command::new(exe)
        .arg(HOLD_MODE)
        .args(["--store", url, "--election", election, "--lease"])
        .arg(humantime::format_duration(lease).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::backend(format!("could not start the holder {}: {e}", exe.display())).with_source(e))?;
    let stdout = child.stdout.take().ok_or_else(|| Error::backend("the holder's stdout is not piped"))?;
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Some(line) =
            lines.next_line().await.map_err(|e| Error::backend(format!("reading the holder: {e}")))?
        {
            if line.starts_with(HOLDING) {
                return Ok(());
            }
        }
        Err(Error::backend(format!("the holder {} exited before it led {election:?}", exe.display())))
    };
    match tokio::time::timeout(bound, wait).await {
        Ok(Ok(())) => Ok(child),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::timeout(format!(
            "the holder did not lead {election:?} within {}",
            humantime::format_duration(bound)
        ))),
    }
}

/// The hidden holder mode (`leader-bench __hold --store URL --election E --lease D`): lead
/// `election`, print `HOLDING <token>`, and keep renewing until killed. If the bench that started
/// it goes away (its stdin closes), release and exit, so that no orphan holds a lease.
pub async fn hold(url: &str, election: &str, lease: Duration) -> Result<()> {
    let store = leader::connect(url).await?;
    let e = Election::new(
        store,
        election,
        &format!("bench-holder-{}", std::process::id()),
        ElectionOptions::from_lease(lease),
    )?;
    e.start().await?;
    let leadership = e.wait_for_leadership().await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("{HOLDING} {}\n", leadership.token()).as_bytes())
        .await
        .map_err(|err| Error::backend(format!("writing to stdout: {err}")))?;
    out.flush().await.map_err(|err| Error::backend(format!("writing to stdout: {err}")))?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    e.stop().await
}
