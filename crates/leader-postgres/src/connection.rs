//! Connection settings: parsing a URL, the defaults that let a dead peer be noticed, TLS, and
//! opening the one connection that is not pooled (the LISTEN connection).

use std::str::FromStr;
use std::time::Duration;

use leader_core::{Error, Result};
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;

/// Our own URL query parameters; the rest go to tokio-postgres (libpq names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UrlOptions {
    pub schema: Option<String>,
    pub table: Option<String>,
    pub pool_size: Option<usize>,
}

/// Splits a `postgres://` / `postgresql://` URL into the driver's config and our own options
/// (`schema`, `table`, `pool_size`). Messages never repeat the URL (it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<(Config, UrlOptions)> {
    let mut parsed = url::Url::parse(url).map_err(|e| {
        Error::invalid_argument(format!(
            "the PostgreSQL URL does not parse ({e}); expected postgres://user@host:port/db"
        ))
    })?;
    if !crate::SCHEMES.contains(&parsed.scheme()) {
        return Err(Error::invalid_argument(format!(
            "URL scheme {:?} is not a PostgreSQL scheme; expected one of {:?}",
            parsed.scheme(),
            crate::SCHEMES
        )));
    }
    let mut opts = UrlOptions::default();
    let mut rest = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "schema" => opts.schema = Some(value.into_owned()),
            "table" => opts.table = Some(value.into_owned()),
            "pool_size" => {
                let n = value.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "URL parameter pool_size={value:?} must be a number from 1 to 1000"
                    ))
                })?;
                opts.pool_size = Some(n);
            }
            _ => rest.push((key.into_owned(), value.into_owned())),
        }
    }
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    let config = Config::from_str(parsed.as_str()).map_err(|e| {
        Error::invalid_argument(format!("the PostgreSQL URL is not a valid connection string: {e}")).with_source(e)
    })?;
    Ok((config, opts))
}

/// Connection defaults for a lease store, where the user has not set them:
/// - `connect_timeout` 5 s, so a connect to a dead host fails inside the driver's retry rhythm;
/// - TCP keepalives after 5 s idle, every 2 s, 3 probes, and `tcp_user_timeout` 10 s: a holder or
///   server that vanished without closing its socket is noticed in seconds, not the OS's 2 hours;
/// - `application_name` `leader-postgres`, so the store's sessions are recognisable in
///   `pg_stat_activity`.
pub(crate) fn apply_defaults(config: &mut Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // tokio-postgres's default idle time is the OS's two hours: treat that as "not set".
    if config.get_keepalives_idle() >= Duration::from_secs(2 * 60 * 60) {
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("leader-postgres");
    }
}

/// How connections are encrypted.
#[derive(Clone)]
pub(crate) enum Tls {
    /// No TLS (`sslmode=disable` or `prefer`, the default, without a TLS configuration).
    Plain,
    /// rustls, certificates verified.
    #[cfg(feature = "tls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tls::Plain => f.write_str("Plain"),
            #[cfg(feature = "tls")]
            Tls::Rustls(_) => f.write_str("Rustls"),
        }
    }
}

/// Chooses TLS from `sslmode` and an explicit rustls configuration: `require` (or a configuration
/// given to the builder) uses rustls, verifying the server's certificate; `disable` and `prefer`
/// (the default) connect in plain text.
pub(crate) fn choose_tls(config: &Config, explicit: Option<TlsConfig>) -> Result<Tls> {
    match (config.get_ssl_mode(), explicit) {
        (SslMode::Disable, _) => Ok(Tls::Plain),
        #[cfg(feature = "tls")]
        (_, Some(tls)) => Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new((*tls.0).clone()))),
        (SslMode::Require, _) => require_tls(),
        _ => Ok(Tls::Plain),
    }
}

#[cfg(feature = "tls")]
fn require_tls() -> Result<Tls> {
    Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(default_rustls()?)))
}

#[cfg(not(feature = "tls"))]
fn require_tls() -> Result<Tls> {
    Err(Error::invalid_argument(
        "sslmode=require needs TLS, and leader-postgres was built without its `tls` feature; enable it",
    ))
}

