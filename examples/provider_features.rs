//! Provider features from a store that `leader::connect` gave, through store layers:
//! `<dyn LeaseStore>::downcast_ref::<T>()` finds the provider's own type behind any number of
//! layers (retry, circuit breaker, metrics, ...).
//!
//! - PostgreSQL: the fenced-write function (`PostgresStore::holds_function()`), to guard your own
//!   writes with the leader's fencing token;
//! - ZooKeeper: the session timeout the server granted, which every election on that store must
//!   use as its `lease_duration`;
//! - any other store: its type name, and the options it would be given.
//!
//! ```sh
//! cargo run --example provider_features --features postgres,zookeeper -- 'postgres://postgres@127.0.0.1:55432/postgres'
//! cargo run --example provider_features --features postgres,zookeeper -- 'zk://127.0.0.1:52181/leader-test'
//! cargo run --example provider_features --features postgres,zookeeper   # memory://provider-features
//! ```

use std::time::Duration;

use leader::layer::{CircuitBreakerLayer, LeaseStoreExt, RetryLayer};
use leader::postgres::PostgresStore;
use leader::zookeeper::ZooKeeperStore;
use leader::{Election, ElectionOptions, LeaseStore};

#[tokio::main]
async fn main() -> leader::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "memory://provider-features".to_owned());
    // What an application typically holds: a connected store, wrapped in layers.
    let store = leader::connect(&url)
        .await?
        .layer(RetryLayer::new())
        .layer(CircuitBreakerLayer::new(5, Duration::from_secs(10)));

    let options = options_for(&*store);
    if let Some(pg) = store.downcast_ref::<PostgresStore>() {
        let holds = pg.holds_function();
        println!("PostgreSQL store on table {}; fence your writes with {holds}:", pg.table_name());
        println!("  UPDATE jobs SET ... WHERE id = $1 AND {holds}('nightly-report', $2)  -- $2 = the fencing token");
    }

    let election = Election::builder(store, "provider-features").options(options.clone()).build()?;
    let leading = election.try_acquire().await?;
    println!(
        "lease {:?} (renew every {:?}); this process {} the election",
        options.lease_duration,
        options.renew_interval,
        if leading { "now leads" } else { "does not lead" }
    );
    election.stop().await?;
    Ok(())
}

/// Election options that fit the store: on ZooKeeper the lease is the session timeout the server
/// granted; elsewhere the library's default profile.
fn options_for(store: &dyn LeaseStore) -> ElectionOptions {
    match store.downcast_ref::<ZooKeeperStore>() {
        Some(zk) => {
            println!("ZooKeeper store under {}; session timeout {:?}", zk.root(), zk.session_timeout());
            ElectionOptions::from_lease(zk.session_timeout())
        }
        None => ElectionOptions::balanced(),
    }
}
