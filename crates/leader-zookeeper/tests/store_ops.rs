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
