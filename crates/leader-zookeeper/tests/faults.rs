//! Faults: a partitioned leader (through a black-holing proxy) and a ZooKeeper server restart (on
//! a throwaway server of the test's own, so the shared one is never disturbed).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::{eventually, options, unique, SESSION};
use leader_core::Election;
use leader_testkit::TenureRecorder;
use leader_zookeeper::ZooKeeperStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// `host:port` and root of the test URL.
fn server_of(url: &str) -> (String, String) {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.split('?').next().unwrap_or(rest);
    let (hosts, root) = rest.split_once('/').expect("root");
    (hosts.to_owned(), format!("/{root}"))
}

async fn store_via(hosts: &str, root: &str) -> ZooKeeperStore {
    ZooKeeperStore::builder(hosts).root(root).session_timeout(SESSION).connect().await.expect("connect")
}

/// A partitioned leader steps down (local deadline) before the server can expire its session and
/// hand the election to another; when the partition heals it finds its session expired, opens a
/// new one and queues again.
#[tokio::test]
async fn partitioned_leader_steps_down_before_its_session_expires() {
    let Some(url) = common::url() else { return };
    let (hosts, root) = server_of(&url);
    let target: SocketAddr = match tokio::net::lookup_host(hosts.split(',').next().unwrap_or(&hosts)).await {
        Ok(mut addrs) => addrs.next().expect("an address"),
        Err(e) => panic!("resolve {hosts}: {e}"),
    };
    let proxy = Proxy::start(target).await;
    let (sa, sb) = (store_via(&proxy.addr.to_string(), &root).await, store_via(&hosts, &root).await);
    let name = unique("partition");
    let a = Election::new(Arc::new(sa.clone()), &name, "a", options()).unwrap();
    let b = Election::new(Arc::new(sb.clone()), &name, "b", options()).unwrap();
    let recorder = TenureRecorder::new();
    recorder.track(&a);
    recorder.track(&b);
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || b.current_leader().is_some()).await);
    let t1 = a.leadership().unwrap().token();

    let cut = Instant::now();
    proxy.blackhole(true);
    let (mut a_down, mut b_up) = (None, None);
    while b_up.is_none() && cut.elapsed() < Duration::from_secs(15) {
        let (al, bl) = (a.is_leader(), b.is_leader());
        assert!(!(al && bl), "two leaders at {:?} after the partition", cut.elapsed());
        if !al && a_down.is_none() {
            a_down = Some(cut.elapsed());
        }
        if bl {
            b_up = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (a_down, b_up) = (a_down.expect("a stepped down"), b_up.expect("b took over"));
    eprintln!("partition: a stepped down after {a_down:?}, b led after {b_up:?}");
    let opts = options();
    assert!(a_down <= opts.renew_deadline + Duration::from_millis(500), "a stepped down at {a_down:?}");
    // The server expires a's session one timeout after it last heard from it (a ping may have
    // been that, shortly before the cut); what matters is that a had stepped down by then.
    assert!(a_down < b_up, "b led at {b_up:?}, before a stepped down at {a_down:?}");
    let bound = leader_core::LeaseStore::capabilities(&sb).crash_bound(&opts) + Duration::from_secs(2);
    assert!(b_up <= bound, "b took over at {b_up:?}; bound {bound:?}");
    assert!(b.leadership().unwrap().token() > t1);

    proxy.blackhole(false);
    assert!(eventually(Duration::from_secs(15), || sa.watch_counters().sessions >= 2).await, "a new session");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.is_leader() && b.is_leader());
    b.stop().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await, "a queued again and leads");
    a.stop().await.unwrap();
    recorder.check().unwrap();
}

const JARS: [&str; 2] = ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"];

/// A standalone ZooKeeper of this test's own: its port, its data directory, its process.
struct Throwaway {
    port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Throwaway {
    async fn start(dir: PathBuf, port: u16) -> Throwaway {
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\ntickTime=500\nminSessionTimeout=1000\n\
                 maxSessionTimeout=60000\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\nforceSync=no\n",
                dir.join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let log = std::fs::File::create(dir.join("zookeeper.log")).expect("log file");
        let child = tokio::process::Command::new("java")
            .args(["-Xmx128m", "-cp", &JARS.join(":"), "org.apache.zookeeper.server.quorum.QuorumPeerMain"])
            .arg(&cfg)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start java");
        let server = Throwaway { port, dir, child: Some(child) };
        let end = Instant::now() + Duration::from_secs(30);
        while !server.serving().await {
            assert!(Instant::now() < end, "throwaway ZooKeeper did not start; see {}", server.dir.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn serving(&self) -> bool {
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        let mut out = String::new();
        conn.write_all(b"srvr").await.is_ok()
            && tokio::time::timeout(Duration::from_secs(2), conn.read_to_string(&mut out)).await.is_ok()
            && out.contains("Mode: standalone")
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        let end = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The server stops (killed, as a crash) and comes back with its data: the leader steps down by
/// its local deadline, an election happens again, and tokens keep growing (zxids survive).
#[tokio::test]
async fn server_restart_keeps_tokens_growing() {
    let Some(_url) = common::url() else { return };
    if JARS.iter().any(|j| !std::path::Path::new(j).exists()) {
        let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
        assert!(
            !required.split(',').any(|p| p.trim() == "zookeeper"),
            "LEADER_TEST_REQUIRE names zookeeper but {JARS:?} are missing (scripts/servers up zookeeper installs them)"
        );
        eprintln!("skipped: no local ZooKeeper installation for a throwaway server ({JARS:?})");
        return;
    }
    let dir = std::env::temp_dir().join(format!("leader-zk-restart-{:08x}", fastrand::u32(..)));
    let port = free_port();
    let mut server = Throwaway::start(dir.clone(), port).await;
    let hosts = format!("127.0.0.1:{port}");
    let (sa, sb) = (store_via(&hosts, "/restart").await, store_via(&hosts, "/restart").await);
    let name = unique("restart");
    let a = Election::new(Arc::new(sa.clone()), &name, "a", options()).unwrap();
    let b = Election::new(Arc::new(sb.clone()), &name, "b", options()).unwrap();
    let recorder = TenureRecorder::new();
    recorder.track(&a);
    recorder.track(&b);
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    b.start().await.unwrap();
    let t1 = a.leadership().unwrap().token();

    server.stop().await;
    assert!(
        eventually(options().renew_deadline + Duration::from_secs(1), || !a.is_leader()).await,
        "the leader steps down by its local deadline while the server is down"
    );
    assert!(!b.is_leader());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut server = Throwaway::start(dir.clone(), port).await;

    assert!(
        eventually(Duration::from_secs(20), || a.is_leader() || b.is_leader()).await,
        "someone leads after the restart"
    );
    let leader = if a.is_leader() { &a } else { &b };
    let t2 = leader.leadership().unwrap().token();
    assert!(t2 > t1, "token after restart {t2} > before {t1}");
    eprintln!(
        "restart: token {t1} before, {t2} after; sessions a={} b={}",
        sa.watch_counters().sessions,
        sb.watch_counters().sessions
    );
    for _ in 0..20 {
        assert!(!(a.is_leader() && b.is_leader()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    // Mutual exclusion across the restart: no two tenures overlapped, tokens grew.
    recorder.check().unwrap();
    drop((a, b, sa, sb));
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
