//! Helpers shared by the CLI's test binaries: a private directory per test (so that tests run
//! concurrently), the real `leader` binary, and process checks through /proc.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_leader");

/// Generous: the machine running the tests may be busy.
pub const LIMIT: Duration = Duration::from_secs(20);

pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    /// A file-system store in this directory.
    pub fn store(&self) -> String {
        format!("file://{}", self.0.path().join("leases").display())
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    /// A file's text ("" if absent).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
    /// The lines of `log`.
    pub fn log(&self) -> Vec<String> {
        self.read("log").lines().map(str::to_owned).collect()
    }
    /// The pid a command wrote to `name` (0 if not yet).
    pub fn pid(&self, name: &str) -> i32 {
        self.read(name).trim().parse().unwrap_or(0)
    }
    /// `leader` with its stderr going to the file `name`.err in this directory.
    pub fn leader(&self, name: &str) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.0.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path(&format!("{name}.err"))).expect("stderr file"));
        c
    }
    /// What the `leader` started by [`Dir::leader`] with this name wrote on stderr.
    pub fn stderr(&self, name: &str) -> String {
        self.read(&format!("{name}.err"))
    }
    /// Whether `election` has no holder in this directory's store (`leader status --json`).
    pub fn released(&self, election: &str) -> bool {
        let out =
            Command::new(BIN).args(["status", "--store", &self.store(), "--json", election]).output().expect("status");
        assert_eq!(out.status.code(), Some(0), "status: {}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        doc[0]["leader"].is_null()
    }
}

pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    pid > 0
        && kill(Pid::from_raw(pid), None).is_ok()
        && stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z")
}

/// Sends `sig` to a process.
pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).expect("kill");
}

/// Waits for a child with a time limit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < until, "leader did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The watchdog process `leader run` (pid `leader`) started.
pub fn watchdog_of(leader: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: i32 = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == leader && String::from_utf8_lossy(&cmdline).contains("__watchdog")).then_some(pid)
    })
}

/// Kills what is left of a child.
pub fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}
