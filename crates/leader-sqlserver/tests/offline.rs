//! What can be checked of the store without a SQL Server: input refused before anything is sent,
//! option limits, and how an unreachable server is reported.

use std::time::Duration;

use leader_core::{ElectionOptions, ErrorKind, LeaseStore};
use leader_sqlserver::{SqlServerConfig, SqlServerStore, CAPABILITIES};

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn hostile_table_names_are_refused_before_connecting() {
    for url in [
        "mssql://sa:pw@127.0.0.1:1/db?table=leases%5D%3B%20DROP%20TABLE%20users%3B--",
        "mssql://sa:pw@127.0.0.1:1/db?schema=dbo%5D.%5Busers",
        "mssql://sa:pw@127.0.0.1:1/db?table=a%27b",
    ] {
        let err = SqlServerStore::connect(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url}: {err}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let url = format!("mssql://sa:pw@127.0.0.1:{}/master?connect_timeout=2s", closed_port());
    let err = SqlServerStore::connect(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_store_without_ensure_schema_is_built_lazily_and_reports_unavailable_per_call() {
    let url = format!("mssql://sa:pw@127.0.0.1:{}/master?ensure_schema=false&connect_timeout=1s", closed_port());
    let store = SqlServerStore::connect(&url).await.expect("no I/O at construction");
    assert_eq!(store.table(), "[dbo].[leader_leases]");
    let err = store.current("jobs").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // Bad names never reach the server.
    assert_eq!(store.current("a/b").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(store.list("a b").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(store.watch("jobs", None).is_none(), "no push channel: followers poll");
}

#[tokio::test]
async fn options_must_fit_dateadd() {
    let url = format!("mssql://sa:pw@127.0.0.1:{}/master?ensure_schema=false", closed_port());
    let store = SqlServerStore::connect(&url).await.expect("lazy");
    assert!(store.check_options(&ElectionOptions::from_lease(Duration::from_secs(3))).is_ok());
    let err = store.check_options(&ElectionOptions::from_lease(Duration::from_secs(30 * 86_400))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("DATEADD"), "{err}");
}

#[test]
fn capabilities_are_those_of_a_polled_sql_store() {
    let caps = CAPABILITIES;
    assert_eq!((caps.push_notifications, caps.pushes_expiry), (false, false));
    assert_eq!((caps.server_side_expiry, caps.durable_tokens, caps.lists_elections), (true, true, true));
    assert_eq!(caps.reap_multiplier, 1);
}

#[test]
fn config_builders_validate() {
    let c = SqlServerConfig::parse("Server=tcp:127.0.0.1,1433;User Id=sa;Password=pw").expect("ado");
    assert!(c.clone().table("ok_name").is_ok());
    assert_eq!(c.clone().table("bad name").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(c.pool_size(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

/// `leader::connect`'s entry point makes a round trip even with `ensure_schema=false`, and an
/// unreachable server is named with the OS's cause, in the message itself.
#[tokio::test]
async fn connect_makes_a_round_trip_and_names_the_server() {
    let port = closed_port();
    for url in [
        format!("mssql://sa:pw@127.0.0.1:{port}/master?ensure_schema=false&connect_timeout=2s"),
        format!("mssql://sa:pw@127.0.0.1:{port}/master?connect_timeout=2s"),
    ] {
        let Err(err) = leader_sqlserver::connect(&url).await else { panic!("{url}: connected to a closed port") };
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let message = err.message().to_ascii_lowercase();
        assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("refused"), "{err}");
        assert_eq!(err.to_string().matches("os error").count(), 1, "the OS error once: {err}");
        assert!(!format!("{err} {err:?}").contains(":pw@"), "{err:?}");
    }
}
