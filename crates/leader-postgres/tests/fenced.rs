//! The bound on fenced transactions: `<table>_holds(election, token)` locks the lease row
//! `FOR SHARE` until the caller's transaction ends, and the holder's renew needs that row too. A
//! fenced transaction that stays open longer than `renew_deadline` therefore makes the leader step
//! down (its renewals cannot get through), while a short one costs the leader nothing.

mod common;

use std::time::Duration;

use common::{sql_client, store, unique, url};
use leader_core::{ChangeKind, Election, ElectionOptions};
use tokio::time::{sleep, timeout, Instant};

fn options() -> ElectionOptions {
    ElectionOptions::from_lease(Duration::from_secs(3))
}

/// Holds the fenced check's row lock in an open transaction for `hold`, then commits; returns
/// whether the check said the token holds.
async fn fenced_transaction(url: &str, holds_function: &str, election: &str, token: i64, hold: Duration) -> bool {
    let mut client = sql_client(url).await;
    let tx = client.transaction().await.unwrap();
    let sql = format!("SELECT {holds_function}($1, $2)");
    let holds: bool = tx.query_one(sql.as_str(), &[&election, &token]).await.unwrap().get(0);
    sleep(hold).await;
    tx.commit().await.unwrap();
    holds
}

#[tokio::test]
async fn a_fenced_transaction_longer_than_renew_deadline_makes_the_leader_step_down() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let name = unique("fenced-long-");
    let a = Election::new(std::sync::Arc::new(s.clone()), &name, "a", options()).unwrap();
    let mut changes = a.changes();
    let l = timeout(Duration::from_secs(20), a.wait_for_leadership()).await.unwrap().unwrap();
    let token = i64::try_from(l.token().get()).unwrap();
    let hold = options().renew_deadline + options().renew_interval;
    let started = Instant::now();
    let holds = fenced_transaction(&url, &s.holds_function(), &name, token, hold).await;
    assert!(holds, "the fenced check must accept the holder's own token");
    assert!(!l.is_valid(), "the leader kept its tenure through a fenced transaction of {hold:?}");
    let lost = loop {
        let c = timeout(Duration::from_secs(10), futures::StreamExt::next(&mut changes)).await.unwrap().unwrap();
        if c.kind == ChangeKind::Lost {
            break c;
        }
    };
    let stepped = l.valid_until() - started;
    assert!(stepped <= options().renew_deadline + Duration::from_millis(200), "stepped down after {stepped:?}");
    eprintln!("fenced transaction of {hold:?}: the leader stepped down {stepped:?} after it began ({:?})", lost.reason);
    a.stop().await.unwrap();
}

#[tokio::test]
async fn a_short_fenced_transaction_does_not_disturb_the_leader() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let name = unique("fenced-short-");
    let a = Election::new(std::sync::Arc::new(s.clone()), &name, "a", options()).unwrap();
    let l = timeout(Duration::from_secs(20), a.wait_for_leadership()).await.unwrap().unwrap();
    let token = i64::try_from(l.token().get()).unwrap();
    // A tenth of the margin between renew_interval and renew_deadline, several times in a row.
    let hold = (options().renew_deadline - options().renew_interval) / 10;
    for _ in 0..5 {
        assert!(fenced_transaction(&url, &s.holds_function(), &name, token, hold).await);
    }
    sleep(options().renew_interval).await;
    assert!(l.is_valid(), "short fenced transactions made the leader step down");
    a.stop().await.unwrap();
}
