//! The watchdog of `leader run`: a small separate process (this same binary, `leader __watchdog`)
//! that holds the command's local deadline and kills the command's process group when the deadline
//! passes unrefreshed, or when `leader run` dies (its end of the pipe closes). It covers what
//! `leader run` cannot do itself: being stopped (SIGSTOP), starved, or killed with SIGKILL; the
//! parent-death signal covers only the command itself, not the processes it started.
//!
//! `leader run` starts it before anything else, from `/proc/self/exe` on Linux (the running
//! binary's own file, even if the path it was started from has since been replaced or deleted by
//! an upgrade), and does not start the command unless the watchdog answered.
//!
//! Protocol. The watchdog writes `READY` on its stdout once it runs. On its stdin, one line each:
//! - `GROUP <pgid>`: the command's process group, sent right after the command was spawned;
//! - `DEADLINE <ms>`: the local deadline as an instant of [`now_ms`]'s clock, which both processes
//!   read (so a line delivered late does not move the deadline);
//! - `STOP`: the command's group is gone; exit without killing anything.
//!
//! End of input (`leader run` is gone), or the deadline plus a margin passed, once it knows the
//! group: SIGTERM to the group, SIGKILL after the grace, exit (with [`EXIT_DEADLINE`] for the
//! deadline). The margin lets `leader run` act first when it can; margin + grace is less than
//! lease - renew_deadline, so the group is gone before another process can lead.

use std::io::{BufRead, Write};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{killpg, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The watchdog's exit code when it killed the group because the deadline passed.
pub(crate) const EXIT_DEADLINE: u8 = 124;

/// How long `leader run` waits for the watchdog's `READY` (a loaded 2-core machine is slow to
/// start a process).
const READY_WITHIN: Duration = Duration::from_secs(15);

/// The watchdog looks at the clock at least this often, because its sleeps run on a clock that
/// stops while the host is suspended and the deadline's clock does not.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Milliseconds on the clock `leader run` and its watchdog share: `CLOCK_BOOTTIME` on Linux (it
/// keeps counting while the host is suspended, so a deadline passed during a suspend counts as
/// passed), `CLOCK_MONOTONIC` elsewhere. `u64::MAX` if the clock cannot be read, so that a
/// deadline is then always passed (fail safe: the command is stopped).
pub(crate) fn now_ms() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let id = ClockId::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let id = ClockId::CLOCK_MONOTONIC;
    match clock_gettime(id) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1000).saturating_add(t.tv_nsec() as u64 / 1_000_000),
        Err(_) => u64::MAX,
    }
}

/// Arguments of the hidden `leader __watchdog` mode.
#[derive(Args)]
pub(crate) struct WatchdogArgs {
    /// Time between SIGTERM and SIGKILL, in milliseconds.
    #[arg(long)]
    grace_ms: u64,
    /// Time after the deadline before SIGTERM, in milliseconds.
    #[arg(long, default_value_t = 0)]
    margin_ms: u64,
}

enum Msg {
    Group(Pid),
    Deadline(u64),
    Stop,
}

fn parse(line: &str) -> Option<Msg> {
    let mut words = line.split_whitespace();
    let msg = match (words.next()?, words.next()) {
        ("GROUP", Some(n)) => Msg::Group(Pid::from_raw(n.parse().ok().filter(|&p: &i32| p > 1)?)),
        ("DEADLINE", Some(n)) => Msg::Deadline(n.parse().ok()?),
        ("STOP", None) => Msg::Stop,
        _ => return None,
    };
    Some(msg)
}

/// Runs in the watchdog process.
pub(crate) fn main(args: WatchdogArgs) -> ExitCode {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match parse(&line) {
                Some(msg) => {
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
                None => say!("leader watchdog: ignoring {line:?}"),
            }
        }
        // End of input: `leader run` is gone; dropping tx tells the main loop.
    });
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "READY").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    let mut group = None;
    let mut deadline = None;
    let passed = loop {
        let msg = match (group, deadline) {
            (Some(_), Some(d)) => {
                let now = now_ms();
                if now >= d {
                    break true;
                }
                match rx.recv_timeout(Duration::from_millis(d - now).min(LOOK_EVERY)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break false,
                }
            }
            // Nothing to kill yet: wait for the group (or the end).
            _ => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => break false,
            },
        };
        match msg {
            Msg::Group(g) => group = Some(g),
            Msg::Deadline(d) => deadline = Some(d.saturating_add(args.margin_ms)),
            Msg::Stop => return ExitCode::SUCCESS,
        }
    };
    let Some(group) = group else { return ExitCode::SUCCESS };
    if crate::faults::get().watchdog_inert {
        say!("leader watchdog: test fault watchdog-inert: not stopping the command");
    } else {
        terminate_group(group, Duration::from_millis(args.grace_ms));
    }
    if passed {
        ExitCode::from(EXIT_DEADLINE)
    } else {
        ExitCode::SUCCESS
    }
}

