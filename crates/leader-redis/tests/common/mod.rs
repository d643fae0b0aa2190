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

    /// Starts the server; these ports lie in Linux's ephemeral range, so an outgoing connection of
    /// another test may hold ours for a moment: a server that cannot bind is started again.
    async fn spawn(&mut self) {
        let mut attempts = 0;
        while !self.spawn_once().await {
            attempts += 1;
            assert!(attempts < 20, "redis-server could not bind port {} in 20 attempts", self.port);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn spawn_once(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/servers up redis installs it)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Ready once it answers as the process we started (not a server left on the port).
            if topology::field(&topology::cli(self.port, &["info", "server"]), "process_id")
                .is_some_and(|p| p == pid.to_string())
            {
                return true;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return false;
                }
                panic!("redis-server on {} exited ({status}); log:\n{text}", self.port);
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

/// `Provider::break_lease` for the conformance providers: the lease of `election` expires now,
/// behind its holder's back: the lease key is deleted and the election's record says the lease
/// has ended (as after its expiry), so the holder's next renew answers "not yours" and a follower
/// may take over at once. (Deleting the key alone is what an eviction does: followers then wait
/// for the lease's end, see `tests/eviction.rs`.)
pub async fn break_lease(store: &leader_redis::RedisStore, election: &str) -> leader_core::Result<()> {
    const EXPIRE_NOW: &str = r"
redis.call('DEL', KEYS[1])
local last, life = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+)\n(%x*)\n')
if last then redis.call('SET', KEYS[2], last .. '\n' .. life .. '\n0') end
return 1
";
    let lease = store.lease_key(election);
    let record = lease.strip_suffix(":lease").map(|k| format!("{k}:token")).unwrap_or_default();
    let _: i64 = store
        .client()
        .eval(EXPIRE_NOW, vec![lease, record], Vec::<String>::new())
        .await
        .map_err(|e| leader_core::Error::backend(format!("expiring the lease failed: {e}")))?;
    Ok(())
}
