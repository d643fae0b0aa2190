//! Whole Redis topologies on loopback for the `topology_*` test binaries: a Redis Cluster (3
//! primaries + 3 replicas, ports 55001-55006, bus ports 65001-65006) and a Sentinel set (a
//! primary and a replica on 55101-55102, three sentinels on 55111-55113). State lives under the
//! worktree's `.servers/redis-cluster/` and `.servers/redis-sentinel/`; every process is a child
//! of the test and is killed when its topology is dropped. A server left on one of these ports by
//! an earlier run that was killed is stopped first.
//!
//! Also: the conformance subset runner and the overlap count the failover tests print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leader_testkit::{Provider, Tenure};

use super::servers_dir;

/// One test binary brings up one topology at a time, also under plain `cargo test` (threads).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the topology tests run here: they need what the Redis suite needs (they skip, with the
/// suite's skip line, where it skips) and then fail, never skip, without `redis-server`.
pub fn wanted() -> bool {
    if super::shared_url().is_none() {
        return false;
    }
    for bin in ["redis-server", "redis-cli"] {
        let found = Command::new(bin).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(
            found,
            "{bin} is not installed: the Redis topology tests need it (scripts/servers up redis installs it)"
        );
    }
    true
}

/// `redis-cli -p PORT ARGS...`, its output (empty if it failed or took more than 5 s).
pub fn cli(port: u16, args: &[&str]) -> String {
    let Ok(mut child) = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return String::new();
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                eprintln!("redis-cli -p {port} {args:?} did not answer within 5 s");
                let _ = child.kill();
                let _ = child.wait();
                return String::new();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    out
}

/// A field of `INFO`-style text (`name:value` lines).
pub fn field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.trim().strip_prefix(&format!("{name}:")).map(str::to_owned))
}

/// Polls `check` every 50 ms until it is true; panics after `limit`.
pub async fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One redis-server (or sentinel) process.
pub struct Node {
    pub port: u16,
    dir: PathBuf,
    /// Arguments after the config file.
    args: Vec<String>,
    sentinel: bool,
    child: Option<Child>,
}

impl Node {
    fn new(port: u16, dir: PathBuf, args: Vec<String>, sentinel: bool) -> Node {
        Node { port, dir, args, sentinel, child: None }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join(if self.sentinel { "sentinel.conf" } else { "redis.conf" })
    }

