//! PostgreSQL-specific behaviour against a real server (`LEADER_TEST_POSTGRES_URL`). Every test
//! works on election names, tables or schemas of its own, and terminates only its own backends
//! (found by a unique `application_name`), so the tests run concurrently with each other and with
//! the conformance suite. Server restarts live in `tests/restart.rs`, on a server of their own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{request, sql_client, store, unique, url, with_params};
use futures::StreamExt;
use leader_core::{Acquire, Election, ElectionOptions, ErrorKind, LeaseStore, Metadata};
use leader_postgres::PostgresStore;

const TTL: Duration = Duration::from_secs(3);

fn acquired(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Acquired(l) => l,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

fn held(a: Acquire) -> leader_core::Lease {
    match a {
        Acquire::Held(Some(l)) => l,
        other => panic!("expected Held(Some), got {other:?}"),
    }
}

#[tokio::test]
async fn acquire_renew_release_answer_in_one_statement_each() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let e = unique("basic-");
    let a = acquired(s.try_acquire(&request(&e, "pa", "ia", TTL)).await.unwrap());
    assert_eq!(a.participant_id, "pa");
    assert!(a.expires_in.unwrap() <= TTL && a.expires_in.unwrap() > TTL - Duration::from_secs(1));
    // Same instance again: same token, fresh TTL (idempotent retry).
    let again = acquired(s.try_acquire(&request(&e, "pa", "ia", TTL)).await.unwrap());
    assert_eq!(again.token, a.token);
    assert_eq!(again.acquired_at, a.acquired_at);
    assert!(again.expires_at >= a.expires_at);
    // Someone else: Held with the holder, from the same statement.
    let h = held(s.try_acquire(&request(&e, "pb", "ib", TTL)).await.unwrap());
    assert_eq!((h.instance_id.as_str(), h.token), ("ia", a.token));
    assert!(h.expires_in.unwrap() <= TTL);
    // Renew and release are guarded by instance and token.
    let mut wrong = a.clone();
    wrong.instance_id = "ib".into();
    assert!(s.renew(&wrong, TTL).await.unwrap().is_none());
    assert!(!s.release(&wrong).await.unwrap());
    let mut stale = a.clone();
    stale.token = leader_core::FencingToken::new(a.token.get() - 1);
    assert!(s.renew(&stale, TTL).await.unwrap().is_none());
    let renewed = s.renew(&a, TTL).await.unwrap().expect("ours");
    assert_eq!(renewed.token, a.token);
    let mut md = Metadata::new();
    md.insert("hostname".into(), "h1".into());
    let updated = s.update_metadata(&a, &md).await.unwrap().expect("ours");
    assert_eq!(updated.metadata, md);
    assert_eq!(s.current(&e).await.unwrap().unwrap().metadata, md);
    assert!(s.release(&a).await.unwrap());
    assert!(!s.release(&a).await.unwrap(), "a second release finds nothing of ours");
    assert!(s.current(&e).await.unwrap().is_none());
    assert!(s.renew(&a, TTL).await.unwrap().is_none(), "a released lease cannot be renewed");
    // The same instance acquiring after its release starts a new tenure.
    let b = acquired(s.try_acquire(&request(&e, "pa", "ia", TTL)).await.unwrap());
    assert!(b.token > a.token);
}