/// rustls with the ring provider (chosen explicitly, so that another crate installing a different
/// process-wide default cannot make rustls panic) and the Mozilla root certificates.
#[cfg(feature = "tls")]
fn default_rustls() -> Result<rustls::ClientConfig> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::backend("rustls refused its default protocol versions").with_source(e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

/// A rustls client configuration for [`PostgresStoreBuilder::tls`](crate::PostgresStoreBuilder::tls)
/// (custom roots, client certificates).
#[derive(Clone)]
pub struct TlsConfig(
    #[cfg(feature = "tls")] pub(crate) std::sync::Arc<rustls::ClientConfig>,
    #[cfg(not(feature = "tls"))] pub(crate) (),
);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(..)")
    }
}

#[cfg(feature = "tls")]
impl From<rustls::ClientConfig> for TlsConfig {
    fn from(config: rustls::ClientConfig) -> Self {
        TlsConfig(std::sync::Arc::new(config))
    }
}

/// A deadpool manager over `config` with `tls`. Fast recycling: no health-check query per
/// checkout (it would double the round trips); a connection whose operation failed or was
/// cancelled is discarded instead (see `store::Checkout`).
pub(crate) fn manager(config: Config, tls: &Tls) -> deadpool_postgres::Manager {
    let mc = deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast };
    match tls {
        Tls::Plain => deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, mc),
        #[cfg(feature = "tls")]
        Tls::Rustls(make) => deadpool_postgres::Manager::from_config(config, make.clone(), mc),
    }
}

/// Opens one unpooled connection and drives it on a task of its own, passing every notification
/// on `channel` to `on_notify`. The returned handle ends when the connection does.
pub(crate) async fn connect_unpooled(
    config: &Config,
    tls: &Tls,
    channel: String,
    on_notify: impl Fn(&str) + Send + 'static,
) -> std::result::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    match tls {
        Tls::Plain => {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            Ok((client, tokio::spawn(drive(conn, channel, on_notify))))
        }
        #[cfg(feature = "tls")]
        Tls::Rustls(make) => {
            let (client, conn) = config.connect(make.clone()).await?;
            Ok((client, tokio::spawn(drive(conn, channel, on_notify))))
        }
    }
}

async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    channel: String,
    on_notify: impl Fn(&str) + Send + 'static,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notification(n)) if n.channel() == channel => on_notify(n.payload()),
            Ok(_) => {} // notices, other channels
            Err(e) => {
                tracing::debug!(error = %e, "leader-postgres: listen connection ended");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    #[test]
    fn parses_both_schemes_and_our_options() {
        let (c, o) =
            parse_url("postgresql://u:secret@db.example:6543/app?schema=jobs&table=leases&pool_size=3&sslmode=disable")
                .unwrap();
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_dbname(), Some("app"));
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(o, UrlOptions { schema: Some("jobs".into()), table: Some("leases".into()), pool_size: Some(3) });
        let (_, o) = parse_url("postgres://u@localhost/db").unwrap();
        assert_eq!(o, UrlOptions::default());
    }

    #[test]
    fn bad_urls_are_invalid_arguments_without_the_password() {
        for url in ["redis://x", "postgres://u:hunter2@h/db?pool_size=0", "postgres://u:hunter2@h/db?bogus=1", "::"] {
            let err = parse_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn defaults_fill_only_what_is_unset() {
        let (mut c, _) = parse_url("postgres://u@h/db?connect_timeout=9&application_name=mine").unwrap();
        apply_defaults(&mut c);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(9)));
        assert_eq!(c.get_application_name(), Some("mine"));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(10)));
    }

    #[test]
    fn sslmode_picks_tls() {
        let (c, _) = parse_url("postgres://u@h/db").unwrap();
        assert!(matches!(choose_tls(&c, None).unwrap(), Tls::Plain));
        let (c, _) = parse_url("postgres://u@h/db?sslmode=require").unwrap();
        #[cfg(feature = "tls")]
        assert!(matches!(choose_tls(&c, None).unwrap(), Tls::Rustls(_)));
        #[cfg(not(feature = "tls"))]
        assert_eq!(choose_tls(&c, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
