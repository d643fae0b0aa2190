//! End-to-end tests of the real `leader` binary against the fs and memory stores: every exit path
//! of `leader run`, its signals and exit codes, and that no path leaves the command (or what it
//! started) running. Each test has its own directory, so they run concurrently. The paths that
//! need a fault (a watchdog that cannot start, a store that refuses or fails) are in `faults.rs`.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// `leader run` in election `cli` whose command writes its pid to `ID.pid`, appends
/// "start ID TOKEN" to `log`, appends "term ID" on SIGTERM (then exits 0), and loops; it also
/// starts a background process (pid in `ID.bg`), which stays in its process group.
fn run(dir: &Dir, id: &str, extra: &[&str]) -> Child {
    let script = format!(
        "sleep 1000 & echo $! > {id}.bg; trap 'echo \"term $LEADER_ID\" >> log; exit 0' TERM; echo $$ > {id}.pid; echo \"start $LEADER_ID $FENCING_TOKEN\" >> log; while :; do sleep 0.05; done"
    );
    dir.leader(id)
        .args(["run", "--store", &dir.store(), "--election", "cli", "--id", id, "--lease", "4s"])
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .spawn()
        .expect("spawn leader run")
}

fn starts(dir: &Dir) -> Vec<String> {
    dir.log().into_iter().filter(|l| l.starts_with("start")).collect()
}