/// 16 acquirers with 16 stores (16 connections) race on an empty row, an expired row and a
/// released row: exactly one wins each round, and every loser's single statement names the winner.
#[tokio::test]
async fn sixteen_concurrent_acquirers_produce_exactly_one_winner() {
    let Some(url) = url() else { return };
    let stores: Vec<PostgresStore> = (0..16).map(|_| store(&url)).collect();
    for s in &stores {
        s.ensure_schema().await.unwrap();
    }
    let e = unique("race-");
    // Long enough that a loaded machine still releases the winner's lease before it runs out.
    let ttl = Duration::from_secs(1);
    let mut last_token = None;
    for round in 0..6 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, e, barrier) = (s.clone(), e.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.try_acquire(&request(&e, &format!("p{i}"), &format!("r{round}-i{i}"), ttl)).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Acquire::Acquired(l) => winners.push(l),
                Acquire::Held(h) => losers.push(h.expect("Held names the holder")),
                Acquire::Refused(r) => panic!("refused: {r:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let w = &winners[0];
        for l in &losers {
            assert_eq!(
                (&l.instance_id, l.token),
                (&w.instance_id, w.token),
                "round {round}: a loser saw another holder"
            );
        }
        if let Some(prev) = last_token {
            assert!(w.token > prev, "round {round}: token {} after {prev}", w.token);
        }
        last_token = Some(w.token);
        // Alternate: let the lease expire, or release it.
        if round % 2 == 0 {
            tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        } else {
            assert!(stores[0].release(w).await.unwrap());
        }
    }
}

#[tokio::test]
async fn tokens_keep_growing_across_release_expiry_and_cleanup() {
    let Some(url) = url() else { return };
    let table = unique("cleanup_");
    let s = PostgresStore::builder().url(&url).table(&table).build().unwrap();
    let e1 = unique("cl1-");
    let e2 = unique("cl2-");
    let short = Duration::from_millis(300);
    let t1 = acquired(s.try_acquire(&request(&e1, "p", "i1", short)).await.unwrap()).token;
    let t2 = acquired(s.try_acquire(&request(&e2, "p", "i2", TTL)).await.unwrap()).token;
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert_eq!(s.cleanup_expired_leases().await.unwrap(), 1, "only the expired lease");
    assert_eq!(s.cleanup_expired_leases().await.unwrap(), 0);
    assert!(s.current(&e1).await.unwrap().is_none());
    assert_eq!(s.current(&e2).await.unwrap().unwrap().token, t2, "the live lease is untouched");
    let t3 = acquired(s.try_acquire(&request(&e1, "p", "i3", TTL)).await.unwrap()).token;
    assert!(t3 > t1, "token {t3} after cleanup must exceed {t1}");
    // Even a row deleted by hand does not send tokens back: they come from a sequence.
    let client = sql_client(&url).await;
    client.execute(&format!("DELETE FROM public.{table} WHERE election_name = $1"), &[&e1]).await.unwrap();
    let t4 = acquired(s.try_acquire(&request(&e1, "p", "i4", TTL)).await.unwrap()).token;
    assert!(t4 > t3);
    drop_table(&client, "public", &table).await;
}

async fn drop_table(client: &tokio_postgres::Client, schema: &str, table: &str) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {schema}.{table}; DROP SEQUENCE IF EXISTS {schema}.{table}_token_seq; \
             DROP FUNCTION IF EXISTS {schema}.{table}_holds(text, bigint);"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn metadata_is_queryable_in_sql() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let e = unique("md-");
    let mut req = request(&e, "worker-1", "i", TTL);
    req.metadata.insert("hostname".into(), "node-7".into());
    req.metadata.insert("version".into(), "1.2.3".into());
    acquired(s.try_acquire(&req).await.unwrap());
    let client = sql_client(&url).await;
    let row = client
        .query_one(
            "SELECT participant_id, metadata->>'hostname', metadata->>'version' FROM public.leader_leases \
             WHERE election_name = $1 AND expires_at > now()",
            &[&e],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "worker-1");
    assert_eq!(row.get::<_, String>(1), "node-7");
    assert_eq!(row.get::<_, String>(2), "1.2.3");
}