    /// Starts the process and waits until it answers on its port. These ports lie in Linux's
    /// ephemeral range, so an outgoing connection of another test may hold one for a moment: a
    /// server that cannot bind is started again, a few times.
    pub async fn start(&mut self) {
        stop_stale(self.port);
        std::fs::create_dir_all(&self.dir).unwrap();
        if !self.conf().exists() {
            // A config file of its own, so that CONFIG REWRITE (Sentinel's reconfiguration) works.
            std::fs::write(self.conf(), "").unwrap();
        }
        let mut attempts = 0;
        while !self.spawn().await {
            attempts += 1;
            assert!(attempts < 20, "redis-server could not bind port {} in 20 attempts", self.port);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One attempt; false if the port was in use.
    async fn spawn(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("redis-server");
        cmd.arg(self.conf());
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server starts");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if field(&cli(self.port, &["info", "server"]), "process_id").is_some_and(|p| p == pid.to_string()) {
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (a crash), and waits until the port is closed.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        until(Duration::from_secs(10), "the port closes", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        })
        .await;
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Changes the arguments used by the next [`start`](Self::start).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops a redis process an earlier, killed run left on `port` (these ports are reserved for these
/// tests): reads its pid from `INFO server` and kills it if its command line is redis'.
fn stop_stale(port: u16) {
    let Some(pid) = field(&cli(port, &["info", "server"]), "process_id") else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains("redis") && cmdline.contains(&port.to_string()) {
        eprintln!("stopping a redis-server left on port {port} by an earlier run (pid {pid})");
        let _ = Command::new("kill").args(["-9", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = servers_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Persistence off; a replica's full sync starts at once (Redis 7 waits 5 s for more replicas).
pub fn data_args() -> Vec<String> {
    ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"].iter().map(|s| (*s).to_owned()).collect()
}

/// Cluster node timeout: how long a primary may be unreachable before its replica takes over.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A Redis Cluster: 3 primaries + 3 replicas.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub started: Instant,
}

impl Cluster {
    pub const PORTS: [u16; 6] = [55001, 55002, 55003, 55004, 55005, 55006];

    pub async fn start() -> Cluster {
        let root = fresh_dir("redis-cluster");
        let mut nodes = Vec::new();
        for port in Self::PORTS {
            let mut args = data_args();
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &CLUSTER_NODE_TIMEOUT.as_millis().to_string(),
                ]
                .iter()
                .map(|s| (*s).to_owned()),
            );
            nodes.push(Node::new(port, root.join(port.to_string()), args, false));
        }
        let started = Instant::now();
        for n in &mut nodes {
            n.start().await;
        }
        println!("cluster: 6 nodes up after {:.2?}", started.elapsed());
        let addrs: Vec<String> = Self::PORTS.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        // `redis-cli --cluster create` waits for the nodes to agree for as long as it takes: bound it.
        let log = root.join("create.log");
        let mut create = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = create.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = create.kill();
                let _ = create.wait();
                panic!(
                    "redis-cli --cluster create did not finish in 60 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "redis-cli --cluster create failed:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        println!("cluster: created after {:.2?}", started.elapsed());
        let cluster = Cluster { nodes, started };
        until(Duration::from_secs(30), "cluster_state:ok on every node, every replica in sync", || {
            Self::PORTS.iter().all(|&p| {
                let info = cli(p, &["cluster", "info"]);
                field(&info, "cluster_state").as_deref() == Some("ok")
                    && field(&info, "cluster_known_nodes").as_deref() == Some("6")
                    && {
                        let repl = cli(p, &["info", "replication"]);
                        field(&repl, "role").as_deref() == Some("master")
                            || field(&repl, "master_link_status").as_deref() == Some("up")
                    }
            })
        })
        .await;
        println!("cluster: state ok, replicas in sync after {:.2?}", started.elapsed());
        cluster
    }

    /// The store URL (every node listed).
    pub fn url(&self) -> String {
        let rest: Vec<String> = Self::PORTS[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", Self::PORTS[0], rest.join("&"))
    }

    fn live_port(&self) -> u16 {
        self.nodes.iter().find(|n| n.running()).map(|n| n.port).expect("a live node")
    }

    /// The port of the primary that serves `slot`, as a live node sees it (`CLUSTER NODES`).
    pub fn primary_of(&self, slot: u16) -> Option<u16> {
        let nodes = cli(self.live_port(), &["cluster", "nodes"]);
        nodes.lines().find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 9 || !cols[2].contains("master") || cols[2].contains("fail") {
                return None;
            }
            let serves = cols[8..].iter().any(|range| {
                let mut ends = range.split('-').filter_map(|n| n.parse::<u16>().ok());
                match (ends.next(), ends.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            let port = cols[1].split(['@', ':']).nth(1)?.parse().ok()?;
            serves.then_some(port)
        })
    }

    pub fn node(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of the cluster")
    }
}

/// Sentinel's `down-after-milliseconds`: how long the primary may be unreachable before failover.
pub const SENTINEL_DOWN_AFTER: Duration = Duration::from_millis(1000);

/// How a Sentinel set deviates from the plain one.
#[derive(Default)]
pub struct SentinelSetup {
    /// The replica replicates from this port (a proxy in front of the primary).
    pub replicate_from: Option<u16>,
    /// The sentinels monitor the primary at this port (a proxy in front of it).
    pub monitor: Option<u16>,
    /// More arguments for the primary.
    pub primary_args: Vec<String>,
}

/// A Sentinel set: one primary, one replica, three sentinels (quorum 2).
pub struct Sentinel {
    pub data: Vec<Node>,
    pub sentinels: Vec<Node>,
}

impl Sentinel {
    pub const DATA: [u16; 2] = [55101, 55102];
    pub const SENTINELS: [u16; 3] = [55111, 55112, 55113];
    pub const NAME: &'static str = "mymaster";

    pub async fn start() -> Sentinel {
        Self::start_with(SentinelSetup::default()).await
    }

    pub async fn start_with(setup: SentinelSetup) -> Sentinel {
        // Sentinel "fixes" a replica that replicates from another address than the one it monitors
        // once failover-timeout has passed since it found it, so that timeout is then long.
        let odd_replica = setup.replicate_from.is_some() && setup.replicate_from != setup.monitor;
        let failover_timeout = if odd_replica { 120_000 } else { 4_000 };
        let root = fresh_dir("redis-sentinel");
        let [p, r] = Self::DATA;
        let mut primary_args = data_args();
        primary_args.extend(setup.primary_args.iter().cloned());
        let mut primary = Node::new(p, root.join(p.to_string()), primary_args, false);
        let mut replica_args = data_args();
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            setup.replicate_from.unwrap_or(p).to_string(),
        ]);
        let mut replica = Node::new(r, root.join(r.to_string()), replica_args, false);
        primary.start().await;
        replica.start().await;
        until(Duration::from_secs(20), "the replica is in sync", || {
            field(&cli(r, &["info", "replication"]), "master_link_status").as_deref() == Some("up")
        })
        .await;
        let mut sentinels = Vec::new();
        for port in Self::SENTINELS {
            let dir = root.join(port.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("sentinel.conf"),
                format!(
                    "sentinel monitor {name} 127.0.0.1 {monitored} 2\n\
                     sentinel down-after-milliseconds {name} {down}\n\
                     sentinel failover-timeout {name} {failover_timeout}\n\
                     sentinel parallel-syncs {name} 1\n",
                    name = Self::NAME,
                    monitored = setup.monitor.unwrap_or(p),
                    down = SENTINEL_DOWN_AFTER.as_millis()
                ),
            )
            .unwrap();
            let mut s = Node::new(port, dir, Vec::new(), true);
            s.start().await;
            sentinels.push(s);
        }
        let set = Sentinel { data: vec![primary, replica], sentinels };
        // Sentinels find the replica and each other through the primary (hello messages every 2 s).
        until(Duration::from_secs(30), "every sentinel knows the replica and the two other sentinels", || {
            Self::SENTINELS.iter().all(|&s| {
                let master = cli(s, &["sentinel", "master", Self::NAME]);
                let lines: Vec<&str> = master.lines().collect();
                let get = |k: &str| lines.iter().position(|l| *l == k).and_then(|i| lines.get(i + 1)).copied();
                get("num-slaves") == Some("1") && get("num-other-sentinels") == Some("2")
            })
        })
        .await;
        set
    }

    /// The store URL (every sentinel listed).
    pub fn url(&self) -> String {
        let rest: Vec<String> = Self::SENTINELS[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={}&{}",
            Self::SENTINELS[0],
            Self::NAME,
            rest.join("&")
        )
    }

    /// The primary's port as the sentinels report it (the first sentinel that answers).
    pub fn primary(&self) -> Option<u16> {
        Self::SENTINELS.iter().find_map(|&s| {
            let out = cli(s, &["sentinel", "get-master-addr-by-name", Self::NAME]);
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    pub fn node(&mut self, port: u16) -> &mut Node {
        self.data.iter_mut().find(|n| n.port == port).expect("a data node")
    }
}

/// The data folder of a node, for logs in failure messages.
pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

/// Runs the named conformance scenarios against `provider`, 8 at a time, and returns the
/// failures (name, message) after printing every verdict and note.
pub async fn run_scenarios(provider: Arc<dyn Provider>, names: &[&str]) -> Vec<(String, String)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for name in names {
        let scenario = leader_testkit::SCENARIOS
            .iter()
            .find(|s| s.name == *name)
            .unwrap_or_else(|| panic!("no conformance scenario {name}"));
        let (provider, permits) = (provider.clone(), permits.clone());
        let run = scenario.run;
        tasks.push((
            *name,
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let verdict = match tokio::time::timeout(Duration::from_secs(120), run(provider)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(f)) => Err(f.to_string()),
                    Err(_) => Err("did not finish within 120 s".to_owned()),
                };
                (verdict, started.elapsed())
            }),
        ));
    }
    let mut failures = Vec::new();
    for (name, task) in tasks {
        match task.await {
            Ok((Ok(()), took)) => println!("  ok    {name} ({took:.1?})"),
            Ok((Err(msg), took)) => {
                println!("  FAIL  {name} ({took:.1?}): {msg}");
                failures.push((name.to_owned(), msg));
            }
            Err(e) => {
                println!("  FAIL  {name}: panicked: {e}");
                failures.push((name.to_owned(), format!("panicked: {e}")));
            }
        }
    }
    failures
}

/// Pairs of tenures of different instances that overlap, with the overlap's length.
pub fn overlaps(tenures: &[Tenure]) -> Vec<(String, String, Duration)> {
    let mut out = Vec::new();
    for (i, a) in tenures.iter().enumerate() {
        for b in &tenures[i + 1..] {
            if a.instance_id == b.instance_id {
                continue;
            }
            let end = |t: &Tenure| t.ended.unwrap_or_else(tokio::time::Instant::now);
            let start = a.acquired.max(b.acquired);
            let stop = end(a).min(end(b));
            if start < stop {
                out.push((
                    format!("{}#{}", a.participant_id, a.token),
                    format!("{}#{}", b.participant_id, b.token),
                    stop - start,
                ));
            }
        }
    }
    out
}

/// Tenures as `participant#token [from..to]` relative to `zero`, for the failover reports.
pub fn timeline(tenures: &[Tenure], zero: tokio::time::Instant) -> String {
    let at = |i: tokio::time::Instant| {
        let (d, sign) = if i >= zero { (i - zero, "") } else { (zero - i, "-") };
        format!("{sign}{:.2}s", d.as_secs_f64())
    };
    let mut by_start: BTreeMap<tokio::time::Instant, String> = BTreeMap::new();
    for t in tenures {
        by_start.insert(
            t.acquired,
            format!("{} [{} .. {}]", t.participant_id, at(t.acquired), t.ended.map_or_else(|| "leads".to_owned(), at)),
        );
    }
    by_start.into_values().collect::<Vec<_>>().join(", ")
}

/// The conformance suite's view of a topology: a new store handle (own connections) per
/// participant, 2 s leases, no fault proxy (partitions use the testkit's `FaultLayer`).
pub struct TopologyProvider {
    pub url: String,
    pub key_prefix: String,
    admin: leader_redis::RedisStore,
}

impl TopologyProvider {
    pub async fn new(url: &str) -> TopologyProvider {
        let key_prefix = format!("topo-{:08x}", fastrand::u32(..));
        let build = leader_redis::RedisStore::builder(url).key_prefix(&key_prefix).build();
        let admin = tokio::time::timeout(Duration::from_secs(30), build)
            .await
            .unwrap_or_else(|_| panic!("connecting to {url} took more than 30 s"))
            .unwrap();
        TopologyProvider { url: url.to_owned(), key_prefix, admin }
    }
}

#[leader_core::async_trait]
impl Provider for TopologyProvider {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn store(&self) -> leader_core::Result<Arc<dyn leader_core::LeaseStore>> {
        let store = leader_redis::RedisStore::builder(&self.url)
            .key_prefix(&self.key_prefix)
            .max_lease(Duration::from_secs(10))
            .unresponsive_timeout(Duration::from_millis(800))
            .connection_timeout(Duration::from_millis(800))
            .build()
            .await?;
        Ok(Arc::new(store))
    }

    fn options(&self) -> leader_core::ElectionOptions {
        leader_core::ElectionOptions::from_lease(Duration::from_secs(2))
    }

    async fn break_lease(&self, election: &str) -> Option<leader_core::Result<()>> {
        Some(super::break_lease(&self.admin, election).await)
    }
}

/// The scenarios the topology binaries run: those that need no fault proxy in front of one server.
pub const SUBSET: &[&str] = &[
    "concurrent_start",
    "incumbent_stability",
    "restart_after_stop",
    "graceful_release_takeover",
    "release_hands_over",
    "late_release_cannot_touch_successor",
    "tokens_strictly_increase",
    "idempotent_acquire",
    "batch_answers_each_lease",
    "list_elections",
    "crash_takeover",
    "run_as_leader_exclusive",
    "metadata_visible_to_followers",
    "elections_share_one_handle",
    "paused_leader_is_fenced",
];

/// Starts `n` participants of `election`, each on its own store from `make`, all tracked by one
/// recorder; returns them once one leads.
pub async fn participants<F, Fut>(
    election: &str,
    n: usize,
    lease: Duration,
    make: F,
) -> (Vec<leader_core::Election>, leader_testkit::TenureRecorder)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = leader_redis::RedisStore>,
{
    let recorder = leader_testkit::TenureRecorder::new();
    let mut elections = Vec::new();
    for i in 0..n {
        let store = Arc::new(make().await);
        let e = leader_core::Election::new(
            store,
            election,
            &format!("p{i}"),
            leader_core::ElectionOptions::from_lease(lease),
        )
        .unwrap();
        recorder.track(&e);
        e.start().await.unwrap();
        elections.push(e);
    }
    recorder.wait_for(Duration::from_secs(15), |t| !t.is_empty()).await.unwrap();
    (elections, recorder)
}

/// What a failover test measured.
pub struct Failover {
    /// From the kill to the old leader's step-down.
    pub stepped_down: Option<Duration>,
    /// From the kill to the first tenure that began after it.
    pub new_leader: Duration,
    pub overlaps: Vec<(String, String, Duration)>,
    pub timeline: String,
}

/// Waits for a tenure that begins after `killed`, lets the election run for `observe` more,
/// stops every participant and reports.
pub async fn after_failover(
    elections: &[leader_core::Election],
    recorder: &leader_testkit::TenureRecorder,
    killed: tokio::time::Instant,
    observe: Duration,
    limit: Duration,
) -> Failover {
    let tenures = recorder.wait_for(limit, |t| t.iter().any(|t| t.acquired > killed)).await;
    let tenures = match tenures {
        Ok(t) => t,
        Err(e) => panic!("{e} (timeline from the kill: {})", timeline(&recorder.tenures(), killed)),
    };
    let new_leader =
        tenures.iter().filter(|t| t.acquired > killed).map(|t| t.acquired - killed).min().unwrap_or_default();
    tokio::time::sleep(observe).await;
    for e in elections {
        e.stop().await.unwrap();
    }
    let tenures = recorder.tenures();
    let stepped_down = tenures
        .iter()
        .filter(|t| t.acquired <= killed)
        .filter_map(|t| t.ended)
        .map(|end| end.saturating_duration_since(killed))
        .max();
    Failover { stepped_down, new_leader, overlaps: overlaps(&tenures), timeline: timeline(&tenures, killed) }
}
