//! Helpers shared by this crate's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use leader_core::{AcquireRequest, Metadata};
use leader_postgres::PostgresStore;

/// The test server's URL from `LEADER_TEST_POSTGRES_URL`; without it the test prints why it did not
/// run and passes, unless `LEADER_TEST_REQUIRE` names `postgres`.
pub fn url() -> Option<String> {
    match std::env::var("LEADER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
            if required.split(',').any(|p| p.trim() == "postgres") {
                panic!("LEADER_TEST_REQUIRE names postgres but LEADER_TEST_POSTGRES_URL is not set (run `scripts/servers up postgres` and `eval \"$(scripts/servers env)\"`)");
            }
            // Once per test binary, and past libtest's output capture (which would hide it).
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "leader-postgres: skipping PostgreSQL tests: LEADER_TEST_POSTGRES_URL is not set \
                     (run `scripts/servers up postgres` and `eval \"$(scripts/servers env)\"`)"
                );
            });
            None
        }
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// `url` with extra query parameters.
pub fn with_params(url: &str, params: &str) -> String {
    if url.contains('?') {
        format!("{url}&{params}")
    } else {
        format!("{url}?{params}")
    }
}

pub fn store(url: &str) -> PostgresStore {
    PostgresStore::from_url(url).expect("test URL builds a store")
}

/// A plain client for checking what the store wrote, as a user's own SQL would.
pub async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("test server answers");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub fn request(election: &str, participant: &str, instance: &str, ttl: Duration) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: participant.to_owned(),
        instance_id: instance.to_owned(),
        ttl,
        metadata: Metadata::new(),
    }
}
