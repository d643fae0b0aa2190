//! The LeaseStore operations of ZooKeeperStore against a real ZooKeeper.

mod common;

use std::time::Duration;

use leader_core::{Acquire, AcquireRequest, ErrorKind, LeaseStore, Metadata};
use leader_zookeeper::ZooKeeperStore;

fn req(election: &str, who: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-{}", uuid::Uuid::new_v4()),
        ttl: common::SESSION,
        metadata: Metadata::new(),
    }
}

#[tokio::test]
async fn acquire_hold_renew_release() {
    let Some(url) = common::url() else { return };
    let (a, b) = (common::store(&url).await, common::store(&url).await);
    let e = common::unique("ops");
    let (ra, rb) = (req(&e, "a"), req(&e, "b"));

    let Acquire::Acquired(la) = a.try_acquire(&ra).await.unwrap() else { panic!("a should lead") };
    assert_eq!(la.participant_id, "a");
    let Acquire::Held(Some(h)) = b.try_acquire(&rb).await.unwrap() else { panic!("b should see a") };
    assert_eq!((h.instance_id.as_str(), h.token), (ra.instance_id.as_str(), la.token));

    // Idempotent: same instance, same node, same token.
    let Acquire::Acquired(again) = a.try_acquire(&ra).await.unwrap() else { panic!("still a") };
    assert_eq!(again.token, la.token);
    let cur = b.current(&e).await.unwrap().unwrap();
    assert_eq!(cur.token, la.token);
    assert_eq!(a.list(&e).await.unwrap().len(), 1);

    let renewed = a.renew(&la, common::SESSION).await.unwrap().unwrap();
    assert_eq!(renewed.token, la.token);
    let md: Metadata = [("k".to_owned(), "v".to_owned())].into();
    let updated = a.update_metadata(&la, &md).await.unwrap().unwrap();
    assert_eq!(updated.metadata, md);
    assert_eq!(b.current(&e).await.unwrap().unwrap().metadata, md);
    // Someone else's lease (read by b, no handle) changes nothing.
    assert!(!b.release(&h).await.unwrap());
    assert!(b.renew(&h, common::SESSION).await.unwrap().is_none());

    assert!(a.release(&la).await.unwrap());
    assert!(!a.release(&la).await.unwrap());
    assert!(a.renew(&la, common::SESSION).await.unwrap().is_none());
    let Acquire::Acquired(lb) = b.try_acquire(&rb).await.unwrap() else { panic!("b's queued node leads now") };
    assert!(lb.token > la.token, "{} > {}", lb.token, la.token);
    b.withdraw(&e, &rb.instance_id).await.unwrap();
    assert!(b.current(&e).await.unwrap().is_none());
}

#[tokio::test]
async fn check_options_requires_the_session_timeout() {
    let Some(url) = common::url() else { return };
    let s = common::store(&url).await;
    assert_eq!(s.session_timeout(), common::SESSION);
    s.check_options(&common::options()).unwrap();
    let err = s.check_options(&leader_core::ElectionOptions::from_lease(Duration::from_secs(3))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("3s") && err.to_string().contains("4s"), "{err}");

    // Asking for less than the server's minimum (1 s) is clamped; the error says so. (Not much
    // less: the client gives its first connection attempt 2/5 of the requested timeout, and a
    // loaded machine can take longer than 80 ms, the budget a 200 ms request would leave.)
    let clamped = ZooKeeperStore::connect(&common::with_session(&url, Duration::from_millis(900))).await.unwrap();
    assert_eq!(clamped.session_timeout(), Duration::from_secs(1));
    let err = clamped.check_options(&leader_core::ElectionOptions::from_lease(Duration::from_millis(900))).unwrap_err();
    assert!(err.to_string().contains("clamped"), "{err}");
}

/// The testkit provider's `break_lease` deletes the holder's node behind its back: the holder's
/// next renew answers "no longer yours", and the queued candidate leads.
#[tokio::test]
async fn break_lease_takes_the_node_away() {
    use leader_testkit::Provider;
    let Some(url) = common::url() else { return };
    let provider = common::provider::ZkProvider::from_url(&url, common::SESSION).expect("a zk:// URL");
    let (a, b) = (common::store(&url).await, common::store(&url).await);
    let e = common::unique("broken");
    let (ra, rb) = (req(&e, "a"), req(&e, "b"));
    let Acquire::Acquired(la) = a.try_acquire(&ra).await.unwrap() else { panic!("a should lead") };
    assert!(matches!(b.try_acquire(&rb).await.unwrap(), Acquire::Held(Some(_))));
    provider.break_lease(&e).await.expect("implemented").unwrap();
    assert!(a.renew(&la, common::SESSION).await.unwrap().is_none(), "a's renew finds its node gone");
    let Acquire::Acquired(lb) = b.try_acquire(&rb).await.unwrap() else { panic!("b leads now") };
    assert!(lb.token > la.token);
    assert!(b.release(&lb).await.unwrap());
    // Nothing left to break.
    assert!(provider.break_lease(&e).await.expect("implemented").is_err());
}

