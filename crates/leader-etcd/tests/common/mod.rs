//! Shared by the integration tests: the test server's URL, names, and etcd processes of the tests'
//! own (a server to restart, one with authentication, a three-member cluster) on ports of their
//! own, with state under `.servers/` (or `LEADER_SERVERS_DIR`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leader_core::{Acquire, AcquireRequest, ElectionOptions, Metadata};
use leader_etcd::{etcd_client, EtcdStore};
use tokio::time::Instant;

/// The test lease: 3 s.
pub const LEASE: Duration = Duration::from_secs(3);

pub fn options() -> ElectionOptions {
    ElectionOptions::from_lease(LEASE)
}

/// `LEADER_TEST_ETCD_URL`, or `None` after printing why the test does not run (a failure when
/// `LEADER_TEST_REQUIRE` names etcd).
pub fn url() -> Option<String> {
    match std::env::var("LEADER_TEST_ETCD_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
            if required.split(',').any(|p| p.trim() == "etcd") {
                panic!(
                    "LEADER_TEST_REQUIRE names etcd but LEADER_TEST_ETCD_URL is not set \
                     (run `scripts/servers up etcd` and `eval \"$(scripts/servers env)\"`)"
                );
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "leader-etcd: skipping etcd tests: LEADER_TEST_ETCD_URL is not set \
                     (run `scripts/servers up etcd` and `eval \"$(scripts/servers env)\"`)"
                );
            });
            None
        }
    }
}

/// A new store handle on the test server.
pub async fn store(url: &str) -> EtcdStore {
    EtcdStore::connect(url).await.expect("connect to the test etcd")
}

/// A unique election name.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

pub fn request(election: &str, participant: &str, instance: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: participant.to_owned(),
        instance_id: instance.to_owned(),
        ttl: LEASE,
        metadata: Metadata::new(),
    }
}

pub fn acquired(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Acquired(l) => l,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Where the tests' own servers keep their state: `$LEADER_SERVERS_DIR/<name>` or
/// `<repo>/.servers/<name>`.
pub fn state_dir(name: &str) -> PathBuf {
    std::env::var_os("LEADER_SERVERS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".servers")).join(name)
}

/// The `etcd` binary. Tests that start servers of their own run when etcd tests are wanted here
/// (`LEADER_TEST_ETCD_URL` is set); then a missing binary is a failure, not a skip.
pub fn etcd_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("no etcd binary on PATH: install Debian's etcd-server (scripts/servers up etcd does)")
    })
}

/// One etcd member of the tests' own, killed when dropped.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data: PathBuf,
    cluster: String,
    state: &'static str,
    child: Option<Child>,
    log: PathBuf,
    pidfile: PathBuf,
}

impl Member {
    /// A member `name` of the cluster `cluster` (`n0=http://127.0.0.1:P,...`) of the topology
    /// whose directories `fresh_dir` gave. Not started.
    pub fn new(dirs: &TopologyDirs, name: &str, client_port: u16, peer_port: u16, cluster: &str) -> Member {
        Member {
            name: name.to_owned(),
            client_port,
            peer_port,
            data: dirs.data.join(name),
            cluster: cluster.to_owned(),
            state: "new",
            child: None,
            log: dirs.state.join(format!("{name}.log")),
            pidfile: dirs.state.join(format!("{name}.pid")),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Starts the process (again, on the same data directory after a stop).
    pub fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "member {} already runs", self.name);
        // A member left running by an earlier, aborted run of this test holds the ports.
        kill_stale(&self.pidfile);
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the member's log");
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster, "--initial-cluster-state", self.state])
            .args(["--initial-cluster-token", "leader-etcd-tests", "--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let _ = std::fs::write(&self.pidfile, format!("{}\n{}\n", child.id(), self.data.display()));
        self.child = Some(child);
        // On a restart the member joins its existing cluster.
        self.state = "existing";
    }

    /// Kills the process (SIGKILL: a crash; the data directory stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
        // The data lives in memory: give it back.
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Kills the etcd an earlier, aborted run started (`pidfile` holds its pid and data directory),
/// but only if that process is still an etcd on that data (a pid may have been reused since).
fn kill_stale(pidfile: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(pidfile) else { return };
    let mut lines = text.lines();
    let (Some(pid), Some(data)) = (lines.next(), lines.next()) else { return };
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if cmdline.contains("etcd") && cmdline.contains(data.trim()) {
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_file(pidfile);
}

/// Where a topology of the tests' own keeps its logs and pid files (`state`, under `.servers/`)
/// and its members' data (`data`).
pub struct TopologyDirs {
    pub state: PathBuf,
    pub data: PathBuf,
}

/// Fresh directories for topology `name` (an earlier run's members are stopped, its data removed).
/// The data goes to memory (tmpfs) where there is one: etcd fsyncs every write, and on a disk
/// shared with builds one fsync can take seconds (scripts/servers.d/etcd.sh does the same).
pub fn fresh_dir(name: &str) -> TopologyDirs {
    let state = state_dir(name);
    if let Ok(entries) = std::fs::read_dir(&state) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                kill_stale(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("create the state directory");
    let shm = std::path::Path::new("/dev/shm");
    let data = if shm.is_dir() {
        // One folder per checkout (several worktrees may run these tests on one machine).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in state.to_string_lossy().bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        shm.join(format!("leader-etcd-tests-{hash:016x}"))
    } else {
        state.join("data")
    };
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("create the data directory");
    TopologyDirs { state, data }
}

/// Waits until the member at `endpoint` answers a status request and knows a leader.
pub async fn wait_serving(endpoints: &[String], limit: Duration) -> Result<(), String> {
    let end = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < end {
        let mut ok = true;
        for e in endpoints {
            let attempt = async {
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                let mut c = etcd_client::Client::connect([e.as_str()], Some(options)).await?;
                c.status().await
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(s)) if s.leader() != 0 => {}
                Ok(Ok(_)) => {
                    ok = false;
                    last = format!("{e}: no leader yet");
                }
                Ok(Err(err)) => {
                    ok = false;
                    last = format!("{e}: {err}");
                }
                Err(_) => {
                    ok = false;
                    last = format!("{e}: no answer");
                }
            }
        }
        if ok {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}