/// The fenced-write function in a user's own UPDATE: the deposed leader's write changes nothing,
/// the new leader's goes through.
#[tokio::test]
async fn fenced_write_rejects_a_deposed_leader() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let e = unique("fence-");
    let client = sql_client(&url).await;
    let data = unique("fenced_data_");
    client
        .batch_execute(&format!(
            "CREATE TABLE {data} (id int PRIMARY KEY, value text); INSERT INTO {data} VALUES (1, 'start');"
        ))
        .await
        .unwrap();
    let write = format!("UPDATE {data} SET value = $3 WHERE id = 1 AND {}($1, $2)", s.holds_function());
    let short = Duration::from_secs(1);
    let a = acquired(s.try_acquire(&request(&e, "a", "ia", short)).await.unwrap());
    let ta = a.token.get() as i64;
    assert_eq!(client.execute(&write, &[&e, &ta, &"by a"]).await.unwrap(), 1, "the holder may write");
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert_eq!(client.execute(&write, &[&e, &ta, &"a, expired"]).await.unwrap(), 0, "an expired lease may not write");
    let b = acquired(s.try_acquire(&request(&e, "b", "ib", TTL)).await.unwrap());
    let tb = b.token.get() as i64;
    assert_eq!(client.execute(&write, &[&e, &ta, &"a, deposed"]).await.unwrap(), 0, "the deposed leader's write");
    assert_eq!(client.execute(&write, &[&e, &tb, &"by b"]).await.unwrap(), 1);
    let value: String = client.query_one(&format!("SELECT value FROM {data}"), &[]).await.unwrap().get(0);
    assert_eq!(value, "by b");
    // The check holds the lease row until the writer's transaction ends: a takeover waits for it.
    client.batch_execute(&format!("DROP TABLE {data}")).await.unwrap();
}

#[tokio::test]
async fn custom_schema_and_table() {
    let Some(url) = url() else { return };
    let schema = unique("leader_test_");
    let s = PostgresStore::builder().url(&url).schema(&schema).table("coordination").build().unwrap();
    assert_eq!(s.table_name(), format!("{schema}.coordination"));
    let e = unique("custom-");
    let lease = acquired(s.try_acquire(&request(&e, "p", "i", TTL)).await.unwrap());
    let client = sql_client(&url).await;
    let row = client
        .query_one(&format!("SELECT token FROM {schema}.coordination WHERE election_name = $1"), &[&e])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0) as u64, lease.token.get());
    let holds: bool = client
        .query_one(&format!("SELECT {schema}.coordination_holds($1, $2)"), &[&e, &(lease.token.get() as i64)])
        .await
        .unwrap()
        .get(0);
    assert!(holds);
    // The URL form names the same table.
    let via_url = store(&with_params(&url, &format!("schema={schema}&table=coordination")));
    assert_eq!(via_url.current(&e).await.unwrap().unwrap().token, lease.token);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn malicious_identifiers_are_refused() {
    let Some(url) = url() else { return };
    for table in ["leases\"; DROP TABLE leader_leases; --", "Leases", "a b", "1x", ""] {
        let err = PostgresStore::builder().url(&url).table(table).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{table:?}");
        assert!(err.message().contains("table name"), "{err}");
    }
    let err = PostgresStore::builder().url(&url).schema("x;drop").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = PostgresStore::from_url(&with_params(&url, "table=x%22%3Bdrop")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Bad election names never reach the server either.
    let s = store(&url);
    let err = s.try_acquire(&request("bad'name", "p", "i", TTL)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn list_matches_the_prefix_literally() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let base = unique("list-");
    for name in ["a_1", "ax1", "a_2", "b"] {
        acquired(s.try_acquire(&request(&format!("{base}{name}"), "p", "i", TTL)).await.unwrap());
    }
    // '_' is a LIKE wildcard; the prefix must match literally.
    let names: Vec<String> = s.list(&format!("{base}a_")).await.unwrap().into_iter().map(|l| l.election).collect();
    assert_eq!(names, vec![format!("{base}a_1"), format!("{base}a_2")]);
    assert_eq!(s.list(&base).await.unwrap().len(), 4);
    assert!(s.list("").await.unwrap().len() >= 4);
}

#[tokio::test]
async fn concurrent_ensure_schema_calls_all_succeed() {
    let Some(url) = url() else { return };
    let schema = unique("leader_ddl_");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = PostgresStore::builder().url(&url).schema(&schema).table("leases").build().unwrap();
            tokio::spawn(async move { s.ensure_schema().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    sql_client(&url).await.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

/// A follower's watch wakes on release and on a new tenure, through the store's one LISTEN
/// connection; a store on another table hears nothing.
#[tokio::test]
async fn notifications_wake_followers_of_the_same_table_only() {
    let Some(url) = url() else { return };
    let other_table = unique("other_");
    let mine = store(&url);
    let other = PostgresStore::builder().url(&url).table(&other_table).build().unwrap();
    let e = unique("notify-");
    let mut w_mine = mine.watch(&e, None).expect("a listener");
    let mut w_other = other.watch(&e, None).expect("a listener");
    // The first item of each stream says LISTEN is in place.
    tokio::time::timeout(Duration::from_secs(10), w_mine.next()).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(10), w_other.next()).await.unwrap().unwrap();
    assert!(mine.is_listening() && other.is_listening());

    let holder = store(&url);
    let lease = acquired(holder.try_acquire(&request(&e, "p", "i", TTL)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), w_mine.next()).await.expect("woken by the acquire").unwrap();
    assert!(holder.release(&lease).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), w_mine.next()).await.expect("woken by the release").unwrap();
    // A renew or a refresh by the same holder does not wake anyone.
    let lease = acquired(holder.try_acquire(&request(&e, "p", "i2", TTL)).await.unwrap());
    w_mine.next().await.unwrap();
    holder.renew(&lease, TTL).await.unwrap().unwrap();
    acquired(holder.try_acquire(&request(&e, "p", "i2", TTL)).await.unwrap());
    assert!(tokio::time::timeout(Duration::from_millis(300), w_mine.next()).await.is_err(), "no hint for a renew");
    // The same election name in another table: activity there does not cross over.
    let other_holder = PostgresStore::builder().url(&url).table(&other_table).build().unwrap();
    let _ = other_holder; // its table is the other one; nothing was done there yet
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w_other.next()).await.is_err(),
        "cross-talk between tables"
    );
    // And both tables hold their own lease for the same name.
    acquired(other.try_acquire(&request(&e, "q", "j", TTL)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), w_other.next()).await.expect("own table's hint").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w_mine.next()).await.is_err(),
        "cross-talk between tables"
    );
    drop_table(&sql_client(&url).await, "public", &other_table).await;
}

