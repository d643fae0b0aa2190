//! Azure-specific behaviour against a real blob service (Azurite in CI): lease limits, leases broken
//! from outside, container and blob creation, isolation of containers, idempotent acquire.
//!
//! Reads `LEADER_TEST_AZBLOB_URL` (an `azblob://` URL or a connection string); without it each
//! test prints why it did not run and passes, unless `LEADER_TEST_REQUIRE` names `azblob`.

use std::sync::Arc;
use std::time::Duration;

use leader_azblob::AzureBlobStore;
use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, ErrorKind, LeaseStore, Metadata};

const LEASE: Duration = Duration::from_secs(15);

fn url() -> Option<String> {
    match std::env::var("LEADER_TEST_AZBLOB_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
            assert!(
                !required.split(',').any(|p| p.trim() == "azblob"),
                "LEADER_TEST_AZBLOB_URL is not set but LEADER_TEST_REQUIRE names azblob"
            );
            println!("skipped: LEADER_TEST_AZBLOB_URL is not set (run scripts/servers up azblob)");
            None
        }
    }
}

fn store() -> Option<AzureBlobStore> {
    url().map(|u| AzureBlobStore::from_url(&u).expect("LEADER_TEST_AZBLOB_URL is a valid store URL"))
}

/// The same service, another container.
fn store_in(container: &str) -> Option<AzureBlobStore> {
    let url = url()?;
    let other = if url.contains("://") {
        let mut u = url::Url::parse(&url).expect("valid URL");
        u.set_path(&format!("/{container}"));
        u.to_string()
    } else {
        format!("{url};Container={container}")
    };
    Some(AzureBlobStore::from_url(&other).expect("valid URL"))
}

fn unique(what: &str) -> String {
    format!("{what}-{:08x}", fastrand::u32(..))
}

fn request(election: &str, participant: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: participant.to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        ttl: LEASE,
        metadata: Metadata::new(),
    }
}

