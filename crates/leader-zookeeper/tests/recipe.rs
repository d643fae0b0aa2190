//! ZooKeeper-specific behaviour of the election recipe: session expiry, no herd effect, the
//! election path deleted from outside, several participants on one session, Curator's bugs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, options, store, unique};
use leader_core::{Acquire, AcquireRequest, Election, FencingToken, LeaseStore, Metadata};
use leader_zookeeper::ZooKeeperStore;

fn election(store: &ZooKeeperStore, name: &str, who: &str) -> Election {
    Election::new(Arc::new(store.clone()), name, who, options()).expect("valid election")
}

fn token(e: &Election) -> FencingToken {
    e.leadership().expect("leads").token()
}

/// A raw client for meddling from outside, on its own session.
async fn raw(url: &str) -> (zookeeper_client::Client, String) {
    let rest = url.split_once("://").expect("url has a scheme").1;
    let (hosts, root) = rest.split_once('/').expect("url has a root");
    let root = format!("/{}", root.split('?').next().unwrap_or(root));
    (zookeeper_client::Client::connect(hosts).await.expect("raw connect"), root)
}

#[tokio::test]
async fn session_expiry_while_leading_hands_over_and_recampaigns() {
    let Some(url) = common::url() else { return };
    let (sa, sb) = (store(&url).await, store(&url).await);
    let name = unique("expiry");
    let (a, b) = (election(&sa, &name, "a"), election(&sb, &name, "b"));
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || b.current_leader().is_some()).await);
    let t1 = token(&a);
    let session = sa.session_id();

    sa.expire_session().await.unwrap();
    // a's node died with its session: b's predecessor watch fires and b takes over; a learns of
    // the loss at its next renew (at the latest by its local deadline) and queues again.
    assert!(eventually(Duration::from_secs(5), || b.is_leader()).await, "b takes over");
    assert!(eventually(Duration::from_secs(5), || !a.is_leader()).await);
    assert!(token(&b) > t1);
    assert!(eventually(Duration::from_secs(5), || sa.session_id() != session).await, "a new session");
    assert_eq!(sa.watch_counters().sessions, 2);

    // a campaigns again with a new node in the new session, and leads once b leaves.
    b.stop().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    assert!(token(&a) > t1);
    a.stop().await.unwrap();
}

