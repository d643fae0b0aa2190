//! Round trips counted by the server itself, for the many-elections section: how many requests the
//! store really received, whatever the client library batched or pipelined.
//!
//! - PostgreSQL: transactions (`xact_commit + xact_rollback` of `pg_stat_database`, this
//!   database). Each statement the store sends outside a transaction is one. A busy backend
//!   flushes its counters about once a second, an idle one up to 10 s late: the window starts once
//!   the setup's acquires have been flushed ([`ServerCounter::settle`]), and in the steady state
//!   the lag is the same at both ends of the window.
//! - Redis: script calls (`EVALSHA`, `EVAL` and `WAIT` in `INFO commandstats`): the commands the
//!   store sends. The commands a script runs inside are counted by Redis too, and left out here.
//! - ZooKeeper: packets received (`Received:` of the `srvr` four-letter word, which the project's
//!   servers allow; `mntr` calls it `zk_packets_received`), of the first server in the URL.
//! - etcd: gRPC messages received (`grpc_server_msg_received_total` summed over methods, from
//!   `/metrics` on the client port), of the first endpoint in the URL; plain-text endpoints only.
//!
//! Other stores (memory, fs, Azure, ...) have no server count; the section shows the client's calls.

use std::sync::Arc;
use std::time::Duration;

use leader::LeaseStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the server counts requests, for one store.
pub enum ServerCounter {
    /// PostgreSQL transactions on this database.
    #[cfg(feature = "postgres")]
    Postgres(leader::postgres::PostgresStore),
    /// Redis script calls.
    #[cfg(feature = "redis")]
    Redis(leader::redis::RedisStore),
    /// ZooKeeper packets received, by `srvr` on `host:port`.
    ZooKeeper(String),
    /// etcd gRPC messages received, from `/metrics` on `host:port`.
    Etcd(String),
}

impl ServerCounter {
    /// The counter for `store` (opened from `url`), if its server counts requests.
    pub fn for_store(store: &Arc<dyn LeaseStore>, url: &str) -> Option<ServerCounter> {
        let _ = store;
        let scheme = crate::config::scheme_of(url);
        #[cfg(feature = "postgres")]
        if let Some(pg) = <dyn LeaseStore>::downcast_ref::<leader::postgres::PostgresStore>(&**store) {
            return Some(ServerCounter::Postgres(pg.clone()));
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = <dyn LeaseStore>::downcast_ref::<leader::redis::RedisStore>(&**store) {
            return Some(ServerCounter::Redis(redis.clone()));
        }
        match scheme.as_str() {
            "zk" | "zookeeper" => first_host(url, 2181).map(ServerCounter::ZooKeeper),
            "etcd" => first_host(url, 2379).map(ServerCounter::Etcd),
            _ => None,
        }
    }

    /// What is counted, for the table's notes.
    pub fn what(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            ServerCounter::Postgres(_) => "PostgreSQL transactions (pg_stat_database xact_commit + xact_rollback)",
            #[cfg(feature = "redis")]
            ServerCounter::Redis(_) => "Redis script calls (INFO commandstats: evalsha, eval, wait)",
            ServerCounter::ZooKeeper(_) => "ZooKeeper packets received (srvr Received, = mntr zk_packets_received)",
            ServerCounter::Etcd(_) => "etcd gRPC messages received (/metrics grpc_server_msg_received_total)",
        }
    }

    /// How long after a burst (the K elections' acquires) the server's count catches up:
    /// PostgreSQL 15 and later flush an idle backend's counters up to 10 s late, so the window
    /// starts 11 s after the last election leads; the others count at once.
    pub fn settle(&self) -> Duration {
        match self {
            #[cfg(feature = "postgres")]
            ServerCounter::Postgres(_) => Duration::from_secs(11),
            _ => Duration::ZERO,
        }
    }

    /// The server's count now.
    pub async fn read(&self) -> Result<u64, String> {
        tokio::time::timeout(Duration::from_secs(10), self.read_now())
            .await
            .map_err(|_| "the server did not answer within 10s".to_owned())?
    }

    async fn read_now(&self) -> Result<u64, String> {
        match self {
            #[cfg(feature = "postgres")]
            ServerCounter::Postgres(pg) => {
                let client = pg.pool().get().await.map_err(|e| e.to_string())?;
                // Outside a transaction, each read takes a fresh snapshot of the statistics (and is
                // itself one transaction of the count).
                let row = client
                    .query_one(
                        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
                         WHERE datname = current_database()",
                        &[],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let n: i64 = row.try_get(0).map_err(|e| e.to_string())?;
                u64::try_from(n).map_err(|e| e.to_string())
            }
            #[cfg(feature = "redis")]
            ServerCounter::Redis(redis) => {
                use leader::redis::fred::interfaces::ClientLike;
                use leader::redis::fred::types::InfoKind;
                let info: String =
                    redis.client().info(Some(InfoKind::CommandStats)).await.map_err(|e| e.to_string())?;
                Ok(redis_script_calls(&info))
            }
            ServerCounter::ZooKeeper(addr) => {
                let text = exchange(addr, b"srvr").await?;
                text.lines()
                    .find_map(|l| l.strip_prefix("Received:"))
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| format!("srvr on {addr} answered without Received: {text:?}"))
            }
            ServerCounter::Etcd(addr) => {
                let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let text = exchange(addr, request.as_bytes()).await?;
                Ok(etcd_messages(&text))
            }
        }
    }
}

/// `cmdstat_evalsha:calls=12,...` and the like: the calls of the commands the store sends.
fn redis_script_calls(info: &str) -> u64 {
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| l.split_once(':'))
        .filter(|(cmd, _)| matches!(*cmd, "evalsha" | "eval" | "evalsha_ro" | "eval_ro" | "wait"))
        .filter_map(|(_, stats)| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// The sum of every `grpc_server_msg_received_total{...} N` sample.
fn etcd_messages(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total"))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|n| n.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

/// `host:port` of the first host of a `scheme://[user@]host[:port][,host...]/...` URL.
fn first_host(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = authority.split(',').next()?.trim();
    if host.is_empty() {
        return None;
    }
    let has_port = host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !host.ends_with(']');
    Some(if has_port { host.to_owned() } else { format!("{host}:{default_port}") })
}

/// Sends `request` on a new connection to `addr` and reads until the server closes it.
async fn exchange(addr: &str, request: &[u8]) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    stream.write_all(request).await.map_err(|e| format!("{addr}: {e}"))?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.map_err(|e| format!("{addr}: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counters() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=40,usec=1,usec_per_call=0.1\r\n\
                    cmdstat_get:calls=900,usec=1\r\ncmdstat_eval:calls=2,usec=3\r\n";
        assert_eq!(redis_script_calls(info), 42);
        let metrics = "# HELP x\ngrpc_server_msg_received_total{grpc_method=\"Range\"} 10\n\
                       grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\"} 5\ngrpc_server_started_total 99\n";
        assert_eq!(etcd_messages(metrics), 15);
        assert_eq!(first_host("zk://127.0.0.1:52181,h2:1/leader-test?x=1", 2181).as_deref(), Some("127.0.0.1:52181"));
        assert_eq!(first_host("etcd://u:p@etcd.local/leader", 2379).as_deref(), Some("etcd.local:2379"));
        assert_eq!(first_host("etcd:///x", 2379), None);
    }
}