/// SIGTERM to the group, SIGKILL after `grace` if any member is left.
fn terminate_group(group: Pid, grace: Duration) {
    if killpg(group, Signal::SIGTERM).is_err() {
        return; // nothing left
    }
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if !group_alive(group) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Whether a process of `group` still runs. Zombies do not count: they run nothing, and they
/// stay until their parent reaps them (an orphan's new parent may take a second to do it).
pub(crate) fn group_alive(group: Pid) -> bool {
    if killpg(group, None).is_err() {
        return false;
    }
    #[cfg(target_os = "linux")]
    if let Ok(entries) = std::fs::read_dir("/proc") {
        return entries.flatten().any(|entry| {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { return false };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let mut fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace();
            let (state, pgrp) = (fields.next(), fields.nth(1));
            pgrp.and_then(|g| g.parse::<i32>().ok()) == Some(group.as_raw()) && state != Some("Z") && state != Some("X")
        });
    }
    true
}

/// `leader run`'s side: the running watchdog and the pipe to it.
pub(crate) struct Watchdog {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    exited: Option<ExitStatus>,
}

impl Watchdog {
    /// Starts the watchdog and waits until it answers. It stops the group `margin` after the
    /// deadline it is given, and SIGKILLs it `grace` later.
    pub(crate) async fn start(grace: Duration, margin: Duration) -> std::io::Result<Self> {
        let exe = executable()?;
        let mut child = tokio::process::Command::new(&exe)
            .arg("__watchdog")
            .arg("--grace-ms")
            .arg(grace.as_millis().to_string())
            .arg("--margin-ms")
            .arg(margin.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own process group: a Ctrl-C meant for `leader run` must not stop the watchdog.
            .process_group(0)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the watchdog {}: {e}", exe.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the watchdog has no pipes"));
        };
        let answer = tokio::time::timeout(READY_WITHIN, BufReader::new(stdout).lines().next_line()).await;
        match answer {
            Ok(Ok(Some(line))) if line == "READY" => Ok(Watchdog { child, stdin, exited: None }),
            answer => {
                let _ = child.start_kill();
                let status = child.wait().await;
                let why = match answer {
                    Err(_) => format!("no answer within {}", humantime::format_duration(READY_WITHIN)),
                    Ok(Ok(Some(line))) => format!("it answered {line:?}"),
                    Ok(Ok(None)) => format!("it exited ({})", status.map_or_else(|e| e.to_string(), |s| s.to_string())),
                    Ok(Err(e)) => e.to_string(),
                };
                Err(std::io::Error::other(format!("the watchdog {} did not start: {why}", exe.display())))
            }
        }
    }

    /// Tells the watchdog the command's process group and deadline.
    pub(crate) async fn group(&mut self, pgid: u32, deadline_ms: u64) -> std::io::Result<()> {
        self.send(&format!("GROUP {pgid}\nDEADLINE {deadline_ms}\n")).await
    }

    /// Moves the deadline.
    pub(crate) async fn deadline(&mut self, deadline_ms: u64) -> std::io::Result<()> {
        self.send(&format!("DEADLINE {deadline_ms}\n")).await
    }

    /// Completes when the watchdog exits (cancel safe); then pending forever.
    pub(crate) async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        if self.exited.is_some() {
            return std::future::pending().await;
        }
        let status = self.child.wait().await?;
        self.exited = Some(status);
        Ok(status)
    }

    /// The command's group is gone: the watchdog exits without killing.
    pub(crate) async fn stop(mut self) {
        if self.exited.is_none() {
            let _ = self.send("STOP\n").await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await
    }
}

/// The executable the watchdog runs from: this very binary.
fn executable() -> std::io::Result<std::path::PathBuf> {
    if crate::faults::get().watchdog_spawn {
        return Ok("/nonexistent/leader-test-fault-watchdog-spawn".into());
    }
    // `/proc/self/exe` opens the file this process runs from even after it was replaced or
    // deleted (a package upgrade); `current_exe()` returns a path, which may then be gone.
    #[cfg(target_os = "linux")]
    return Ok("/proc/self/exe".into());
    #[cfg(not(target_os = "linux"))]
    return std::env::current_exe();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol_and_nothing_else() {
        assert!(matches!(parse("GROUP 4242"), Some(Msg::Group(p)) if p.as_raw() == 4242));
        assert!(matches!(parse("DEADLINE 17"), Some(Msg::Deadline(17))));
        assert!(matches!(parse("STOP"), Some(Msg::Stop)));
        // Never a group that would signal every process (0, -1) or init (1).
        for bad in ["GROUP 0", "GROUP -1", "GROUP 1", "GROUP x", "DEADLINE -3", "STOP now", "", "HELLO"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_shared_clock_moves() {
        let a = now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(now_ms() >= a + 20 && a != u64::MAX);
    }
}