fn acquired(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Acquired(lease) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn lease_durations_outside_15_to_60_seconds_are_refused() {
    // No server needed: check_options and try_acquire refuse before sending anything.
    let store = AzureBlobStore::from_url("azblob://devstoreaccount1@127.0.0.1:9/leader-test").unwrap();
    for secs in [1, 3, 14, 61, 120] {
        let err = store.check_options(&ElectionOptions::from_lease(Duration::from_secs(secs))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("15 to 60"), "{err}");
    }
    let err = store.check_options(&ElectionOptions::from_lease(Duration::from_millis(15_500))).unwrap_err();
    assert!(err.message().contains("whole seconds"), "{err}");
    for secs in [15, 30, 60] {
        store.check_options(&ElectionOptions::from_lease(Duration::from_secs(secs))).unwrap();
    }
    let err = Election::new(Arc::new(store), "e", "p", ElectionOptions::from_lease(Duration::from_secs(3)));
    assert_eq!(err.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
}

#[tokio::test]
async fn container_and_blob_are_created_on_first_use() {
    let Some(store) = store_in(&unique("fresh")) else { return };
    let election = unique("first-use");
    assert!(store.current(&election).await.unwrap().is_none());
    assert!(store.list("").await.unwrap().is_empty());
    let lease = acquired(store.try_acquire(&request(&election, "a")).await.unwrap());
    assert_eq!(lease.token.get(), 1);
    let seen = store.current(&election).await.unwrap().expect("a holder");
    assert_eq!(seen.instance_id, lease.instance_id);
    assert!(store.release(&lease).await.unwrap());
    assert!(store.current(&election).await.unwrap().is_none());
}

#[tokio::test]
async fn two_containers_are_isolated() {
    let (Some(a), Some(b)) = (store_in(&unique("iso-a")), store_in(&unique("iso-b"))) else { return };
    let election = unique("shared-name");
    let la = acquired(a.try_acquire(&request(&election, "a")).await.unwrap());
    let lb = acquired(b.try_acquire(&request(&election, "b")).await.unwrap());
    assert_eq!((la.token.get(), lb.token.get()), (1, 1));
    assert_eq!(a.current(&election).await.unwrap().map(|l| l.participant_id).as_deref(), Some("a"));
    assert_eq!(b.current(&election).await.unwrap().map(|l| l.participant_id).as_deref(), Some("b"));
    assert_eq!(a.list("").await.unwrap().len(), 1);
    assert!(a.release(&la).await.unwrap() && b.release(&lb).await.unwrap());
}

#[tokio::test]
async fn a_resent_acquire_is_recognised_as_ours() {
    let Some(store) = store() else { return };
    let election = unique("resent");
    let req = request(&election, "a");
    // The first answer is "lost"; the retry of the same instance gets the same tenure back.
    let first = acquired(store.try_acquire(&req).await.unwrap());
    let again = acquired(store.try_acquire(&req).await.unwrap());
    assert_eq!(first.token, again.token);
    assert_eq!(first.instance_id, again.instance_id);
    // Another instance of the same participant is another participant.
    let twin = AcquireRequest { instance_id: uuid::Uuid::new_v4().to_string(), ..req.clone() };
    match store.try_acquire(&twin).await.unwrap() {
        Acquire::Held(Some(holder)) => assert_eq!(holder.instance_id, req.instance_id),
        other => panic!("expected Held(holder), got {other:?}"),
    }
    // Renew works with either copy; release ends it and the next holder gets a higher token.
    assert!(store.renew(&first, LEASE).await.unwrap().is_some());
    assert!(store.release(&again).await.unwrap());
    assert!(!store.release(&first).await.unwrap());
    let next = acquired(store.try_acquire(&twin).await.unwrap());
    assert!(next.token > first.token);
    assert!(store.renew(&first, LEASE).await.unwrap().is_none());
    assert!(store.release(&next).await.unwrap());
}

#[tokio::test]
async fn a_claim_left_without_a_lease_never_repeats_a_token() {
    let Some(store) = store() else { return };
    let election = unique("claim");
    let req = request(&election, "a");
    let first = acquired(store.try_acquire(&req).await.unwrap());
    assert!(store.release(&first).await.unwrap());
    // The same instance acquiring again after a release is a new tenure.
    let second = acquired(store.try_acquire(&req).await.unwrap());
    assert!(second.token > first.token);
    assert!(store.release(&second).await.unwrap());
}

#[tokio::test]
async fn metadata_is_written_by_the_holder_only() {
    let Some(store) = store() else { return };
    let election = unique("meta");
    let lease = acquired(store.try_acquire(&request(&election, "a")).await.unwrap());
    let md: Metadata = [("addr".to_owned(), "10.0.0.1:80 — ünïcode".to_owned())].into();
    let updated = store.update_metadata(&lease, &md).await.unwrap().expect("still ours");
    assert_eq!(updated.token, lease.token);
    assert_eq!(store.current(&election).await.unwrap().unwrap().metadata, md);
    // The copy from before the update still renews and releases (same instance, same token).
    assert!(store.renew(&lease, LEASE).await.unwrap().is_some());
    let stranger = leader_core::Lease { instance_id: uuid::Uuid::new_v4().to_string(), ..lease.clone() };
    assert!(store.update_metadata(&stranger, &Metadata::new()).await.unwrap().is_none());
    assert!(store.release(&lease).await.unwrap());
    assert!(store.update_metadata(&updated, &md).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lease_broken_from_outside_is_detected_as_a_loss() {
    let Some(store) = store() else { return };
    let store = Arc::new(store);
    let election = unique("broken");
    let leader = Election::new(store.clone(), &election, "a", ElectionOptions::from_lease(LEASE)).unwrap();
    let mut changes = leader.changes();
    assert!(leader.try_acquire().await.unwrap());
    let token = leader.leadership().unwrap().token();
    assert!(store.break_lease(&election, Duration::ZERO).await.unwrap());
    assert!(store.current(&election).await.unwrap().is_none());
    // The next renew (manual mode: try_acquire) finds the lease gone, takes it anew: a new tenure.
    let lease = store.renew(&leader.leadership().unwrap().info(), LEASE).await.unwrap();
    assert!(lease.is_none(), "a renew of a broken lease must fail");
    leader.start().await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(30), async {
        use futures::StreamExt;
        while let Some(c) = changes.next().await {
            if c.kind == leader_core::ChangeKind::Lost {
                return c;
            }
        }
        panic!("changes ended")
    })
    .await
    .expect("Lost within 30 s");
    assert!(!lost.is_leader);
    let again = tokio::time::timeout(Duration::from_secs(30), leader.wait_for_leadership()).await.unwrap().unwrap();
    assert!(again.token() > token);
    leader.stop().await.unwrap();
}

#[tokio::test]
async fn list_shows_held_elections_under_a_prefix() {
    let Some(store) = store() else { return };
    let prefix = unique("list");
    let mut leases = Vec::new();
    for i in 0..3 {
        leases.push(acquired(store.try_acquire(&request(&format!("{prefix}.{i}"), "p")).await.unwrap()));
    }
    assert!(store.release(&leases[1]).await.unwrap());
    let listed = store.list(&prefix).await.unwrap();
    let names: Vec<_> = listed.iter().map(|l| l.election.as_str()).collect();
    assert_eq!(names, vec![format!("{prefix}.0"), format!("{prefix}.2")]);
    for l in [&leases[0], &leases[2]] {
        assert!(store.release(l).await.unwrap());
    }
}

#[tokio::test]
async fn the_raw_floor_acquires() {
    let Some(url) = url() else { return };
    let (store, floor) = leader_azblob::connect_with_floor(&url).await.unwrap();
    let election = unique("floor");
    let instance = uuid::Uuid::new_v4().to_string();
    floor.raw_acquire(&election, &instance).await.unwrap();
    floor.raw_acquire(&election, &instance).await.unwrap();
    assert!(!floor.describe().is_empty());
    // The floor leases an empty blob: to the store that is a lease without a record.
    match store.try_acquire(&request(&election, "x")).await.unwrap() {
        Acquire::Held(None) => {}
        other => panic!("expected Held(None), got {other:?}"),
    }
}

/// An account SAS for the development account, signed with its well-known key (service b, all
/// resource types, read/write/delete/list/add/create).
fn dev_account_sas(sign_with: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let (version, perms, expiry) = ("2021-08-06", "rwdlac", "2099-01-01T00:00:00Z");
    let to_sign = format!("{}\n{perms}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n", leader_azblob::DEV_ACCOUNT);
    let key = base64::engine::general_purpose::STANDARD.decode(sign_with).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!("sv={version}&ss=b&srt=sco&sp={perms}&se={expiry}&spr=https,http&sig={sig}")
}

/// The Azurite endpoint of a `azblob://devstoreaccount1@HOST:PORT/...` test URL.
fn dev_endpoint() -> Option<String> {
    let u = url::Url::parse(&url()?).ok()?;
    let ok = u.scheme() == "azblob" && u.username() == leader_azblob::DEV_ACCOUNT && u.password().is_none();
    if !ok {
        println!("skipped: the SAS test needs an azblob://devstoreaccount1@HOST:PORT/... test URL (Azurite)");
        return None;
    }
    Some(format!("http://{}:{}/{}", u.host_str()?, u.port()?, leader_azblob::DEV_ACCOUNT))
}

#[tokio::test]
async fn a_sas_authorises_and_a_bad_one_is_refused() {
    let Some(endpoint) = dev_endpoint() else { return };
    let build =
        |sas: &str| AzureBlobStore::builder().endpoint(&endpoint).sas(sas).container(&unique("sas")).build().unwrap();
    let store = build(&dev_account_sas(leader_azblob::DEV_ACCOUNT_KEY));
    let election = unique("sas");
    let lease = acquired(store.try_acquire(&request(&election, "a")).await.unwrap());
    assert_eq!(store.current(&election).await.unwrap().map(|l| l.token), Some(lease.token));
    assert_eq!(store.list("").await.unwrap().len(), 1);
    assert!(store.release(&lease).await.unwrap());
    // Signed with another key: the service refuses, and the error says where to look.
    let bad = build(&dev_account_sas("YWJjZGVmZ2g="));
    let err = bad.current(&election).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.message().contains("403"), "{err}");
}