#[tokio::test]
async fn every_election_on_a_handle_sees_its_session_expire() {
    let Some(url) = common::url() else { return };
    let s = store(&url).await;
    let names = [unique("multi-a"), unique("multi-b"), unique("multi-c")];
    let elections: Vec<Election> = names.iter().map(|n| election(&s, n, "p")).collect();
    for e in &elections {
        e.start().await.unwrap();
    }
    assert!(eventually(Duration::from_secs(5), || elections.iter().all(Election::is_leader)).await);
    let before: Vec<FencingToken> = elections.iter().map(token).collect();
    let mut changes: Vec<_> = elections.iter().map(Election::changes).collect();

    s.expire_session().await.unwrap();
    // Each one loses (Lost event) and leads again with a new node: a larger token.
    use futures::StreamExt;
    for ch in &mut changes {
        let lost = tokio::time::timeout(Duration::from_secs(6), async {
            while let Some(c) = ch.next().await {
                if c.kind == leader_core::ChangeKind::Lost {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(lost, Ok(true), "every election on the expired session reports Lost");
    }
    assert!(
        eventually(Duration::from_secs(6), || elections
            .iter()
            .zip(&before)
            .all(|(e, t)| e.leadership().is_some_and(|l| l.token() > *t)))
        .await,
        "all lead again with new tokens"
    );
    for e in &elections {
        e.stop().await.unwrap();
    }
}

#[tokio::test]
async fn two_participants_on_one_session() {
    let Some(url) = common::url() else { return };
    let s = store(&url).await;
    let name = unique("shared");
    let (a, b) = (election(&s, &name, "a"), election(&s, &name, "b"));
    a.start().await.unwrap();
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader() || b.is_leader()).await);
    // Both nodes belong to the same session: only the one whose node is lowest leads.
    for _ in 0..20 {
        assert!(!(a.is_leader() && b.is_leader()), "both lead on one session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    let t1 = token(leader);
    leader.stop().await.unwrap();
    assert!(eventually(Duration::from_secs(3), || follower.is_leader()).await, "the other takes over at once");
    assert!(token(follower) > t1);
    assert!(!leader.is_leader());
    follower.stop().await.unwrap();
    assert!(s.current(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn only_the_successor_is_woken() {
    let Some(url) = common::url() else { return };
    let name = unique("herd");
    let mut members = Vec::new();
    for i in 0..20 {
        let s = store(&url).await;
        let e = election(&s, &name, &format!("p{i:02}"));
        e.start().await.unwrap();
        if i == 0 {
            assert!(eventually(Duration::from_secs(5), || e.is_leader()).await);
        }
        members.push((s, e));
    }
    // Every follower has queued a node and set its watch on its predecessor.
    let queued = eventually(Duration::from_secs(10), || {
        members[1..].iter().all(|(s, _)| s.watch_counters().predecessor_watches >= 1)
    })
    .await;
    assert!(queued, "every follower watches its predecessor");
    let (raw, root) = raw(&url).await;
    assert_eq!(raw.list_children(&format!("{root}/{name}")).await.unwrap().len(), 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woken_before: Vec<u64> = members.iter().map(|(s, _)| s.watch_counters().woken).collect();

    // The leader dies: its store goes with it, and its session expires on the server.
    let (leader_store, leader) = members.remove(0);
    let t1 = token(&leader);
    drop(leader);
    drop(leader_store);
    assert!(eventually(Duration::from_secs(9), || members[0].1.is_leader()).await, "the successor leads");
    assert!(token(&members[0].1) > t1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let woken: Vec<u64> =
        members.iter().zip(&woken_before[1..]).map(|((s, _), before)| s.watch_counters().woken - before).collect();
    assert_eq!(woken[0], 1, "the successor was woken once");
    assert_eq!(woken[1..].iter().sum::<u64>(), 0, "no other follower was woken: {woken:?}");
    assert_eq!(members.iter().filter(|(_, e)| e.is_leader()).count(), 1);
    for (_, e) in &members {
        e.stop().await.unwrap();
    }
}

#[tokio::test]
async fn election_path_deleted_from_outside_tokens_still_grow() {
    let Some(url) = common::url() else { return };
    let (raw, root) = raw(&url).await;
    let name = unique("deleted");
    let epath = format!("{root}/{name}");
    let s = store(&url).await;
    let a = election(&s, &name, "a");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        assert!(a.try_acquire().await.unwrap());
        tokens.push(token(&a));
        a.release().await.unwrap();
        // Sequence numbers restart with a new election node; czxid does not.
        raw.delete(&epath, None).await.unwrap();
        // A fresh election object, so that the release's abstention does not get in the way.
    }
    let b = election(&s, &name, "b");
    assert!(b.try_acquire().await.unwrap());
    tokens.push(token(&b));
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");

    // Deleting the path under a live leader (its node first, as ZooKeeper requires): the leader
    // learns at its next renew, and a new acquisition gets a larger token still.
    let children = raw.list_children(&epath).await.unwrap();
    for c in children {
        raw.delete(&format!("{epath}/{c}"), None).await.unwrap();
    }
    raw.delete(&epath, None).await.unwrap();
    assert!(!b.try_acquire().await.unwrap() || token(&b) > tokens[3]);
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || b.is_leader()).await);
    assert!(token(&b) > tokens[3]);
    b.stop().await.unwrap();
}

/// CURATOR-696: the lowest node carries our name but belongs to another session: not ours.
#[tokio::test]
async fn lowest_node_of_another_session_is_not_ours() {
    let Some(url) = common::url() else { return };
    let (s1, s2) = (store(&url).await, store(&url).await);
    let name = unique("owner");
    let req = AcquireRequest {
        election: name.clone(),
        participant_id: "p".into(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        ttl: common::SESSION,
        metadata: Metadata::new(),
    };
    let Acquire::Acquired(l1) = s1.try_acquire(&req).await.unwrap() else { panic!("s1 leads") };
    // Same instance id through another session (a confused or replayed client).
    let Acquire::Held(Some(holder)) = s2.try_acquire(&req).await.unwrap() else { panic!("s2 must not lead") };
    assert_eq!(holder.token, l1.token);
    // s1's renew still finds its node; s2 queued a node of its own behind it.
    assert!(s1.renew(&l1, common::SESSION).await.unwrap().is_some());
    assert!(s1.release(&l1).await.unwrap());
    let Acquire::Acquired(l2) = s2.try_acquire(&req).await.unwrap() else { panic!("s2 leads now") };
    assert!(l2.token > l1.token);
    // The lease of s2 is not s1's, even with the same instance id.
    assert!(s1.renew(&l2, common::SESSION).await.unwrap().is_none());
    assert!(!s1.release(&l2).await.unwrap());
    assert!(s2.release(&l2).await.unwrap());
}

/// A create whose reply was lost: the next try_acquire of the instance finds its node by listing.
#[tokio::test]
async fn retried_acquire_finds_its_node() {
    let Some(url) = common::url() else { return };
    let (raw, root) = raw(&url).await;
    let s = store(&url).await;
    let name = unique("retry");
    let other = store(&url).await;
    let held = AcquireRequest {
        election: name.clone(),
        participant_id: "holder".into(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        ttl: common::SESSION,
        metadata: Metadata::new(),
    };
    assert!(matches!(other.try_acquire(&held).await.unwrap(), Acquire::Acquired(_)));
    let req = AcquireRequest { participant_id: "p".into(), instance_id: uuid::Uuid::new_v4().to_string(), ..held };
    // A try_acquire dropped at every await point, then one that completes.
    for polls in 0..6 {
        let mut fut = Box::pin(s.try_acquire(&req));
        for _ in 0..polls {
            if futures::poll!(&mut fut).is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(fut);
    }
    for _ in 0..3 {
        assert!(matches!(s.try_acquire(&req).await.unwrap(), Acquire::Held(Some(_))));
    }
    let children = raw.list_children(&format!("{root}/{name}")).await.unwrap();
    let ours = children.iter().filter(|c| c.contains(&req.instance_id)).count();
    assert_eq!(ours, 1, "one node per instance: {children:?}");
}

/// The names of an election's candidate nodes, lowest first.
async fn queue(raw: &zookeeper_client::Client, root: &str, name: &str) -> Vec<String> {
    let mut children = raw.list_children(&format!("{root}/{name}")).await.unwrap_or_default();
    children.sort_by_key(|c| c.rsplit('_').next().and_then(|s| s.parse::<u64>().ok()));
    children
}

/// A follower's `Election` dropped without `stop()` while its store handle lives on (shared with
/// other work): its queued node must not hold the election up once it is the lowest. Before the
/// queued-node guard, the node lived as long as the handle's session: the third participant never
/// led.
#[tokio::test]
async fn dropped_follower_does_not_block_the_election() {
    let Some(url) = common::url() else { return };
    let (raw, root) = raw(&url).await;
    let (sa, sb, sc) = (store(&url).await, store(&url).await, store(&url).await);
    let name = unique("dropped");
    let a = election(&sa, &name, "a");
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    let b = election(&sb, &name, "b");
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sb.watch_counters().predecessor_watches >= 1).await, "b queued");
    let c = election(&sc, &name, "c");
    c.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sc.watch_counters().predecessor_watches >= 1).await, "c queued");
    assert_eq!(queue(&raw, &root, &name).await.len(), 3);

    drop(b); // no stop(): its node stays; sb (its session) lives on
    let t1 = token(&a);
    a.stop().await.unwrap();
    let stopped = tokio::time::Instant::now();
    // b's node is the lowest now and nobody stands behind it: the guard deletes it at most one
    // lease after b's last acquire attempt, and c's watch on it fires.
    let bound = common::SESSION * 2 + Duration::from_secs(2);
    assert!(eventually(bound, || c.is_leader()).await, "c leads within {bound:?} of a's stop");
    eprintln!("dropped follower: c led {:?} after a stopped", stopped.elapsed());
    assert!(token(&c) > t1);
    assert_eq!(queue(&raw, &root, &name).await.len(), 1, "only c's node is left");
    c.stop().await.unwrap();
    drop(sb);
}

/// A manual-mode caller that tried once and stopped calling: the same, without any watch stream.
#[tokio::test]
async fn abandoned_manual_candidate_does_not_block_the_election() {
    let Some(url) = common::url() else { return };
    let (sa, sb, sc) = (store(&url).await, store(&url).await, store(&url).await);
    let name = unique("manual");
    let a = election(&sa, &name, "a");
    assert!(a.try_acquire().await.unwrap());
    let b = election(&sb, &name, "b");
    assert!(!b.try_acquire().await.unwrap(), "b queues behind a");
    let c = election(&sc, &name, "c");
    c.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sc.watch_counters().predecessor_watches >= 1).await, "c queued");
    // b never calls again, and is not dropped either.
    a.release().await.unwrap();
    let bound = common::SESSION * 2 + Duration::from_secs(2);
    assert!(eventually(bound, || c.is_leader()).await, "c leads within {bound:?}");
    assert!(!b.is_leader());
    // b comes back: it queues again, behind c.
    assert!(!b.try_acquire().await.unwrap());
    c.stop().await.unwrap();
    assert!(b.try_acquire().await.unwrap(), "b leads once c is gone");
    b.release().await.unwrap();
}

/// The guard never cuts a live follower: one that waits on its watch for several leases keeps its
/// node (and its place), and takes over at once when the leader leaves.
#[tokio::test]
async fn waiting_follower_keeps_its_node() {
    let Some(url) = common::url() else { return };
    let (raw, root) = raw(&url).await;
    let (sa, sb) = (store(&url).await, store(&url).await);
    let name = unique("patient");
    let (a, b) = (election(&sa, &name, "a"), election(&sb, &name, "b"));
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sb.watch_counters().predecessor_watches >= 1).await);
    let before = queue(&raw, &root, &name).await;
    tokio::time::sleep(common::SESSION * 3).await;
    assert_eq!(queue(&raw, &root, &name).await, before, "the follower's node was not replaced");
    a.stop().await.unwrap();
    assert!(eventually(Duration::from_secs(3), || b.is_leader()).await, "b takes over at once");
    b.stop().await.unwrap();
}
