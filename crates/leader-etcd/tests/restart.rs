//! Tests that need an etcd of their own: a server restart (killed and started again on the same
//! data: tokens keep growing) and authentication (enabling it changes the server for everyone).
//! They never touch the shared test server. Each starts a one-member etcd on ports of its own
//! (52370-52371 restart, 52360-52361 auth), state under `.servers/etcd-restart` and
//! `.servers/etcd-auth`; they run when etcd tests are wanted here (`LEADER_TEST_ETCD_URL` is set;
//! then a missing etcd binary fails them) and one at a time inside this binary (nextest's
//! `server-restarts` group keeps them apart from other binaries' restart tests).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{acquired, eventually, fresh_dir, options, request, url, wait_serving, Member, LEASE};
use leader_core::{Election, ErrorKind, LeaseStore};
use leader_etcd::{etcd_client, EtcdStore};
use tokio::time::Instant;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A one-member etcd of this test's own, serving.
async fn own_server(dir: &str, client_port: u16, peer_port: u16) -> Member {
    let dirs = fresh_dir(dir);
    let cluster = format!("s0=http://127.0.0.1:{peer_port}");
    let mut m = Member::new(&dirs, "s0", client_port, peer_port, &cluster);
    m.start(&[]);
    if let Err(e) = wait_serving(&[m.endpoint()], Duration::from_secs(30)).await {
        panic!("the test's own etcd did not serve: {e}\n{}", m.log_tail());
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_steps_down_elects_again_and_tokens_keep_growing() {
    if url().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut server = own_server("etcd-restart", 52370, 52371).await;
    let url = format!("etcd://{}/restart-test", server.endpoint());
    let a = Election::new(Arc::new(EtcdStore::connect(&url).await.unwrap()), "restarted", "a", options()).unwrap();
    let b = Election::new(Arc::new(EtcdStore::connect(&url).await.unwrap()), "restarted", "b", options()).unwrap();
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await, "a leads");
    b.start().await.unwrap();
    let before = a.leadership().unwrap().token().get();
    let raw = EtcdStore::connect(&url).await.unwrap();
    let raw_before = acquired(raw.try_acquire(&request("raw", "p", "i")).await.unwrap()).token;

    server.kill();
    let killed = Instant::now();
    // Nobody can renew: the leader steps down by its local deadline.
    assert!(
        eventually(options().renew_deadline + Duration::from_secs(1), || !a.is_leader() && !b.is_leader()).await,
        "the leader stepped down while the server was down"
    );
    tokio::time::sleep(LEASE).await;
    server.start(&[]);
    if let Err(e) = wait_serving(&[server.endpoint()], Duration::from_secs(30)).await {
        panic!("the restarted etcd did not serve: {e}\n{}", server.log_tail());
    }
    let up = Instant::now();
    // etcd restores the leases with a full TTL on start: the old key may stand one more lease.
    let bound = LEASE * 2 + options().retry_interval + Duration::from_secs(3);
    assert!(
        eventually(bound, || [&a, &b].iter().filter(|e| e.is_leader()).count() == 1).await,
        "a leader again within {bound:?} of the restart"
    );
    let leader = [&a, &b].into_iter().find(|e| e.is_leader()).unwrap();
    let after = leader.leadership().unwrap().token().get();
    assert!(after > before, "token after the restart {after} > {before}");
    eprintln!(
        "leader-etcd: restart: down {:?}, {} leads {:?} after the server came back (token {before} -> {after})",
        up - killed,
        leader.participant_id(),
        up.elapsed()
    );
    // Revisions outlive the restart: a new key's create revision is above every earlier one.
    let other = EtcdStore::connect(&url).await.unwrap();
    let raw_after = acquired(other.try_acquire(&request("raw-2", "q", "j")).await.unwrap()).token;
    assert!(raw_after > raw_before && raw_after.get() > after, "{raw_after} > {raw_before}, {after}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_with_user_and_password() {
    if url().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let server = own_server("etcd-auth", 52360, 52361).await;
    let endpoint = server.endpoint();
    // root (needed to enable auth) and `app`, allowed to read and write under /auth-test/ only.
    let mut admin = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.role_add("root").await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.user_add("app", "app-pw", None).await.unwrap();
    admin.role_add("app").await.unwrap();
    let perm = etcd_client::Permission::read_write("/auth-test/").with_prefix();
    admin.role_grant_permission("app", perm).await.unwrap();
    admin.user_grant_role("app", "app").await.unwrap();
    admin.auth_enable().await.unwrap();

    // The right credentials: the election runs (lease grant, the transactions, keep-alive, watch).
    let url = format!("etcd://app:app-pw@{endpoint}/auth-test");
    let s = EtcdStore::connect(&url).await.unwrap();
    assert!(!format!("{s:?}").contains("app-pw"));
    let lease = acquired(s.try_acquire(&request("e", "p", "i")).await.unwrap());
    assert!(s.renew(&lease, LEASE).await.unwrap().is_some());
    let a = Election::new(Arc::new(s.clone()), "e2", "a", options()).unwrap();
    let b = Election::new(Arc::new(EtcdStore::connect(&url).await.unwrap()), "e2", "b", options()).unwrap();
    a.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || a.is_leader()).await);
    b.start().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || b.current_leader().is_some()).await);
    a.stop().await.unwrap();
    assert!(eventually(Duration::from_secs(3), || b.is_leader()).await, "handover through the watch");
    b.stop().await.unwrap();
    assert!(s.release(&lease).await.unwrap());

    // A wrong password is refused when connecting, not later, and the message has no password.
    let err = EtcdStore::connect(&format!("etcd://app:wrong-pw@{endpoint}/auth-test")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
    // No credentials at all.
    let err = EtcdStore::connect(&format!("etcd://{endpoint}/auth-test")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    // Outside the user's permissions: refused when connecting, too.
    let err = EtcdStore::connect(&format!("etcd://app:app-pw@{endpoint}/elsewhere")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(server);
}