/// Graceful handoff between two elections does not wait for the retry interval or the lease.
#[tokio::test]
async fn release_hands_over_at_once() {
    let Some(url) = url() else { return };
    let e = unique("handoff-");
    // A long lease and retry, so only a push can explain a fast takeover.
    let options = ElectionOptions::from_lease(Duration::from_secs(30));
    let a = Election::new(Arc::new(store(&url)), &e, "a", options.clone()).unwrap();
    let b = Election::new(Arc::new(store(&url)), &e, "b", options).unwrap();
    a.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.wait_for_leadership()).await.unwrap().unwrap();
    b.start().await.unwrap();
    // Let b campaign once and settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());
    let first = a.leadership().unwrap().token();
    let started = tokio::time::Instant::now();
    a.stop().await.unwrap();
    let lead =
        tokio::time::timeout(Duration::from_secs(3), b.wait_for_leadership()).await.expect("handed over").unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(lead.token() > first);
    b.stop().await.unwrap();
}

async fn terminate(url: &str, application_name: &str) -> i64 {
    let client = sql_client(url).await;
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Killing the LISTEN connection ends the watch streams (followers poll), and the listener comes
/// back by itself.
#[tokio::test]
async fn listener_survives_pg_terminate_backend() {
    let Some(url) = url() else { return };
    let app = unique("lt_");
    let s = store(&with_params(&url, &format!("application_name={app}")));
    let e = unique("listen-kill-");
    let mut w = s.watch(&e, None).expect("listener");
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap();
    assert_eq!(terminate(&url, &format!("{app}-listen")).await, 1, "one listener connection per store");
    // The stream ends: the push channel is down.
    let end = tokio::time::timeout(Duration::from_secs(10), async { while w.next().await.is_some() {} });
    end.await.expect("the watch stream ends when its connection is killed");
    // It reconnects by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !s.is_listening() {
        assert!(tokio::time::Instant::now() < deadline, "listener did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut w = s.watch(&e, None).expect("listener back");
    let holder = store(&url);
    acquired(holder.try_acquire(&request(&e, "p", "i", TTL)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), async {
        // Possibly one `Connected` item first, then the acquire's hint.
        w.next().await.unwrap();
    })
    .await
    .expect("woken after the reconnect");
    // Many watchers share that one connection.
    let _more: Vec<_> = (0..5).map(|i| s.watch(&format!("{e}-{i}"), None).unwrap()).collect();
    let client = sql_client(&url).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&format!("{app}-listen")])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// Killing the pooled connections costs at most a failed call or two; the lease and its token are
/// intact, and a running election keeps its leader.
#[tokio::test]
async fn pooled_connections_survive_pg_terminate_backend() {
    let Some(url) = url() else { return };
    let app = unique("pt_");
    let s = Arc::new(store(&with_params(&url, &format!("application_name={app}&pool_size=4"))));
    let e = unique("pool-kill-");
    let lease = acquired(s.try_acquire(&request(&e, "p", "i", TTL)).await.unwrap());
    assert!(terminate(&url, &app).await >= 1);
    let mut failures = 0;
    let renewed = loop {
        match s.renew(&lease, TTL).await {
            Ok(r) => break r,
            Err(err) => {
                assert!(err.is_transient(), "{err}");
                assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
                failures += 1;
                assert!(failures <= 4, "the pool does not recover: {err}");
            }
        }
    };
    assert_eq!(renewed.expect("still ours").token, lease.token);
    assert!(s.release(&lease).await.unwrap());

    // A running election rides over it without losing leadership.
    let e = unique("pool-kill-el-");
    let el = Election::new(s.clone(), &e, "a", ElectionOptions::from_lease(TTL)).unwrap();
    el.start().await.unwrap();
    let lead = tokio::time::timeout(Duration::from_secs(10), el.wait_for_leadership()).await.unwrap().unwrap();
    for _ in 0..3 {
        terminate(&url, &app).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(el.is_leader(), "lost leadership over killed pooled connections");
    assert_eq!(el.leadership().unwrap().token(), lead.token());
    el.stop().await.unwrap();
}

#[tokio::test]
async fn capabilities_and_options() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let c = s.capabilities();
    assert!(c.push_notifications && !c.pushes_expiry && c.server_side_expiry && c.durable_tokens);
    assert!(c.cross_host && !c.survives_store_failover && c.lists_elections);
    s.check_options(&ElectionOptions::from_lease(TTL)).unwrap();
    // A store on a pool without a LISTEN configuration polls.
    let polled = PostgresStore::from_pool(s.pool().clone()).unwrap();
    assert!(!polled.capabilities().push_notifications);
    assert!(polled.watch("x", None).is_none());
    acquired(polled.try_acquire(&request(&unique("pool-"), "p", "i", TTL)).await.unwrap());
}

/// The fenced-write check locks the lease row until the writer's transaction ends, so a takeover
/// cannot commit between the check and the write: it waits, and then gets a greater token.
#[tokio::test]
async fn fenced_write_transaction_holds_off_a_takeover_until_it_commits() {
    let Some(url) = url() else { return };
    let s = store(&url);
    let e = unique("fence-tx-");
    let mut client = sql_client(&url).await;
    let data = unique("fenced_tx_");
    client
        .batch_execute(&format!(
            "CREATE TABLE {data} (id int PRIMARY KEY, value text); INSERT INTO {data} VALUES (1, '');"
        ))
        .await
        .unwrap();
    let short = Duration::from_secs(1);
    let a = acquired(s.try_acquire(&request(&e, "a", "ia", short)).await.unwrap());
    let ta = a.token.get() as i64;
    let tx = client.transaction().await.unwrap();
    let write = format!("UPDATE {data} SET value = 'by a' WHERE id = 1 AND {}($1, $2)", s.holds_function());
    assert_eq!(tx.execute(&write, &[&e, &ta]).await.unwrap(), 1);
    // a's lease runs out while its write transaction is still open.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let s2 = s.clone();
    let e2 = e.clone();
    let takeover = tokio::spawn(async move { s2.try_acquire(&request(&e2, "b", "ib", TTL)).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!takeover.is_finished(), "the takeover must wait for the fenced transaction");
    tx.commit().await.unwrap();
    let b = acquired(tokio::time::timeout(Duration::from_secs(5), takeover).await.unwrap().unwrap().unwrap());
    assert!(b.token > a.token);
    client.batch_execute(&format!("DROP TABLE {data}")).await.unwrap();
}

/// A statement abandoned on the driver's operation timeout is cancelled on the server, not left
/// waiting: here for the row lock a user's fenced-write transaction holds.
#[tokio::test]
async fn abandoned_statements_are_cancelled_on_the_server() {
    let Some(url) = url() else { return };
    let app = unique("cancel_");
    let s = store(&with_params(&url, &format!("application_name={app}")));
    let e = unique("cancel-");
    let a = acquired(s.try_acquire(&request(&e, "a", "ia", TTL)).await.unwrap());
    let mut client = sql_client(&url).await;
    let tx = client.transaction().await.unwrap();
    let holds: bool = tx
        .query_one(&format!("SELECT {}($1, $2)", s.holds_function()), &[&e, &(a.token.get() as i64)])
        .await
        .unwrap()
        .get(0);
    assert!(holds);
    // The renew waits for the row lock; give up on it as the driver would.
    assert!(tokio::time::timeout(Duration::from_millis(300), s.renew(&a, TTL)).await.is_err());
    let watcher = sql_client(&url).await;
    let waiting = || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while waiting().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned renew still waits on the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.rollback().await.unwrap();
    // Nothing was renewed behind our back, and the lease is still ours to renew.
    assert!(s.renew(&a, TTL).await.unwrap().is_some());
}

/// The provider's type, and so the fenced-write function, from a store `connect` gave, through
/// store layers.
#[tokio::test]
async fn downcast_through_connect_and_layers() {
    use leader_core::layer::{CircuitBreakerLayer, LeaseStoreExt, RetryLayer};
    let Some(url) = url() else { return };
    let store = leader_postgres::connect(&url)
        .await
        .unwrap()
        .layer(RetryLayer::new())
        .layer(CircuitBreakerLayer::new(3, Duration::from_secs(1)));
    let pg = store.downcast_ref::<PostgresStore>().expect("a PostgresStore behind the layers");
    assert_eq!(pg.holds_function(), "public.leader_leases_holds");
    assert_eq!(pg.endpoint(), url.split('@').nth(1).and_then(|r| r.split('/').next()).unwrap());
}

/// `connect` makes a round trip: a closed port fails there, `Unavailable`, and the message names
/// the server and the OS's cause (no server needed). A store built without connecting says the
/// same at its first call.
#[tokio::test]
async fn unreachable_server_is_named_with_the_os_cause() {
    let Err(err) = leader_postgres::connect("postgres://u:pw@127.0.0.1:1/x").await else {
        panic!("connected to port 1")
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let message = err.message().to_ascii_lowercase();
    assert!(message.contains("127.0.0.1:1") && message.contains("refused"), "{err}");
    let lazy = PostgresStore::from_url("postgres://u:pw@127.0.0.1:1/x").unwrap();
    let err = lazy.current("e").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("127.0.0.1:1") && err.message().to_ascii_lowercase().contains("refused"), "{err}");
    assert!(!format!("{err} {err:?}").contains("pw@"), "{err:?}");
}
