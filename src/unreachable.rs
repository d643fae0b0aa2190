//! One shape for "the store cannot be reached", whatever the provider's driver says: the message
//! of an [`ErrorKind::Unavailable`] from [`connect`](crate::connect) names the endpoint
//! (`host:port`) and the operating system's cause.
//!
//! Providers name both themselves where their driver tells them; this fills in what a driver
//! keeps to itself (some report "no available hosts" and nothing more). The cause is the first
//! I/O error in the error's source chain; when there is none, one TCP connection to the endpoint
//! is tried, and its failure, if it fails, is the cause.

use std::time::Duration;

use crate::{Error, ErrorKind, Target};

/// How long the diagnostic TCP connection may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `err` with the endpoint and the OS cause in its message, when it is `Unavailable` and lacks them.
pub(crate) async fn explain(target: &Target, url: &str, err: Error) -> Error {
    if err.kind() != ErrorKind::Unavailable {
        return err;
    }
    let Target::Scheme(scheme) = target else { return err };
    let endpoints = endpoints(scheme, url);
    let Some(first) = endpoints.first() else { return err };
    let message = err.message().to_owned();
    let named = endpoints.iter().any(|e| message.contains(e.as_str()));
    let cause = match io_cause(&err) {
        Some(cause) => Some(cause),
        None => probe(first).await,
    };
    let cause = cause.filter(|c| !message.contains(c.as_str()));
    let shown = endpoints.join(",");
    let message = match (named, cause) {
        (true, None) => return err,
        (true, Some(cause)) => format!("{message}: {cause}"),
        (false, None) => format!("{message} ({shown})"),
        (false, Some(cause)) => format!("{message} ({shown}: {cause})"),
    };
    err.with_message(message)
}

/// The first `std::io::Error` in the source chain, as text.
fn io_cause(err: &Error) -> Option<String> {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.to_string());
        }
        source = e.source();
    }
    None
}

/// Why a TCP connection to `endpoint` fails now (`None`: it succeeds, or cannot be tried).
async fn probe(endpoint: &str) -> Option<String> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(endpoint)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer to a TCP connection within {PROBE_TIMEOUT:?}")),
    }
}

/// The `host:port` endpoints a network store URL names (none for local schemes), with the
/// provider's default port where the URL gives none.
pub(crate) fn endpoints(scheme: &str, url: &str) -> Vec<String> {
    let default_port = match scheme {
        "postgres" | "postgresql" => 5432,
        s if s.starts_with("redis") => 6379,
        "zk" | "zookeeper" => 2181,
        "consul" => 8500,
        "mssql" | "sqlserver" => 1433,
        // azblob derives its endpoint from the account; its own messages name it.
        _ => return Vec::new(),
    };
    let Some((_, rest)) = url.split_once("://") else { return Vec::new() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = match h.rfind(']') {
                Some(close) => h[close..].contains(':'),
                None => h.contains(':'),
            };
            if has_port {
                h.to_owned()
            } else {
                format!("{h}:{default_port}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_urls() {
        assert_eq!(endpoints("postgres", "postgres://u:p@db/app"), ["db:5432"]);
        assert_eq!(endpoints("zk", "zk://a:1,b,c:3/root?x=1"), ["a:1", "b:2181", "c:3"]);
        assert_eq!(endpoints("redis", "redis://:pw@[::1]:7000/0"), ["[::1]:7000"]);
        assert_eq!(endpoints("redis", "redis://[::1]"), ["[::1]:6379"]);
        assert!(endpoints("memory", "memory://x").is_empty());
        assert!(endpoints("file", "file:///tmp").is_empty());
    }
}
