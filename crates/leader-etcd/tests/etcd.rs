//! etcd-specific behaviour against the test server (`LEADER_TEST_ETCD_URL`): what the key holds,
//! tokens as create revisions, the lease rules, no keep-alive outside `renew`, and an election
//! that survives its key deleted, its lease revoked and the history compacted, all from outside.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{acquired, eventually, options, request, store, unique, url, LEASE};
use futures::StreamExt;
use leader_core::{Acquire, ChangeKind, Election, ElectionOptions, ErrorKind, LeaseStore};
use leader_etcd::{etcd_client, EtcdStore};

/// The raw key of `election`, as another etcd client sees it.
async fn raw_key(store: &EtcdStore, election: &str) -> Option<etcd_client::KeyValue> {
    let key = store.key(election).unwrap();
    store.client().await.unwrap().get(key, None).await.unwrap().take_kvs().into_iter().next()
}

#[tokio::test]
async fn the_key_holds_the_holder_bound_to_its_lease_and_the_token_is_its_create_revision() {
    let Some(url) = url() else { return };
    let s = store(&url).await;
    let e = unique("layout");
    let mut req = request(&e, "web-1", "inst-1");
    req.metadata.insert("version".into(), "1.2.3".into());
    let lease = acquired(s.try_acquire(&req).await.unwrap());
    let kv = raw_key(&s, &e).await.expect("the key exists");
    assert_eq!(kv.key_str().unwrap(), format!("{}/{e}", s.prefix()));
    assert_eq!(lease.token.get(), kv.create_revision() as u64);
    let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(value["participant_id"], "web-1");
    assert_eq!(value["instance_id"], "inst-1");
    assert_eq!(value["metadata"]["version"], "1.2.3");
    // Bound to an etcd lease of the lease's TTL.
    assert_ne!(kv.lease(), 0);
    let ttl = s.client().await.unwrap().lease_time_to_live(kv.lease(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), LEASE.as_secs() as i64);
    // The same instance again: same token, same key (no new revision of creation).
    let again = acquired(s.try_acquire(&req).await.unwrap());
    assert_eq!(again.token, lease.token);
    // A metadata update keeps the token and the lease.
    let mut md = req.metadata.clone();
    md.insert("version".into(), "2".into());
    let updated = s.update_metadata(&lease, &md).await.unwrap().expect("still ours");
    assert_eq!(updated.token, lease.token);
    let kv2 = raw_key(&s, &e).await.unwrap();
    assert_eq!((kv2.create_revision(), kv2.lease()), (kv.create_revision(), kv.lease()));
    assert!(s.current(&e).await.unwrap().is_some_and(|h| h.metadata == md));
    assert!(s.release(&updated).await.unwrap());
    assert!(raw_key(&s, &e).await.is_none());
}

