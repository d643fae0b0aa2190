//! The watchdog of `leader run`: a separate small process that holds the local deadline and kills
//! the command's process group when the deadline passes unrefreshed, or when `leader run` dies
//! (its end of the pipe closes). It covers what `leader run` cannot do itself: being stopped
//! (SIGSTOP), starved, or killed with SIGKILL.
//!
//! Protocol on its stdin, one line each: a number of milliseconds until the deadline (sent on
//! every renewal), or `STOP` (the command is over; exit without killing anything).

use std::io::BufRead;
use std::process::{ExitCode, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

/// Arguments of the hidden `leader __watchdog` mode.
#[derive(Args)]
pub(crate) struct WatchdogArgs {
    /// Process group of the command.
    #[arg(long)]
    pgid: i32,
    /// Time between SIGTERM and SIGKILL, in milliseconds.
    #[arg(long)]
    grace_ms: u64,
}

enum Msg {
    Deadline(Duration),
    Stop,
}

/// Runs in the watchdog process.
pub(crate) fn main(args: WatchdogArgs) -> ExitCode {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let msg = match line.trim() {
                "STOP" => Msg::Stop,
                ms => match ms.parse::<u64>() {
                    Ok(ms) => Msg::Deadline(Duration::from_millis(ms)),
                    Err(_) => continue,
                },
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
        // EOF: `leader run` is gone; dropping tx tells the main loop.
    });
    // Until the first refresh arrives, a short default: `leader run` sends one at once.
    let mut deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Msg::Deadline(left)) => deadline = Instant::now() + left,
            Ok(Msg::Stop) => return ExitCode::SUCCESS,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    terminate_group(args.pgid, Duration::from_millis(args.grace_ms));
    ExitCode::SUCCESS
}

/// SIGTERM to the group, SIGKILL after `grace` if any member is left.
fn terminate_group(pgid: i32, grace: Duration) {
    let group = Pid::from_raw(pgid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return; // nothing left
    }
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if killpg(group, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// `leader run`'s side: the spawned watchdog and the pipe to it.
pub(crate) struct Watchdog {
    child: tokio::process::Child,
}

impl Watchdog {
    /// Starts the watchdog for the command's process group `pgid`.
    pub(crate) fn spawn(pgid: u32, grace: Duration) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .arg("__watchdog")
            .arg("--pgid")
            .arg(pgid.to_string())
            .arg("--grace-ms")
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C meant for `leader run` must not stop the watchdog.
            .process_group(0)
            .spawn()?;
        Ok(Watchdog { child })
    }

    /// Moves the deadline to `left` from now.
    pub(crate) async fn refresh(&mut self, left: Duration) {
        self.send(&format!("{}\n", left.as_millis())).await;
    }

    /// The command is over: the watchdog exits without killing.
    pub(crate) async fn stop(mut self) {
        self.send("STOP\n").await;
        let _ = self.child.wait().await;
    }

    async fn send(&mut self, line: &str) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

/// SIGTERM to the command's group now, SIGKILL after `grace`, from `leader run` itself.
pub(crate) async fn stop_group(
    child: &mut tokio::process::Child,
    pgid: u32,
    grace: Duration,
) -> std::process::ExitStatus {
    let group = Pid::from_raw(pgid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    };
    // Whatever is left of the group (the command's own children too) goes now.
    let _ = killpg(group, Signal::SIGKILL);
    match status {
        Some(s) => s,
        None => child.wait().await.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(9)),
    }
}
