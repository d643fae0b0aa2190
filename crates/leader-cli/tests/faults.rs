//! Tests of `leader run` exit paths that need a fault: a watchdog that cannot start or never kills
//! (to see the parent-death signal alone), a store that refuses to elect, fails after the acquire
//! or is down. Built only with the `test-faults` feature (`cargo test -p leader-cli --features
//! test-faults`; CI runs with `--all-features`); the faults come from `LEADER_TEST_CLI_FAULTS`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

const FAULTS: &str = "LEADER_TEST_CLI_FAULTS";

#[test]
fn a_watchdog_that_cannot_start_ends_with_125_before_the_command_or_the_campaign() {
    let dir = Dir::new();
    let out = dir
        .leader("a")
        .env(FAULTS, "watchdog-spawn")
        .args(["run", "--store", &dir.store(), "--election", "w", "--lease", "2s", "--", "sh", "-c", "echo ran > ran"])
        .status()
        .expect("run");
    assert_eq!(out.code(), Some(125), "{}", dir.stderr("a"));
    let stderr = dir.stderr("a");
    assert!(stderr.contains("cannot start the watchdog"), "{stderr}");
    assert!(!stderr.contains("leading"), "never led: {stderr}");
    assert_eq!(dir.read("ran"), "", "the command never ran");
    assert!(dir.released("w"));
}

#[test]
fn the_parent_death_signal_alone_kills_the_command_when_leader_is_sigkilled() {
    // The watchdog is made inert, so only the kernel's parent-death signal can end the command;
    // the command's own background process (the watchdog's job) survives, which shows it.
    let dir = Dir::new();
    let a = dir
        .leader("a")
        .env(FAULTS, "watchdog-inert")
        .args(["run", "--store", &dir.store(), "--election", "pd", "--lease", "4s", "--", "sh", "-c"])
        .arg("sleep 1000 & echo $! > bg; echo $$ > cmd.pid; while :; do sleep 0.05; done")
        .spawn()
        .expect("spawn");
    wait_for("the command to run", LIMIT, || dir.pid("cmd.pid") > 0 && dir.pid("bg") > 0);
    let (cmd, bg) = (dir.pid("cmd.pid"), dir.pid("bg"));
    signal(a.id() as i32, Signal::SIGKILL);
    wait_for("the command to die with leader", LIMIT, || !alive(cmd));
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(bg), "the inert watchdog left the rest of the group alone");
    let _ = killpg(Pid::from_raw(cmd), Signal::SIGKILL);
    reap(a);
}

#[test]
fn a_store_s_refusal_to_elect_is_shown_while_waiting() {
    let dir = Dir::new();
    let started = Instant::now();
    let out = dir
        .leader("a")
        .env(FAULTS, "refuse=3s")
        .args([
            "run",
            "--store",
            "memory://refusal",
            "--election",
            "r",
            "--lease",
            "2s",
            "--",
            "sh",
            "-c",
            "echo ran > ran",
        ])
        .status()
        .expect("run");
    assert_eq!(out.code(), Some(0), "{}", dir.stderr("a"));
    let stderr = dir.stderr("a");
    let line = stderr.lines().find(|l| l.contains("refuses")).unwrap_or_else(|| panic!("a refusal line: {stderr}"));
    assert!(line.starts_with("leader: waiting; the store refuses to elect until "), "{line}");
    assert!(line.ends_with(": test fault: refusing to elect"), "{line}");
    assert_eq!(stderr.matches("refuses").count(), 1, "said once: {stderr}");
    assert_eq!(dir.read("ran").trim(), "ran");
    assert!(started.elapsed() >= Duration::from_secs(3), "led only after the refusal ended");
}

#[test]
fn leadership_lost_while_the_command_runs_stops_it_and_exits_124() {
    let dir = Dir::new();
    let out = dir
        .leader("a")
        .env(FAULTS, "outage-after-acquire")
        .args(["run", "--store", "memory://lost", "--election", "l", "--lease", "2s", "--", "sh", "-c"])
        .arg("sleep 1000 & echo $! > bg; trap 'echo term >> log; exit 0' TERM; echo $$ > cmd.pid; while :; do sleep 0.05; done")
        .status()
        .expect("run");
    assert_eq!(out.code(), Some(124), "{}", dir.stderr("a"));
    assert!(dir.stderr("a").contains("leadership of l lost"), "{}", dir.stderr("a"));
    assert_eq!(dir.log(), ["term"], "SIGTERM first");
    assert!(!alive(dir.pid("cmd.pid")) && !alive(dir.pid("bg")));
}

#[test]
fn a_store_that_is_down_exits_125() {
    let out = Command::new(BIN)
        .env(FAULTS, "store-down")
        .args(["status", "--store", "memory://down", "e"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("leader: error: ") && stderr.contains("test fault"), "{stderr}");
}

#[test]
fn an_unknown_fault_is_a_usage_error() {
    let out = Command::new(BIN)
        .env(FAULTS, "nonsense")
        .args(["status", "--store", "memory://x", "e"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(2));
}
