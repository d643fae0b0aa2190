//! Test helpers: the shared server's URL (with the skip / require rule), and private throwaway
//! redis-server processes for tests that restart, flush or kill connections, so that they never
//! disturb the tests running at the same time against the shared server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::prelude::*;

pub mod topology;

/// `LEADER_TEST_REDIS_URL`, or `None` after printing why the test does not run; panics when
/// `LEADER_TEST_REQUIRE` names redis.
pub fn shared_url() -> Option<String> {
    if let Ok(url) = std::env::var("LEADER_TEST_REDIS_URL") {
        if !url.is_empty() {
            return Some(url);
        }
    }
    let required = std::env::var("LEADER_TEST_REQUIRE")
        .map(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("redis")))
        .unwrap_or(false);
    if required {
        panic!("LEADER_TEST_REQUIRE names redis but LEADER_TEST_REDIS_URL is not set (run `scripts/servers up redis` and `eval \"$(scripts/servers env)\"`)");
    }
    println!("skipped: LEADER_TEST_REDIS_URL is not set (run `scripts/servers up redis` and `eval \"$(scripts/servers env)\"`)");
    None
}

/// A unique election name.
pub fn election(tag: &str) -> String {
    format!("redis-{tag}-{:08x}", fastrand::u32(..))
}

/// A unique key prefix, so tests do not see each other's `list` results or quarantine keys.
pub fn prefix(tag: &str) -> String {
    format!("t{}-{:08x}", tag, fastrand::u32(..))
}

/// The worktree's `.servers/` folder, where private servers keep their state.
pub fn servers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.servers")
}

/// Loopback ports 55200-55299 belong to the private single servers of these tests (restarts,
/// persistence, eviction). A port is taken by creating `.servers/redis-tests/ports/PORT` (with our
/// pid, so that a file left by a killed test can be taken over) and freed when the server goes.
const PORTS: std::ops::Range<u16> = 55200..55300;

struct PortClaim {
    port: u16,
    file: PathBuf,
}

impl PortClaim {
    fn take() -> PortClaim {
        let dir = servers_dir().join("redis-tests/ports");
        std::fs::create_dir_all(&dir).unwrap();
        let span = PORTS.end - PORTS.start;
        let offset = fastrand::u16(..span);
        for i in 0..span {
            let port = PORTS.start + (offset + i) % span;
            let file = dir.join(port.to_string());
            let claimed = match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = write!(f, "{}", std::process::id());
                    true
                }
                Err(_) => {
                    // Left by a test process that is gone: take it over.
                    let owner = std::fs::read_to_string(&file).unwrap_or_default();
                    let alive =
                        owner.trim().parse::<u32>().is_ok_and(|pid| PathBuf::from(format!("/proc/{pid}")).exists());
                    if !alive && std::fs::remove_file(&file).is_ok() {
                        continue;
                    }
                    false
                }
            };
            if claimed {
                if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return PortClaim { port, file };
                }
                let _ = std::fs::remove_file(&file);
            }
        }
        panic!("no free port in {PORTS:?} for a private redis-server");
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A redis-server of this test alone, on a loopback port of 55200-55299 with its state under
/// `.servers/redis-tests/`, persistence off unless the test asks for it. Killed on drop.
pub struct TempRedis {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    _claim: PortClaim,
}

impl TempRedis {
    /// Starts one with persistence off (`--save '' --appendonly no`).
    pub async fn start() -> TempRedis {
        Self::with_args(&["--save", "", "--appendonly", "no"]).await
    }

    /// Starts one with these extra `redis-server` arguments (persistence, memory limits).
    pub async fn with_args(args: &[&str]) -> TempRedis {
        let claim = PortClaim::take();
        let port = claim.port;
        let dir = servers_dir().join(format!("redis-tests/{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis =
            TempRedis { port, dir, args: args.iter().map(|a| (*a).to_owned()).collect(), child: None, _claim: claim };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/servers up redis installs it)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Ready once it answers PING as the process we started (not a server left on the port).
            let info = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "info", "server"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if info.contains(&format!("process_id:{pid}")) {
                break;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server on {} exited ({status}); log:\n{log}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server on {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server (SIGKILL: nothing more is saved, as after a crash) and waits for the port
    /// to close.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server on {} did not stop", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts it again after [`kill`](Self::kill), on the same port and folder (so it loads what it
    /// persisted there, if anything).
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Kills and starts it again on the same port: with persistence off its data is gone.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// A plain fred client for admin commands.
    pub async fn admin(&self) -> Client {
        admin(&self.url()).await
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the server at `url` has been up for more than `age` (plus a second: `INFO` counts
/// uptime in whole seconds), so that a store using it elects at once (see the crate docs).
pub async fn wait_until_up_for(url: &str, age: Duration) {
    let client = admin(url).await;
    loop {
        let info: String = client.info(Some(fred::types::InfoKind::Server)).await.unwrap();
        let up: u64 = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("uptime_in_seconds:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        if Duration::from_secs(up) > age + Duration::from_secs(1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A plain fred client for admin commands.
pub async fn admin(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).unwrap()).build().unwrap();
    client.init().await.unwrap();
    client
}

/// Polls `check` every 20 ms until it is true; panics after `limit` (a generous safety bound).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