#[test]
fn only_one_runs_the_command_and_a_sigkilled_holder_hands_over() {
    let dir = Dir::new();
    let a = run(&dir, "a", &[]);
    wait_for("a to start its command", LIMIT, || starts(&dir).len() == 1);
    let b = run(&dir, "b", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(starts(&dir).len(), 1, "only one command runs: {:?}", dir.log());
    let (cmd, bg) = (dir.pid("a.pid"), dir.pid("a.bg"));
    assert!(alive(cmd) && alive(bg));
    // SIGKILL `leader run` alone: its command must die too (parent-death signal), and what the
    // command started (the watchdog); then b takes over.
    signal(a.id() as i32, Signal::SIGKILL);
    wait_for("a's command to die with it", LIMIT, || !alive(cmd));
    wait_for("a's command's background process to die", LIMIT, || !alive(bg));
    wait_for("b to take over", LIMIT, || starts(&dir).len() == 2);
    let s = starts(&dir);
    assert!(s[1].starts_with("start b"), "{s:?}");
    let tokens: Vec<u64> = s.iter().filter_map(|l| l.split(' ').nth(2)?.parse().ok()).collect();
    assert!(tokens[1] > tokens[0], "FENCING_TOKEN grows: {tokens:?}");
    reap(a);
    reap(b);
}

#[test]
fn a_stopped_leader_run_has_its_command_killed_by_the_deadline_and_exits_124() {
    let dir = Dir::new();
    let mut a = run(&dir, "a", &[]);
    wait_for("a to start its command", LIMIT, || starts(&dir).len() == 1);
    let (cmd, bg) = (dir.pid("a.pid"), dir.pid("a.bg"));
    let b = run(&dir, "b", &[]);
    // Freeze `leader run` a; its command keeps running until the watchdog's deadline.
    signal(a.id() as i32, Signal::SIGSTOP);
    wait_for("the watchdog to stop a's command", LIMIT, || !alive(cmd) && !alive(bg));
    assert!(dir.log().iter().any(|l| l == "term a"), "SIGTERM first: {:?}", dir.log());
    // fs: a stopped holder keeps its kernel lock, so b cannot lead until a resumes (safe, not live).
    assert_eq!(starts(&dir).len(), 1);
    signal(a.id() as i32, Signal::SIGCONT);
    wait_for("b to take over", LIMIT, || starts(&dir).len() == 2);
    let lines = dir.log();
    let term = lines.iter().position(|l| l == "term a").expect("term a");
    let start_b = lines.iter().position(|l| l.starts_with("start b")).expect("start b");
    assert!(term < start_b, "a's command stopped before b's started: {lines:?}");
    let status = wait_exit(&mut a, LIMIT);
    assert_eq!(status.code(), Some(124), "leadership lost => exit 124; {}", dir.stderr("a"));
    reap(b);
}

#[test]
fn exits_with_the_command_code_and_passes_the_environment() {
    let dir = Dir::new();
    let out = Command::new(BIN)
        .args(["run", "--store", &dir.store(), "--election", "env", "--id", "me", "--lease", "2s"])
        .args(["--metadata", "zone=a", "--", "sh", "-c", "echo \"$LEADER_ELECTION $LEADER_ID $FENCING_TOKEN\"; exit 7"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(&fields[..2], ["env", "me"], "{stdout}");
    assert!(fields[2].parse::<u64>().is_ok_and(|t| t > 0), "{stdout}");
    // Released on exit: the next run leads at once with a greater token.
    let again = Command::new(BIN)
        .args([
            "run",
            "--store",
            &dir.store(),
            "--election",
            "env",
            "--lease",
            "2s",
            "--",
            "sh",
            "-c",
            "echo $FENCING_TOKEN",
        ])
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(0));
    let t2: u64 = String::from_utf8_lossy(&again.stdout).trim().parse().expect("token");
    assert!(t2 > fields[2].parse::<u64>().unwrap_or(u64::MAX));
}

#[test]
fn a_command_ended_by_a_signal_of_its_own_exits_128_plus_n() {
    let dir = Dir::new();
    let out = Command::new(BIN)
        .args(["run", "--store", &dir.store(), "--election", "sig", "--lease", "2s", "--", "sh", "-c", "kill -KILL $$"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(128 + 9), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.released("sig"));
}

#[test]
fn what_the_command_leaves_in_its_group_is_stopped_before_the_release() {
    let dir = Dir::new();
    // The command exits 0 at once, leaving a process that ignores SIGTERM: it gets SIGKILL after
    // --grace, and only then is the lease released.
    let started = Instant::now();
    let out = dir
        .leader("a")
        .args(["run", "--store", &dir.store(), "--election", "left", "--lease", "4s", "--grace", "500ms", "--"])
        .args(["sh", "-c", "sh -c 'trap \"\" TERM; echo $$ > bg; while :; do sleep 0.05; done' & while [ ! -s bg ]; do sleep 0.01; done; exit 0"])
        .status()
        .expect("run");
    assert_eq!(out.code(), Some(0), "{}", dir.stderr("a"));
    assert!(started.elapsed() >= Duration::from_millis(500), "SIGKILL only after --grace");
    let bg = dir.pid("bg");
    assert!(bg > 0 && !alive(bg), "the leftover process is gone when leader exits");
    assert!(dir.stderr("a").contains("stopping what the command left"), "{}", dir.stderr("a"));
    assert!(dir.released("left"));
}

/// A command that traps `sig` in itself and in a foreground child (same group): each logs
/// "outer SIG" / "inner SIG" and exits 0. Core dumps off (SIGQUIT).
fn trapping(sig: &str) -> String {
    format!(
        "ulimit -c 0; trap 'echo outer {sig} >> log; exit 0' {sig}; sh -c 'trap \"echo inner {sig} >> log; exit 0\" {sig}; echo $$ > inner.pid; while :; do sleep 0.05; done'; echo outer-ended >> log"
    )
}

#[test]
fn hup_int_term_and_quit_go_to_the_command_s_group_and_exit_128_plus_n() {
    let cases =
        [(Signal::SIGHUP, "HUP"), (Signal::SIGINT, "INT"), (Signal::SIGTERM, "TERM"), (Signal::SIGQUIT, "QUIT")];
    let runs: Vec<(Dir, Child)> = cases
        .iter()
        .map(|(_, name)| {
            let dir = Dir::new();
            let child = dir
                .leader("a")
                .args([
                    "run",
                    "--store",
                    &dir.store(),
                    "--election",
                    "sig",
                    "--lease",
                    "4s",
                    "--",
                    "sh",
                    "-c",
                    &trapping(name),
                ])
                .spawn()
                .expect("spawn");
            (dir, child)
        })
        .collect();
    for ((sig, name), (dir, mut child)) in cases.into_iter().zip(runs) {
        wait_for("the command to run", LIMIT, || dir.pid("inner.pid") > 0);
        let inner = dir.pid("inner.pid");
        signal(child.id() as i32, sig);
        let status = wait_exit(&mut child, LIMIT);
        assert_eq!(status.code(), Some(128 + sig as i32), "{name}: {}", dir.stderr("a"));
        let log = dir.log();
        assert!(log.contains(&format!("inner {name}")), "{name} reached the group, not only CMD: {log:?}");
        assert!(log.contains(&format!("outer {name}")), "{name} reached CMD: {log:?}");
        assert!(!alive(inner));
        assert!(dir.released("sig"), "{name}: released");
    }
}

#[test]
fn a_command_that_ignores_the_signal_is_killed_after_grace() {
    let dir = Dir::new();
    let mut a = dir
        .leader("a")
        .args(["run", "--store", &dir.store(), "--election", "g", "--lease", "4s", "--grace", "600ms", "--"])
        .args(["sh", "-c", "trap '' TERM; echo $$ > cmd.pid; while :; do sleep 0.05; done"])
        .spawn()
        .expect("spawn");
    wait_for("the command to run", LIMIT, || dir.pid("cmd.pid") > 0);
    let cmd = dir.pid("cmd.pid");
    let sent = Instant::now();
    signal(a.id() as i32, Signal::SIGTERM);
    let status = wait_exit(&mut a, LIMIT);
    assert!(sent.elapsed() >= Duration::from_millis(600), "SIGKILL only after --grace: {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(128 + 15), "{}", dir.stderr("a"));
    assert!(!alive(cmd));
    assert!(dir.stderr("a").contains("did not end within --grace"), "{}", dir.stderr("a"));
    assert!(dir.released("g"));
}

#[test]
fn usr1_and_usr2_go_to_the_command_only() {
    let dir = Dir::new();
    let script = "trap 'echo outer USR1 >> log' USR1; trap 'echo outer USR2 >> log' USR2; \
        sh -c 'trap \"echo inner USR1 >> log\" USR1; trap \"echo inner USR2 >> log\" USR2; echo $$ > inner.pid; while :; do sleep 0.05; done' & \
        echo $$ > cmd.pid; while :; do sleep 0.05; done";
    let mut a = dir
        .leader("a")
        .args(["run", "--store", &dir.store(), "--election", "usr", "--lease", "4s", "--", "sh", "-c", script])
        .spawn()
        .expect("spawn");
    wait_for("the command to run", LIMIT, || dir.pid("cmd.pid") > 0 && dir.pid("inner.pid") > 0);
    for (sig, name) in [(Signal::SIGUSR1, "USR1"), (Signal::SIGUSR2, "USR2")] {
        signal(a.id() as i32, sig);
        wait_for("the command to get it", LIMIT, || dir.log().contains(&format!("outer {name}")));
        // The other process of the group would have logged within 50 ms.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!dir.log().contains(&format!("inner {name}")), "{name} went to CMD only: {:?}", dir.log());
    }
    assert!(a.try_wait().expect("try_wait").is_none(), "leader run goes on after SIGUSR1/2");
    signal(a.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut a, LIMIT).code(), Some(128 + 15));
    assert!(!alive(dir.pid("inner.pid")));
}

#[test]
fn a_missing_command_exits_127_and_a_non_executable_one_126() {
    let dir = Dir::new();
    std::fs::write(dir.path("plain"), "not a program").expect("write");
    for (command, code) in
        [("/nonexistent/command", 127), ("no-such-command-anywhere", 127), ("./plain", 126), (".", 126)]
    {
        let out = dir
            .leader("a")
            .args(["run", "--store", &dir.store(), "--election", "x", "--lease", "2s", "--", command])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(code), "{command}: {}", dir.stderr("a"));
        assert!(dir.stderr("a").contains("cannot run"), "{}", dir.stderr("a"));
        assert!(dir.released("x"), "{command}: released");
    }
}

#[test]
fn a_dead_watchdog_stops_the_command_releases_and_exits_125() {
    let dir = Dir::new();
    let mut a = run(&dir, "a", &[]);
    wait_for("a to start its command", LIMIT, || starts(&dir).len() == 1);
    let (cmd, bg) = (dir.pid("a.pid"), dir.pid("a.bg"));
    let watchdog = watchdog_of(a.id() as i32).expect("a watchdog process");
    signal(watchdog, Signal::SIGKILL);
    let status = wait_exit(&mut a, LIMIT);
    assert_eq!(status.code(), Some(125), "{}", dir.stderr("a"));
    assert!(dir.stderr("a").contains("watchdog exited"), "{}", dir.stderr("a"));
    assert!(dir.log().iter().any(|l| l == "term a"), "SIGTERM first: {:?}", dir.log());
    assert!(!alive(cmd) && !alive(bg));
    assert!(dir.released("cli"));
}

#[test]
fn an_unreachable_store_exits_125() {
    let dir = Dir::new();
    std::fs::write(dir.path("file"), "").expect("write");
    let store = format!("file://{}/sub", dir.path("file").display());
    for args in
        [vec!["status", "--store", &store, "e"], vec!["run", "--store", &store, "--election", "e", "--", "true"]]
    {
        let out = Command::new(BIN).args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn a_replaced_binary_still_runs_its_watchdog() {
    // An upgrade replaces the binary (rename over it) while `leader run` waits to lead.
    let dir = Dir::new();
    let copy = dir.path("leader");
    std::fs::copy(BIN, &copy).expect("copy the binary");
    let mut holder = run(&dir, "holder", &[]);
    wait_for("the holder to lead", LIMIT, || starts(&dir).len() == 1);
    let mut waiting = Command::new(&copy)
        .current_dir(dir.0.path())
        .args([
            "run",
            "--store",
            &dir.store(),
            "--election",
            "cli",
            "--lease",
            "4s",
            "--",
            "sh",
            "-c",
            "echo ran > ran",
        ])
        .stderr(std::fs::File::create(dir.path("w.err")).expect("stderr"))
        .spawn()
        .expect("spawn the copy");
    wait_for("the copy to wait", LIMIT, || dir.stderr("w").contains("waiting"));
    std::fs::write(dir.path("new"), "#!/bin/sh\nexit 99\n").expect("write");
    std::fs::rename(dir.path("new"), &copy).expect("replace the binary");
    signal(holder.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut holder, LIMIT).code(), Some(128 + 15));
    let status = wait_exit(&mut waiting, LIMIT);
    assert_eq!(status.code(), Some(0), "{}", dir.stderr("w"));
    assert_eq!(dir.read("ran").trim(), "ran");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = Dir::new();
    for args in [
        vec!["status", "--store", "nope://x"],
        vec!["run", "--store", "memory://x", "--election", "e", "--lease", "soon", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "bad/name", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "e", "--id", "", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "e", "--lease", "3s", "--grace", "5s", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "e", "--metadata", "novalue", "--", "true"],
        vec!["run", "--election", "e", "--", "true"],
        vec!["watch", "--store", "memory://x", ""],
        vec!["run", "--store", "memory://x", "--election", "e"],
        vec!["frobnicate"],
    ] {
        let out = Command::new(BIN).args(&args).current_dir(dir.0.path()).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("leader: "), "{stderr}");
    }
}

#[test]
fn status_and_watch_show_the_holder() {
    let dir = Dir::new();
    let a = run(&dir, "a", &["--metadata", "zone=eu"]);
    wait_for("a to lead", LIMIT, || starts(&dir).len() == 1);
    let out = Command::new(BIN).args(["status", "--store", &dir.store()]).output().expect("status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("cli") && l.contains(" a ") && l.contains("zone=eu")), "{table}");
    let mut watch = dir
        .leader("w")
        .args(["watch", "--store", &dir.store(), "cli", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let first = std::io::BufRead::lines(std::io::BufReader::new(stdout)).next().expect("a line").expect("utf-8");
    let line: serde_json::Value = serde_json::from_str(&first).expect("json line");
    assert_eq!(line["leader"]["participant_id"], "a");
    // Its reader is gone (as with `| head -1`): at the next change watch ends quietly, exit 0.
    signal(a.id() as i32, Signal::SIGTERM);
    let status = wait_exit(&mut watch, LIMIT);
    assert_eq!(status.code(), Some(0));
    assert_eq!(dir.stderr("w"), "", "no panic message");
    reap(a);
}

#[test]
fn config_file_supplies_store_election_and_id() {
    let dir = Dir::new();
    let config = dir.path("leader.toml");
    std::fs::write(
        &config,
        format!("store = \"{}\"\nelection = \"cfg\"\nparticipant_id = \"from-config\"\n[options]\nlease_duration = \"2s\"\n", dir.store()),
    )
    .expect("write config");
    let out = Command::new(BIN)
        .args([
            "run",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--",
            "sh",
            "-c",
            "echo $LEADER_ID $LEADER_ELECTION",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-config cfg");
    std::fs::write(&config, "store = \"memory://x\"\nelection = \"cfg\"\nlease = \"2s\"\n").expect("write");
    let bad = Command::new(BIN)
        .args(["run", "--config", config.to_str().expect("utf-8"), "--", "true"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lease"), "names the key");
}
