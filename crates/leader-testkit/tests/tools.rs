//! The suite's tools on their own: the tenure checker, the fault layer, the fault proxy.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use leader_core::layer::{LeaseStoreExt, Op};
use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, ErrorKind, FencingToken, LeaseStore};
use leader_memory::MemoryStore;
use leader_testkit::{
    check_tenures, FaultControl, FaultLayer, FaultProxy, OpCounter, ProxyMode, Tenure, TenureRecorder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

fn tenure(who: &str, token: u64, from_ms: u64, to_ms: Option<u64>, base: Instant) -> Tenure {
    Tenure {
        participant_id: who.to_owned(),
        instance_id: who.to_owned(),
        token: FencingToken::new(token),
        acquired: base + Duration::from_millis(from_ms),
        ended: to_ms.map(|t| base + Duration::from_millis(t)),
        reason: None,
    }
}

#[test]
fn the_checker_catches_overlap_and_stale_tokens() {
    let base = Instant::now();
    let ok = [tenure("a", 1, 0, Some(10), base), tenure("b", 2, 10, Some(20), base), tenure("a", 3, 25, None, base)];
    check_tenures(&ok).unwrap();
    let overlap = [tenure("a", 1, 0, Some(10), base), tenure("b", 2, 9, Some(20), base)];
    assert!(check_tenures(&overlap).unwrap_err().contains("two leaders"));
    let open = [tenure("a", 1, 0, None, base), tenure("b", 2, 5, Some(6), base)];
    assert!(check_tenures(&open).unwrap_err().contains("two leaders"), "an open tenure overlaps everything after it");
    let stale = [tenure("a", 2, 0, Some(10), base), tenure("b", 2, 11, Some(20), base)];
    assert!(check_tenures(&stale).unwrap_err().contains("did not grow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_catches_two_leaders_from_real_streams() {
    // Two participants on two separate stores both lead "the same" election: the recorder must see it.
    let rec = TenureRecorder::new();
    let a = Election::new(Arc::new(MemoryStore::new()), "jobs", "a", ElectionOptions::default()).unwrap();
    let b = Election::new(Arc::new(MemoryStore::new()), "jobs", "b", ElectionOptions::default()).unwrap();
    rec.track(&a);
    rec.track(&b);
    assert!(a.try_acquire().await.unwrap());
    assert!(b.try_acquire().await.unwrap());
    let err = rec.check().unwrap_err();
    assert!(err.message().contains("two leaders") || err.message().contains("did not grow"), "{err}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

fn request(instance: &str) -> AcquireRequest {
    AcquireRequest {
        election: "jobs".to_owned(),
        participant_id: "p".to_owned(),
        instance_id: instance.to_owned(),
        ttl: Duration::from_secs(5),
        metadata: Default::default(),
    }
}

#[tokio::test]
async fn the_fault_layer_injects_each_fault() {
    let memory = MemoryStore::new();
    let control = FaultControl::new();
    let counter = OpCounter::new();
    let store: Arc<dyn LeaseStore> = counter.wrap(Arc::new(memory.clone())).layer(FaultLayer::new(control.clone()));

    // Outage: calls fail, watch refused, open watches end.
    let mut watch = store.watch("jobs", None).expect("memory pushes");
    control.set_unavailable(true);
    assert_eq!(store.try_acquire(&request("i1")).await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert!(store.watch("jobs", None).is_none());
    assert!(timeout(Duration::from_secs(1), watch.next()).await.unwrap().is_none(), "watch ends in an outage");
    control.set_unavailable(false);

    // Lost reply: applied, answered with an error.
    control.lose_replies(Op::TryAcquire, 1);
    assert!(store.try_acquire(&request("i1")).await.is_err());
    assert_eq!(control.lost_replies(), 1);
    assert_eq!(store.current("jobs").await.unwrap().unwrap().instance_id, "i1");
    let Acquire::Acquired(lease) = store.try_acquire(&request("i1")).await.unwrap() else { panic!("not ours") };

    // Every Nth call fails.
    control.fail_every(2);
    let results: Vec<bool> =
        futures::future::join_all((0..4).map(|_| store.current("jobs"))).await.iter().map(Result::is_ok).collect();
    assert_eq!(results.iter().filter(|ok| !**ok).count(), 2, "{results:?}");
    control.fail_every(0);

    // Latency.
    control.set_op_latency(Op::Current, Some(Duration::from_millis(100)));
    let t = Instant::now();
    store.current("jobs").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(100));
    control.set_op_latency(Op::Current, None);

    // Hang until released; other ops pass.
    control.hang(&[Op::Renew]);
    let hung = tokio::spawn({
        let store = store.clone();
        let lease = lease.clone();
        async move { store.renew(&lease, Duration::from_secs(5)).await }
    });
    store.current("jobs").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hung.is_finished(), "a hung call returned");
    control.release_hang();
    assert!(hung.await.unwrap().unwrap().is_some());
    assert!(counter.get(Op::Renew) >= 1 && counter.get(Op::TryAcquire) >= 2);
}

async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, msg: &[u8], limit: Duration) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut buf = vec![0u8; msg.len()];
    match timeout(limit, s.read_exact(&mut buf)).await {
        Ok(r) => r.map(|_| buf),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_proxy_passes_blackholes_delays_and_resets() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"hello", Duration::from_secs(2)).await.unwrap(), b"hello");

    proxy.set_mode(ProxyMode::Blackhole);
    let err = round_trip(&mut c, b"lost?", Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // A new connection is accepted but answered by nobody.
    let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut c2, b"x", Duration::from_millis(200)).await.is_err());
    // Healing delivers what was held, as TCP would after a partition.
    proxy.set_mode(ProxyMode::Pass);
    let mut buf = [0u8; 5];
    timeout(Duration::from_secs(2), c.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"lost?");

    proxy.set_mode(ProxyMode::Latency(Duration::from_millis(150)));
    let t = Instant::now();
    round_trip(&mut c, b"slow", Duration::from_secs(2)).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "latency applies each way: {:?}", t.elapsed());

    proxy.set_mode(ProxyMode::Reset);
    let mut buf = [0u8; 1];
    let r = timeout(Duration::from_secs(2), c.read(&mut buf)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "a reset connection must be closed, got {r:?}");
    // A new connection is reset at once (the reset may already hit the connect).
    if let Ok(mut c3) = TcpStream::connect(proxy.addr()).await {
        let r = timeout(Duration::from_secs(2), c3.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "new connections are closed at once while resetting, got {r:?}");
    }

    proxy.set_mode(ProxyMode::Pass);
    let mut c4 = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c4, b"back", Duration::from_secs(2)).await.unwrap(), b"back");
}
