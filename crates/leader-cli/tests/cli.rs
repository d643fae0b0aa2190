//! End-to-end tests of the real `leader` binary against the fs store: processes, signals, exit
//! codes. Each test has its own directory, so they run concurrently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_leader");

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    fn store(&self) -> String {
        format!("file://{}", self.0.path().join("leases").display())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// `leader run` whose command appends "start ID TOKEN" to `log`, writes its pid to `ID.pid`,
/// appends "term ID" on SIGTERM, and sleeps.
fn run(dir: &Dir, id: &str, extra: &[&str]) -> Child {
    let script = format!(
        "echo $$ > {pid}; echo \"start $LEADER_ID $FENCING_TOKEN\" >> {log}; trap 'echo \"term $LEADER_ID\" >> {log}; exit 0' TERM; while :; do sleep 0.05; done",
        pid = dir.path(&format!("{id}.pid")).display(),
        log = dir.path("log").display(),
    );
    Command::new(BIN)
        .args(["run", "--store", &dir.store(), "--election", "cli", "--id", id, "--lease", "2s"])
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn leader run")
}

fn log(dir: &Dir) -> Vec<String> {
    std::fs::read_to_string(dir.path("log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state too.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    kill(Pid::from_raw(pid), None).is_ok() && stat.split_whitespace().nth(2).is_none_or(|s| s != "Z")
}

fn pid_of(dir: &Dir, id: &str) -> i32 {
    std::fs::read_to_string(dir.path(&format!("{id}.pid"))).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn starts(dir: &Dir) -> Vec<String> {
    log(dir).into_iter().filter(|l| l.starts_with("start")).collect()
}

fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn only_one_runs_the_command_and_a_sigkilled_holder_hands_over() {
    let dir = Dir::new();
    let a = run(&dir, "a", &[]);
    wait_for("a to start its command", Duration::from_secs(10), || starts(&dir).len() == 1);
    let b = run(&dir, "b", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(starts(&dir).len(), 1, "only one command runs: {:?}", log(&dir));
    let first = pid_of(&dir, "a");
    assert!(alive(first));
    // SIGKILL `leader run` alone: its command must die too, and b must take over.
    kill(Pid::from_raw(a.id() as i32), Signal::SIGKILL).expect("kill a");
    wait_for("a's command to die with it", Duration::from_secs(5), || !alive(first));
    wait_for("b to take over", Duration::from_secs(10), || starts(&dir).len() == 2);
    let s = starts(&dir);
    assert!(s[1].starts_with("start b"), "{s:?}");
    let tokens: Vec<u64> = s.iter().filter_map(|l| l.split(' ').nth(2)?.parse().ok()).collect();
    assert!(tokens[1] > tokens[0], "FENCING_TOKEN grows: {tokens:?}");
    reap(a);
    reap(b);
}

#[test]
fn a_stopped_leader_run_has_its_command_killed_by_the_deadline() {
    let dir = Dir::new();
    let a = run(&dir, "a", &[]);
    wait_for("a to start its command", Duration::from_secs(10), || starts(&dir).len() == 1);
    let a_cmd = pid_of(&dir, "a");
    let b = run(&dir, "b", &[]);
    // Freeze `leader run` a; its command keeps running until the watchdog's deadline.
    kill(Pid::from_raw(a.id() as i32), Signal::SIGSTOP).expect("stop a");
    wait_for("the watchdog to stop a's command", Duration::from_secs(6), || !alive(a_cmd));
    assert!(log(&dir).iter().any(|l| l == "term a"), "SIGTERM first: {:?}", log(&dir));
    // fs: a stopped holder keeps its kernel lock, so b cannot lead until a resumes (safe, not live).
    assert_eq!(starts(&dir).len(), 1);
    kill(Pid::from_raw(a.id() as i32), Signal::SIGCONT).expect("continue a");
    wait_for("b to take over", Duration::from_secs(10), || starts(&dir).len() == 2);
    let lines = log(&dir);
    let term = lines.iter().position(|l| l == "term a").expect("term a");
    let start_b = lines.iter().position(|l| l.starts_with("start b")).expect("start b");
    assert!(term < start_b, "a's command stopped before b's started: {lines:?}");
    let mut a = a;
    let status = a.wait().expect("a exits");
    assert_eq!(status.code(), Some(3), "leadership lost => exit 3");
    reap(b);
}

#[test]
fn exits_with_the_command_code_and_passes_the_environment() {
    let dir = Dir::new();
    let out = Command::new(BIN)
        .args([
            "run",
            "--store",
            &dir.store(),
            "--election",
            "env",
            "--id",
            "me",
            "--lease",
            "2s",
            "--metadata",
            "zone=a",
        ])
        .args(["--", "sh", "-c", "echo \"$LEADER_ELECTION $LEADER_ID $FENCING_TOKEN\"; exit 7"])
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
fn sigterm_to_leader_run_stops_the_command_and_releases() {
    let dir = Dir::new();
    let mut a = run(&dir, "a", &[]);
    wait_for("a to start its command", Duration::from_secs(10), || starts(&dir).len() == 1);
    let cmd = pid_of(&dir, "a");
    kill(Pid::from_raw(a.id() as i32), Signal::SIGTERM).expect("term");
    assert_eq!(a.wait().expect("exit").code(), Some(128 + 15));
    assert!(!alive(cmd));
    let status = Command::new(BIN).args(["status", "--store", &dir.store(), "--json", "cli"]).output().expect("status");
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert!(doc[0]["leader"].is_null(), "released: {doc}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = Dir::new();
    for args in [
        vec!["status", "--store", "nope://x"],
        vec!["run", "--store", "memory://x", "--election", "e", "--lease", "soon", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "bad/name", "--", "true"],
        vec!["run", "--store", "memory://x", "--election", "e", "--lease", "3s", "--grace", "5s", "--", "true"],
        vec!["watch", "--store", "memory://x", ""],
        vec!["run", "--store", "memory://x", "--election", "e"],
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
    wait_for("a to lead", Duration::from_secs(10), || starts(&dir).len() == 1);
    let out = Command::new(BIN).args(["status", "--store", &dir.store()]).output().expect("status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("cli") && l.contains(" a ") && l.contains("zone=eu")), "{table}");
    let mut watch = Command::new(BIN)
        .args(["watch", "--store", &dir.store(), "cli", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let first = std::io::BufRead::lines(std::io::BufReader::new(stdout)).next().expect("a line").expect("utf-8");
    let line: serde_json::Value = serde_json::from_str(&first).expect("json line");
    assert_eq!(line["leader"]["participant_id"], "a");
    reap(watch);
    reap(a);
    let _ = Path::new(".");
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
