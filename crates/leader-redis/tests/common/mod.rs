//! Test helpers: the shared server's URL (with the skip / require rule), and private throwaway
//! redis-server processes for tests that restart, flush or kill connections, so that they never
//! disturb the tests running at the same time against the shared server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::prelude::*;

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

/// A redis-server of this test alone, on a free loopback port, persistence off. Killed on drop.
pub struct TempRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TempRedis {
    /// Starts one (only when the shared server is configured, so the suite's skip rule applies).
    pub async fn start() -> TempRedis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("leader-redis-test-{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = TempRedis { port, dir, child: None };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/servers up redis installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server (SIGKILL: nothing is saved, as after a crash) and waits for the port to close.
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

    /// Kills and starts it again on the same port, with empty data.
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