/// Issue 22: `renew_batch` and `release_batch` answer every lease on its own, as `renew` and
/// `release` would, and reach the server in one request each (a `sync` and one multi-read to
/// renew; one multi-read and one multi-op to release), counted by a proxy in front of the server.
/// Of 50 leases of store `a`, some have their node deleted behind a's back, some were released,
/// some were released and then taken by store `b`, and one is presented with another instance id.
#[tokio::test]
async fn batches_answer_each_lease_as_its_single_call_would_in_one_request() {
    use common::proxy::{op, Proxy};
    use leader_core::{Lease, Renewal};
    use leader_testkit::Provider;

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Fate {
        Ours,
        Broken,
        Released,
        Taken,
        Impostor,
    }
    fn fate(i: usize) -> Fate {
        match i % 10 {
            _ if i == 9 => Fate::Impostor,
            3 => Fate::Broken,
            5 => Fate::Released,
            7 => Fate::Taken,
            _ => Fate::Ours,
        }
    }
    const N: usize = 50;
    // The node guard deletes a leader node not renewed within the request's ttl: long enough that
    // it never does during this test, however slow the machine.
    const LONG: Duration = Duration::from_secs(600);
    let req = |election: &str, who: &str| AcquireRequest { ttl: LONG, ..req(election, who) };

    let Some(url) = common::url() else { return };
    let provider = common::provider::ZkProvider::from_url(&url, common::SESSION).expect("a zk:// URL");
    let first = provider.hosts.split(',').next().unwrap_or(&provider.hosts).to_owned();
    let target = tokio::net::lookup_host(&first).await.expect("resolve").next().expect("an address");
    let proxy = Proxy::start(target).await;
    let a = ZooKeeperStore::builder(&proxy.addr.to_string())
        .root(&provider.root)
        .session_timeout(common::SESSION)
        .connect()
        .await
        .expect("connect through the proxy");
    let b = common::store(&url).await;

    let base = common::unique("batch");
    let mut leases: Vec<Lease> = Vec::new();
    for i in 0..N {
        let Acquire::Acquired(l) = a.try_acquire(&req(&format!("{base}-{i}"), "a")).await.unwrap() else {
            panic!("a should lead election {i}")
        };
        leases.push(l);
    }
    let originals = leases.clone();
    let mut taken = Vec::new();
    for (i, lease) in leases.iter_mut().enumerate() {
        match fate(i) {
            Fate::Ours => {}
            Fate::Broken => provider.break_lease(&lease.election).await.expect("implemented").unwrap(),
            Fate::Released => assert!(a.release(lease).await.unwrap()),
            Fate::Taken => {
                assert!(a.release(lease).await.unwrap());
                let Acquire::Acquired(l) = b.try_acquire(&req(&lease.election, "b")).await.unwrap() else {
                    panic!("b should lead election {i}")
                };
                taken.push(l);
            }
            Fate::Impostor => lease.instance_id = format!("impostor-{}", uuid::Uuid::new_v4()),
        }
    }

    let batch: Vec<Renewal> = leases.iter().map(|l| Renewal { lease: l.clone(), ttl: LONG }).collect();
    let before = [op::SYNC, op::MULTI_READ, op::GET_DATA].map(|o| proxy.requests(o));
    let answers = a.renew_batch(&batch).await;
    let after = [op::SYNC, op::MULTI_READ, op::GET_DATA].map(|o| proxy.requests(o));
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        match (fate(i), answer.unwrap()) {
            (Fate::Ours, Some(renewed)) => {
                assert_eq!((renewed.election.as_str(), renewed.token), (lease.election.as_str(), lease.token));
                assert_eq!(renewed.instance_id, lease.instance_id);
            }
            (Fate::Ours, None) => panic!("lease {i} is ours but the batch said no"),
            (_, None) => {}
            (f, Some(l)) => panic!("lease {i} ({f:?}) is not ours but the batch renewed it: {l:?}"),
        }
    }
    let sent: Vec<u64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    assert_eq!(sent, [1, 1, 0], "renew_batch: one sync, one multi-read, no single getData");
    // Another store's lease: not ours, and no request is needed to say so.
    assert!(a.renew_batch(&[Renewal { lease: taken[0].clone(), ttl: LONG }]).await[0].as_ref().unwrap().is_none());
    for l in &taken {
        assert_eq!(b.current(&l.election).await.unwrap().map(|h| h.token), Some(l.token));
    }

    // Release: ours are deleted; the broken, released, taken and impostor leases are not ours.
    let before = [op::MULTI_READ, op::MULTI, op::DELETE].map(|o| proxy.requests(o));
    let answers = a.release_batch(&leases).await;
    let after = [op::MULTI_READ, op::MULTI, op::DELETE].map(|o| proxy.requests(o));
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        assert_eq!(answer.unwrap(), fate(i) == Fate::Ours, "release of lease {i} ({:?})", fate(i));
        let holder = b.current(&lease.election).await.unwrap();
        match fate(i) {
            Fate::Taken => assert_eq!(holder.map(|h| h.participant_id), Some("b".to_owned())),
            // The impostor's release changed nothing: the real holder still leads.
            Fate::Impostor => assert_eq!(holder.map(|h| h.token), Some(lease.token)),
            _ => assert!(holder.is_none(), "election {i} still held after release_batch: {holder:?}"),
        }
    }
    let sent: Vec<u64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    assert_eq!(sent, [1, 1, 0], "release_batch: one multi-read, one multi-op, no single delete");
    assert!(a.renew_batch(&[]).await.is_empty() && a.release_batch(&[]).await.is_empty());

    // The impostor's election is still a's: its real lease releases on its own.
    assert!(a.release(&originals[9]).await.unwrap());
    for l in taken {
        assert!(b.release(&l).await.unwrap());
    }
}
