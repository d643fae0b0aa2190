//! Three processes elect a leader through a directory.
//!
//! `cargo run --example quickstart`
//!
//! The example starts three copies of itself (`quickstart participant DIR NAME`), each an
//! `Election` over an `FsStore` on the same temporary directory with a 3 s lease. Each prints every
//! leadership change it sees. Whoever leads works for a second, then steps down with `stop()` and
//! exits; a follower takes over at once (the holder's FIFO wakes it when the lease is released), so
//! the three lead in turn within a few seconds.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use futures::StreamExt;
use leader::{ChangeKind, Election, ElectionOptions, LeadershipChange};

const ELECTION: &str = "quickstart";
const LEASE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, dir, name] = &args[..] {
        if role == "participant" {
            return participant(dir, name);
        }
    }
    coordinator()
}

/// Starts three participants and waits for them.
fn coordinator() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("leader-quickstart-{}", std::process::id()));
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program to start the participants: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("lease directory: {}", dir.display());
    let start = Instant::now();
    let mut children = Vec::new();
    for name in ["alpha", "bravo", "charlie"] {
        match Command::new(&exe).arg("participant").arg(&dir).arg(name).spawn() {
            Ok(child) => children.push((name, child)),
            Err(e) => {
                eprintln!("cannot start participant {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
        // Stagger the start so the first leader is usually alpha.
        std::thread::sleep(Duration::from_millis(150));
    }
    let mut ok = true;
    for (name, mut child) in children {
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("participant {name} failed: {status}");
                ok = false;
            }
            Err(e) => {
                eprintln!("participant {name}: {e}");
                ok = false;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("all three led in turn; done in {:.1} s", start.elapsed().as_secs_f64());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn participant(dir: &str, name: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[{name}] cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(campaign(dir, name)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[{name}] {e}");
            ExitCode::FAILURE
        }
    }
}

/// Campaigns until this participant has led once, then steps down.
async fn campaign(dir: &str, name: &str) -> leader::Result<()> {
    let store = leader::connect(&format!("file://{dir}")).await?;
    let election =
        Election::builder(store, ELECTION).participant_id(name).options(ElectionOptions::from_lease(LEASE)).build()?;
    let mut changes = election.changes();
    election.start().await?;
    let give_up = tokio::time::sleep(Duration::from_secs(9));
    tokio::pin!(give_up);
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            _ = &mut give_up => return Err(leader::Error::timeout("did not lead within 9 s")),
        };
        let Some(change) = change else { return Ok(()) };
        print_change(name, &change);
        if change.kind == ChangeKind::Acquired {
            println!(
                "[{name}] leading with fencing token {}; working for 1 s",
                change.current.as_ref().map_or(0, |l| l.token.get())
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("[{name}] stepping down");
            election.stop().await?;
            // The Lost event of our own stop.
            while let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(100), changes.next()).await {
                print_change(name, &change);
            }
            return Ok(());
        }
    }
}

fn print_change(name: &str, change: &LeadershipChange) {
    let holder = change
        .current
        .as_ref()
        .map_or_else(|| "nobody".to_owned(), |l| format!("{} (token {})", l.participant_id, l.token));
    println!("[{name}] {:?}: leader is {holder}; reason {:?}", change.kind, change.reason);
}