#[tokio::test]
async fn a_lease_nobody_renews_expires_on_the_server() {
    // No background keep-alive: only renew (and acquire) keep an etcd lease alive.
    let Some(url) = url() else { return };
    let s = store(&url).await;
    let e = unique("unrenewed");
    acquired(s.try_acquire(&request(&e, "p", "i")).await.unwrap());
    // etcd's lessor checks for expired leases every 500 ms.
    let gone = async {
        loop {
            if s.current(&e).await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let started = tokio::time::Instant::now();
    tokio::time::timeout(LEASE * 2 + Duration::from_secs(2), gone).await.expect("the key expired");
    assert!(started.elapsed() >= LEASE - Duration::from_millis(200), "expired after {:?}", started.elapsed());
    let other = acquired(s.try_acquire(&request(&e, "q", "j")).await.unwrap());
    assert_eq!(other.participant_id, "q");
}

#[tokio::test]
async fn leases_are_whole_seconds_at_least_the_server_minimum() {
    let Some(url) = url() else { return };
    let s = store(&url).await;
    assert_eq!(s.min_lease(), Duration::from_secs(2), "etcd's minimum TTL with a 1 s election timeout");
    s.check_options(&ElectionOptions::from_lease(Duration::from_secs(2))).unwrap();
    s.check_options(&ElectionOptions::from_lease(Duration::from_secs(15))).unwrap();
    for (lease, says) in [
        (Duration::from_millis(2500), ["2s 500ms", "whole"]),
        (Duration::from_secs(1), ["1s", "smallest lease TTL 2s"]),
    ] {
        let err = s.check_options(&ElectionOptions::from_lease(lease)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        for word in says {
            assert!(err.to_string().contains(word), "{err}");
        }
        let err = Election::new(Arc::new(s.clone()), "x", "p", ElectionOptions::from_lease(lease)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        let mut req = request("x", "p", "i");
        req.ttl = lease;
        assert_eq!(s.try_acquire(&req).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}

/// A leader and a follower on handles of their own; returns them started, the leader leading.
async fn pair(url: &str, election: &str) -> (Election, Election) {
    let a = Election::new(Arc::new(store(url).await), election, "a", options()).unwrap();
    let b = Election::new(Arc::new(store(url).await), election, "b", options()).unwrap();
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await, "a leads");
    b.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || b.current_leader().is_some_and(|l| l.participant_id == "a")).await,
        "b sees a"
    );
    (a, b)
}

/// Who leads within `limit` (exactly one), and its token.
async fn one_leader(all: &[&Election], limit: Duration) -> (String, u64) {
    assert!(
        eventually(limit, || all.iter().filter(|e| e.is_leader()).count() == 1).await,
        "exactly one leader within {limit:?}"
    );
    let l = all.iter().find(|e| e.is_leader()).unwrap();
    (l.participant_id().to_owned(), l.leadership().unwrap().token().get())
}

#[tokio::test]
async fn key_deleted_from_outside_ends_the_tenure_and_someone_leads_again_with_a_greater_token() {
    let Some(url) = url() else { return };
    let e = unique("deleted");
    let (a, b) = pair(&url, &e).await;
    let first = a.leadership().unwrap().token().get();
    let mut changes = a.changes();
    let admin = store(&url).await;
    admin.client().await.unwrap().delete(admin.key(&e).unwrap(), None).await.unwrap();
    // a learns it at its next renew (every lease/3) and steps down at once; b is woken by the
    // watch (the key's deletion) and campaigns.
    let lost = async {
        while let Some(c) = changes.next().await {
            if c.kind == ChangeKind::Lost {
                return c;
            }
        }
        panic!("changes ended");
    };
    let lost = tokio::time::timeout(options().renew_interval + Duration::from_secs(2), lost).await.expect("a lost");
    assert!(!lost.is_leader);
    let (_, token) = one_leader(&[&a, &b], LEASE + Duration::from_secs(2)).await;
    assert!(token > first, "{token} > {first}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn lease_revoked_from_outside_ends_the_tenure_and_a_follower_takes_over() {
    let Some(url) = url() else { return };
    let e = unique("revoked");
    let (a, b) = pair(&url, &e).await;
    let first = a.leadership().unwrap().token().get();
    let admin = store(&url).await;
    let kv = raw_key(&admin, &e).await.expect("a's key");
    let revoked = tokio::time::Instant::now();
    admin.client().await.unwrap().lease_revoke(kv.lease()).await.unwrap();
    // The revoke deletes the key: the follower's watch fires and it takes over at once; the old
    // leader learns at its next renew (its keep-alive finds no lease).
    assert!(eventually(Duration::from_secs(2), || b.is_leader()).await, "b took over");
    let took = revoked.elapsed();
    assert!(eventually(options().renew_interval + Duration::from_secs(2), || !a.is_leader()).await, "a stepped down");
    let token = b.leadership().unwrap().token().get();
    assert!(token > first, "{token} > {first}");
    eprintln!("leader-etcd: takeover {took:?} after the revoke");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn renew_answers_not_ours_after_the_key_or_the_lease_is_gone() {
    let Some(url) = url() else { return };
    let s = store(&url).await;
    for how in ["delete the key", "revoke the lease"] {
        let e = unique("gone");
        let lease = acquired(s.try_acquire(&request(&e, "p", "i")).await.unwrap());
        let kv = raw_key(&s, &e).await.unwrap();
        if how == "delete the key" {
            s.client().await.unwrap().delete(kv.key(), None).await.unwrap();
        } else {
            s.client().await.unwrap().lease_revoke(kv.lease()).await.unwrap();
        }
        assert!(s.renew(&lease, LEASE).await.unwrap().is_none(), "{how}: renew");
        assert!(s.update_metadata(&lease, &Default::default()).await.unwrap().is_none(), "{how}: update");
        assert!(!s.release(&lease).await.unwrap(), "{how}: release");
        // The same participant acquires again, with a new token.
        let again = acquired(s.try_acquire(&request(&e, "p", "i")).await.unwrap());
        assert!(again.token > lease.token, "{how}: {} > {}", again.token, lease.token);
        assert!(s.release(&again).await.unwrap());
    }
}

#[tokio::test]
async fn compaction_while_an_election_runs() {
    let Some(url) = url() else { return };
    let e = unique("compacted");
    let (a, b) = pair(&url, &e).await;
    let admin = store(&url).await;
    let mut client = admin.client().await.unwrap();
    let mut tokens = vec![a.leadership().unwrap().token().get()];
    let parts = [&a, &b];
    for round in 0..4 {
        // Compact the whole history up to now (as --auto-compaction would), then hand over.
        let rev = client.get("compaction-probe", None).await.unwrap().header().unwrap().revision();
        client.compact(rev, None).await.unwrap();
        let leader = parts.iter().find(|p| p.is_leader()).expect("someone leads");
        let other = parts.iter().find(|p| p.participant_id() != leader.participant_id()).unwrap();
        leader.release().await.unwrap();
        // The follower's watch, started before the compaction, still wakes it.
        assert!(eventually(Duration::from_secs(2), || other.is_leader()).await, "round {round}: handover");
        let token = other.leadership().unwrap().token().get();
        assert!(token > *tokens.last().unwrap(), "round {round}: {token} after {tokens:?}");
        tokens.push(token);
        // Renewals go on over the compacted history.
        tokio::time::sleep(options().renew_interval * 2).await;
        assert!(other.is_leader(), "round {round}: still leads after renewing");
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn watch_hints_follow_the_key() {
    let Some(url) = url() else { return };
    let s = store(&url).await;
    let e = unique("watched");
    let mut w = s.watch(&e, None).expect("a watch");
    // One hint once the watch is in place (a change just before it would otherwise go unseen).
    tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("owed hint").expect("open");
    let other = store(&url).await;
    let lease = acquired(other.try_acquire(&request(&e, "p", "i")).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("hint on acquire").expect("open");
    other.release(&lease).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("hint on release").expect("open");
    assert!(matches!(s.try_acquire(&request(&e, "q", "j")).await.unwrap(), Acquire::Acquired(_)));
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers() {
    for bad in ["etcd://h:0/x", "etcd://u:hunter2@h:1/x?bogus=1", "etcd://h:1/a b"] {
        let err = EtcdStore::connect(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    // Nothing listens on port 1: Unavailable, after the connect timeout.
    let err = EtcdStore::connect("etcd://127.0.0.1:1/x?connect_timeout=1s&request_timeout=1s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn renews_cut_short_leave_nothing_behind_for_the_next_one() {
    // A renew's keep-alive goes over a stream kept open per lease; a call dropped half-way (the
    // driver's operation_timeout) must not leave its answer for the next call to read.
    let Some(url) = url() else { return };
    let s = store(&url).await;
    let e = unique("cut-short");
    let lease = acquired(s.try_acquire(&request(&e, "p", "i")).await.unwrap());
    for i in 0..30u64 {
        // Cut at different points of the exchange.
        let _ = tokio::time::timeout(Duration::from_micros(20 * i), s.renew(&lease, LEASE)).await;
        assert!(s.renew(&lease, LEASE).await.unwrap().is_some(), "renew {i} after a cut-short one");
    }
    // Revoked now: the next renew says so, even over the open stream.
    let kv = raw_key(&s, &e).await.unwrap();
    s.client().await.unwrap().lease_revoke(kv.lease()).await.unwrap();
    assert!(s.renew(&lease, LEASE).await.unwrap().is_none());
}

/// Issue 22: `renew_batch` and `release_batch` answer every lease on its own, as `renew` and
/// `release` would (the batch checks all keys in one transaction of nested ones, so one bad lease
/// must not fail the others). Of 50 leases of store `a`: some have their key deleted or their etcd
/// lease revoked from outside, some were released, some released and then taken by store `b`, one
/// carries a wrong token, and one is presented without its handle (renewed on a fresh etcd lease).
#[tokio::test]
async fn batches_answer_each_lease_as_its_single_call_would() {
    use leader_core::{Lease, Renewal};

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Fate {
        Ours,
        Unbound,
        Deleted,
        Revoked,
        Released,
        Taken,
        WrongToken,
    }
    fn fate(i: usize) -> Fate {
        match i % 10 {
            _ if i == 1 => Fate::Unbound,
            _ if i == 9 => Fate::WrongToken,
            2 => Fate::Deleted,
            4 => Fate::Revoked,
            6 => Fate::Released,
            8 => Fate::Taken,
            _ => Fate::Ours,
        }
    }
    const N: usize = 50;
    // Long enough that no lease can expire during the test, however slow the machine.
    const LONG: Duration = Duration::from_secs(60);
    let req = |election: &str, who: &str| leader_core::AcquireRequest {
        ttl: LONG,
        ..request(election, who, &format!("{who}-{}", uuid::Uuid::new_v4().simple()))
    };
    let Some(url) = url() else { return };
    let (a, b) = (store(&url).await, store(&url).await);
    let admin = b.client().await.unwrap();
    let base = unique("batch");
    let mut leases: Vec<Lease> = Vec::new();
    for i in 0..N {
        leases.push(acquired(a.try_acquire(&req(&format!("{base}-{i}"), "a")).await.unwrap()));
    }
    let mut taken = Vec::new();
    for (i, lease) in leases.iter_mut().enumerate() {
        match fate(i) {
            Fate::Ours => {}
            Fate::Unbound => *lease = a.current(&lease.election).await.unwrap().expect("held"),
            Fate::Deleted => {
                admin.clone().delete(a.key(&lease.election).unwrap(), None).await.unwrap();
            }
            Fate::Revoked => {
                let kv = raw_key(&a, &lease.election).await.expect("the key exists");
                admin.clone().lease_revoke(kv.lease()).await.unwrap();
            }
            Fate::Released => assert!(a.release(lease).await.unwrap()),
            Fate::Taken => {
                assert!(a.release(lease).await.unwrap());
                taken.push(acquired(b.try_acquire(&req(&lease.election, "b")).await.unwrap()));
            }
            Fate::WrongToken => lease.token = leader_core::FencingToken::new(lease.token.get() + 1),
        }
    }

    let batch: Vec<Renewal> = leases.iter().map(|l| Renewal { lease: l.clone(), ttl: LONG }).collect();
    let answers = a.renew_batch(&batch).await;
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        match (fate(i), answer.unwrap()) {
            (Fate::Ours | Fate::Unbound, Some(renewed)) => {
                assert_eq!((renewed.election.as_str(), renewed.token), (lease.election.as_str(), lease.token));
                assert_eq!(renewed.expires_in, Some(LONG));
                // The unbound lease was put on a fresh etcd lease of a's: the key is bound to it.
                let kv = raw_key(&a, &lease.election).await.expect("still held");
                assert_ne!(kv.lease(), 0);
                assert_eq!(kv.create_revision() as u64, lease.token.get());
            }
            (Fate::Ours | Fate::Unbound, None) => panic!("lease {i} is ours but the batch said no"),
            (_, None) => {}
            (f, Some(l)) => panic!("lease {i} ({f:?}) is not ours but the batch renewed it: {l:?}"),
        }
    }
    for l in &taken {
        assert_eq!(
            a.current(&l.election).await.unwrap().map(|h| (h.instance_id, h.token)),
            Some((l.instance_id.clone(), l.token))
        );
    }

    // Release: ours go; the others are not ours, and the wrong token's key stays.
    let answers = a.release_batch(&leases).await;
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        let ours = matches!(fate(i), Fate::Ours | Fate::Unbound);
        assert_eq!(answer.unwrap(), ours, "release of lease {i} ({:?})", fate(i));
        let holder = a.current(&lease.election).await.unwrap();
        match fate(i) {
            Fate::Taken => assert_eq!(holder.map(|h| h.participant_id), Some("b".to_owned())),
            Fate::WrongToken => assert_eq!(holder.map(|h| h.token.get()), Some(lease.token.get() - 1)),
            _ => assert!(holder.is_none(), "election {i} still held after release_batch: {holder:?}"),
        }
    }
    // A lease named twice: the first release deletes the key, the second finds nothing to do.
    let e = format!("{base}-twice");
    let twice_req = req(&e, "a");
    let twice = acquired(a.try_acquire(&twice_req).await.unwrap());
    let answers: Vec<bool> = a.release_batch(&[twice.clone(), twice]).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(answers, [true, false]);
    assert!(a.renew_batch(&[]).await.is_empty() && a.release_batch(&[]).await.is_empty());

    // Leave nothing behind for a minute: revoke the etcd leases.
    let mut wrong = leases[9].clone();
    wrong.token = leader_core::FencingToken::new(wrong.token.get() - 1);
    assert!(a.release(&wrong).await.unwrap());
    for l in &taken {
        assert!(b.release(l).await.unwrap());
    }
    for (i, l) in leases.iter().enumerate() {
        a.withdraw(&l.election, &l.instance_id).await.unwrap();
        if fate(i) == Fate::Taken {
            let t = &taken[(i - 8) / 10];
            b.withdraw(&t.election, &t.instance_id).await.unwrap();
        }
    }
    a.withdraw(&e, &twice_req.instance_id).await.unwrap();
}
