//! Configuration: the `etcd://` URL, [`EtcdConfig`] (plain data for configuration files) and
//! [`EtcdStoreBuilder`].

use std::path::PathBuf;
use std::time::Duration;

use leader_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::EtcdStore;

/// URL schemes this crate answers in `leader::connect`: `etcd` (plain), `etcds` (TLS).
pub const SCHEMES: &[&str] = &["etcd", "etcds"];

/// The key prefix used when the URL or builder names none: keys are `/leader/<election>`.
pub const DEFAULT_PREFIX: &str = "/leader";

/// The client port used when an endpoint names none.
pub const DEFAULT_PORT: u16 = 2379;

/// How long connecting to an endpoint may take (default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take before the client gives up on it (default). The election's own
/// `operation_timeout` is usually shorter and wins.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_PREFIX: usize = 512;

/// TLS settings as files, for [`EtcdConfig::tls`]. An empty table (`tls = {}`) means TLS with the
/// Mozilla root certificates (webpki-roots) and no client certificate.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsFiles {
    /// PEM file of the CA(s) that signed the servers' certificates; default: the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (with `key_file`), for servers that require one
    /// (`--client-cert-auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the servers' certificates must carry, when it is not the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("domain", &self.domain)
            .finish()
    }
}

/// Everything [`EtcdStoreBuilder`] takes that is data, for configuration files: durations are
/// written `"5s"`, `"500ms"`; unknown keys are errors. Only `endpoints` is required.
///
/// `Debug` hides the password; serialising writes it (the file needs it).
///
/// ```
/// let c: leader_etcd::EtcdConfig = serde_json::from_str(
///     r#"{ "endpoints": ["10.0.0.1:2379", "10.0.0.2:2379"], "prefix": "/services/leader",
///          "username": "app", "password": "s3cret", "request_timeout": "3s" }"#,
/// ).unwrap();
/// assert_eq!(c.request_timeout, std::time::Duration::from_secs(3));
/// assert!(!format!("{c:?}").contains("s3cret"));
/// let same = leader_etcd::EtcdConfig::from_url("etcd://app:s3cret@10.0.0.1:2379,10.0.0.2:2379/services/leader?request_timeout=3s").unwrap();
/// assert_eq!(c, same);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The cluster's client endpoints, `host:port` (the port defaults to 2379), or
    /// `http://host:port` / `https://host:port`.
    pub endpoints: Vec<String>,
    /// The key prefix every election's key lives under (default `/leader`): `/` and segments of
    /// letters, digits, `.`, `_`, `-`, `:`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// User name for etcd's authentication (`etcdctl auth enable`); with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS: absent for plain text; present (even empty) for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// See [`EtcdStoreBuilder::connect_timeout`]; default 5 s.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// See [`EtcdStoreBuilder::request_timeout`]; default 10 s.
    #[serde(with = "humantime_serde", default = "default_request_timeout")]
    pub request_timeout: Duration,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdConfig {
    /// The defaults for these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: default_prefix(),
            username: None,
            password: None,
            tls: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Parses `etcd://[user:password@]host:port[,host:port...]/prefix[?params]` (`etcds://` for
    /// TLS). Parameters: `ca_file`, `cert_file`, `key_file`, `tls_domain` (any of them turns TLS
    /// on), `connect_timeout`, `request_timeout` (durations such as `5s`). The user name and
    /// password may be percent-encoded.
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) naming the part that is wrong
    /// (never the password).
    pub fn from_url(url: &str) -> Result<Self> {
        parse_url(url)
    }

    /// A builder with these settings (for settings only code can give, such as a TLS
    /// configuration made in memory).
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) when a TLS file cannot be read.
    pub fn builder(&self) -> Result<EtcdStoreBuilder> {
        let mut b = EtcdStoreBuilder::default()
            .endpoints(self.endpoints.clone())
            .prefix(&self.prefix)
            .connect_timeout(self.connect_timeout)
            .request_timeout(self.request_timeout);
        match (&self.username, &self.password) {
            (Some(user), password) => b = b.auth(user, password.as_deref().unwrap_or("")),
            (None, Some(_)) => {
                return Err(Error::invalid_argument("an etcd password was given without a username"));
            }
            (None, None) => {}
        }
        if let Some(tls) = &self.tls {
            b = b.with_tls_files(tls)?;
        }
        Ok(b)
    }

    /// Connects: the store these settings describe.
    ///
    /// # Errors
    /// See [`EtcdStoreBuilder::connect`].
    pub async fn connect(&self) -> Result<EtcdStore> {
        self.builder()?.connect().await
    }
}

/// TLS as the builder holds it.
#[derive(Clone)]
pub(crate) enum Tls {
    Off,
    #[cfg(feature = "tls")]
    On(etcd_client::TlsOptions),
}

/// Builds an [`EtcdStore`]: endpoints, key prefix, authentication, TLS and timeouts.
///
/// ```no_run
/// # async fn demo() -> leader_core::Result<()> {
/// use std::time::Duration;
/// let store = leader_etcd::EtcdStore::builder()
///     .endpoints(["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"])
///     .prefix("/services/leader")
///     .auth("app", "s3cret")
///     .request_timeout(Duration::from_secs(3))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdStoreBuilder {
    pub(crate) endpoints: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) user: Option<(String, String)>,
    pub(crate) tls: Tls,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl Default for EtcdStoreBuilder {
    fn default() -> Self {
        EtcdStoreBuilder {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            user: None,
            tls: Tls::Off,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for EtcdStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStoreBuilder")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| format!("{u}:<redacted>")))
            .field("tls", &!matches!(self.tls, Tls::Off))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdStoreBuilder {
    /// The cluster's client endpoints: `host:port` (port default 2379), `http://host:port` or
    /// `https://host:port`. The client spreads requests over all of them and leaves out those it
    /// cannot reach.
    #[must_use]
    pub fn endpoints<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// The key prefix every election's key lives under (default `/leader`; the key of election
    /// `jobs` is then `/leader/jobs`): `/` and segments of letters, digits, `.`, `_`, `-`, `:`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Authenticates as `user` (etcd's user/password authentication). The token the server
    /// hands out is refreshed by the client when it expires.
    #[must_use]
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// TLS with this configuration (CA, client identity, domain name). Endpoints without a scheme
    /// then use `https://`.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: etcd_client::TlsOptions) -> Self {
        self.tls = Tls::On(tls);
        self
    }

    /// How long connecting to one endpoint may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one request may take before the client gives up on it (default 10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    #[cfg(feature = "tls")]
    fn with_tls_files(self, files: &TlsFiles) -> Result<Self> {
        use etcd_client::{Certificate, Identity, TlsOptions};
        let read = |what: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                Error::invalid_argument(format!("cannot read the etcd TLS {what} {}: {e}", path.display()))
                    .with_source(e)
            })
        };
        let mut tls = TlsOptions::new();
        tls = match &files.ca_file {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read("CA file", path)?)),
            None => tls.with_webpki_roots(),
        };
        match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read("certificate file", cert)?, read("key file", key)?));
            }
            (None, None) => {}
            _ => {
                return Err(Error::invalid_argument(
                    "etcd TLS: cert_file and key_file go together (a client certificate and its key)",
                ))
            }
        }
        if let Some(domain) = &files.domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(self.tls(tls))
    }

    #[cfg(not(feature = "tls"))]
    fn with_tls_files(self, _files: &TlsFiles) -> Result<Self> {
        Err(Error::invalid_argument(
            "etcd TLS was asked for (etcds://, ca_file, or a tls table), but leader-etcd was built without its `tls` feature",
        ))
    }

    /// Checks the settings, connects, learns the server's smallest lease TTL (it grants a
    /// 1-second lease, reads the TTL the server gave it, and revokes it) and reads one key under
    /// the prefix (so that missing credentials or permissions show now). The store serves every
    /// election under the prefix; clones share its connections.
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for bad settings;
    /// [`Unavailable`](leader_core::ErrorKind::Unavailable) when no endpoint answers in time;
    /// [`Backend`](leader_core::ErrorKind::Backend) when the server refuses (credentials,
    /// permissions).
    pub async fn connect(self) -> Result<EtcdStore> {
        self.validate()?;
        EtcdStore::open(self).await
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid_argument("the etcd store needs at least one endpoint (host:port)"));
        }
        for e in &self.endpoints {
            endpoint_url(e, false)?;
        }
        validate_prefix(&self.prefix)?;
        for (name, t) in [("connect_timeout", self.connect_timeout), ("request_timeout", self.request_timeout)] {
            if t.is_zero() || t > MAX_TIMEOUT {
                return Err(Error::invalid_argument(format!(
                    "{name} {} is out of range; it must be above 0 and at most 1h",
                    humantime::format_duration(t)
                )));
            }
        }
        if let Some((user, _)) = &self.user {
            if user.is_empty() {
                return Err(Error::invalid_argument("the etcd user name is empty"));
            }
        }
        Ok(())
    }

    /// The endpoints as the client takes them (`http://` or `https://host:port`).
    pub(crate) fn endpoint_urls(&self) -> Result<Vec<String>> {
        let tls = !matches!(self.tls, Tls::Off);
        self.endpoints.iter().map(|e| endpoint_url(e, tls)).collect()
    }
}

/// `host:port` -> `http(s)://host:port`; a URL with a scheme is kept (checked).
fn endpoint_url(endpoint: &str, tls: bool) -> Result<String> {
    let bad = |why: &str| Error::invalid_argument(format!("etcd endpoint {endpoint:?} {why}"));
    let (scheme, rest) = match endpoint.split_once("://") {
        Some(("http", rest)) => ("http", rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => return Err(bad(&format!("has scheme {other:?}; use host:port, http:// or https://"))),
        None => (if tls { "https" } else { "http" }, endpoint),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_host_port(rest).map_err(bad)?;
    Ok(format!("{scheme}://{host}:{port}"))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` -> (host as written, port).
fn split_host_port(hp: &str) -> std::result::Result<(&str, u16), &'static str> {
    let (host, port) = if hp.starts_with('[') {
        let end = hp.find(']').ok_or("has an unclosed '['")?;
        let after = &hp[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("has text after the IPv6 address"),
        };
        (&hp[..=end], port)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', ',', '?', '#']) {
        return Err("is not host:port");
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("has a port that is not 1-65535")?,
        None => DEFAULT_PORT,
    };
    Ok((host, port))
}

/// A prefix is `/` followed by one or more segments of `A-Z a-z 0-9 . _ - :`, at most 512 bytes.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let rule = "an etcd key prefix is '/' and segments of letters, digits, '.', '_', '-', ':' (e.g. /services/leader)";
    let Some(rest) = prefix.strip_prefix('/') else {
        return Err(Error::invalid_argument(format!("key prefix {prefix:?} does not start with '/'; {rule}")));
    };
    if prefix.len() > MAX_PREFIX {
        return Err(Error::invalid_argument(format!(
            "key prefix is {} bytes; the limit is {MAX_PREFIX}",
            prefix.len()
        )));
    }
    for segment in rest.split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if !ok {
            return Err(Error::invalid_argument(format!(
                "key prefix {prefix:?} has a bad segment {segment:?}; {rule}"
            )));
        }
    }
    Ok(())
}

/// The URL with its password replaced, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(start), Some(at)) if at > start => match url[start + 3..at].split_once(':') {
            Some((user, _)) => format!("{}://{user}:***@{}", &url[..start], &url[at + 1..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

fn percent_decode(s: &str, what: &str, shown: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid_argument(format!("URL {shown:?}: the {what} has a bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid_argument(format!("URL {shown:?}: the {what} is not UTF-8 once %-decoded")))
}

fn parse_url(url: &str) -> Result<EtcdConfig> {
    let shown = redact(url);
    let (scheme, rest) =
        url.split_once("://").filter(|(s, _)| SCHEMES.contains(&s.to_ascii_lowercase().as_str())).ok_or_else(|| {
            Error::invalid_argument(format!(
                "URL {shown:?} is not an etcd URL; expected etcd://host:port[,host:port]/prefix (schemes {SCHEMES:?})"
            ))
        })?;
    let tls = scheme.eq_ignore_ascii_case("etcds");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hosts.is_empty() {
        return Err(Error::invalid_argument(format!(
            "URL {shown:?} names no server; expected etcd://host:port/prefix"
        )));
    }
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let (h, port) = split_host_port(host)
            .map_err(|why| Error::invalid_argument(format!("URL {shown:?}: server {host:?} {why}")))?;
        endpoints.push(format!("{h}:{port}"));
    }
    let mut config = EtcdConfig::new(endpoints);
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = percent_decode(user, "user name", &shown)?;
        if user.is_empty() {
            return Err(Error::invalid_argument(format!("URL {shown:?} has an empty user name")));
        }
        config.username = Some(user);
        config.password = password.map(|p| percent_decode(p, "password", &shown)).transpose()?;
    }
    let path = path.trim_end_matches('/');
    if !path.is_empty() {
        validate_prefix(path).map_err(|e| Error::invalid_argument(format!("URL {shown:?}: {e}")))?;
        config.prefix = path.to_owned();
    }
    let mut files = TlsFiles::default();
    let mut want_tls = tls;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value, &format!("parameter {key}"), &shown)?;
        let duration = || {
            humantime::parse_duration(&value).map_err(|e| {
                Error::invalid_argument(format!(
                    "URL {shown:?}: {key}={value:?} is not a duration such as \"5s\" or \"500ms\": {e}"
                ))
            })
        };
        match key {
            "ca_file" => files.ca_file = Some(PathBuf::from(&value)),
            "cert_file" => files.cert_file = Some(PathBuf::from(&value)),
            "key_file" => files.key_file = Some(PathBuf::from(&value)),
            "tls_domain" => files.domain = Some(value.clone()),
            "connect_timeout" => config.connect_timeout = duration()?,
            "request_timeout" => config.request_timeout = duration()?,
            other => {
                return Err(Error::invalid_argument(format!(
                    "URL {shown:?}: unknown parameter {other:?}; known: ca_file, cert_file, key_file, tls_domain, \
                     connect_timeout, request_timeout"
                )))
            }
        }
        if key.starts_with("ca_") || key.starts_with("cert_") || key.starts_with("key_") || key.starts_with("tls_") {
            want_tls = true;
        }
    }
    if want_tls {
        config.tls = Some(files);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    #[test]
    fn parses_urls() {
        let c = parse_url("etcd://127.0.0.1:52379/leader-test").unwrap();
        assert_eq!(c.endpoints, vec!["127.0.0.1:52379"]);
        assert_eq!(c.prefix, "/leader-test");
        assert_eq!(c.tls, None);
        assert_eq!(c.username, None);

        let c = parse_url("etcds://u%40x:p%3Aw@a:1,b,[::1]:3/x/y/?request_timeout=3s&ca_file=/tmp/ca.pem").unwrap();
        assert_eq!(c.endpoints, vec!["a:1", "b:2379", "[::1]:3"]);
        assert_eq!(c.prefix, "/x/y");
        assert_eq!(c.username.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_deref(), Some("p:w"));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.tls.as_ref().and_then(|t| t.ca_file.clone()), Some(PathBuf::from("/tmp/ca.pem")));

        let c = parse_url("etcd://h").unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        // A CA file turns TLS on for etcd:// too.
        assert!(parse_url("etcd://h/p?ca_file=x").unwrap().tls.is_some());
    }

    #[test]
    fn refuses_bad_urls_without_showing_the_password() {
        for url in [
            "http://h:1/x",
            "etcd:///x",
            "etcd://h:0/x",
            "etcd://h:99999/x",
            "etcd://h:1,/x",
            "etcd://h:1/x?request_timeout=soon",
            "etcd://h:1/x?ttl=4s",
            "etcd://h:1/a//b",
            "etcd://h:1/a b",
            "etcd://:hunter2@h:1/x",
            "etcd://u:hunter2@h:1/x?bogus=1",
            "etcd://u:hunter2@h:1/x%zz?ca_file=%zz",
        ] {
            let err = parse_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(err.to_string().contains("URL"), "{err}");
        }
    }

    #[test]
    fn validates_prefixes_and_endpoints() {
        for ok in ["/leader", "/a/b-c/d.e:f_g"] {
            validate_prefix(ok).unwrap();
        }
        for bad in ["", "leader", "/", "/a//b", "/a/", "/a/..", "/a b", "/ä"] {
            assert_eq!(validate_prefix(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(endpoint_url("h:1", false).unwrap(), "http://h:1");
        assert_eq!(endpoint_url("h", true).unwrap(), "https://h:2379");
        assert_eq!(endpoint_url("https://h:5/", false).unwrap(), "https://h:5");
        for bad in ["ftp://h:1", "h:x", "", "[::1"] {
            assert_eq!(endpoint_url(bad, false).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn builder_checks_its_settings() {
        let ok = EtcdStoreBuilder::default().endpoints(["h:1"]);
        ok.validate().unwrap();
        let cases = [
            EtcdStoreBuilder::default(),
            ok.clone().prefix("nope"),
            ok.clone().request_timeout(Duration::ZERO),
            ok.clone().connect_timeout(Duration::from_secs(7200)),
            ok.clone().auth("", "x"),
        ];
        for b in cases {
            assert_eq!(b.validate().unwrap_err().kind(), ErrorKind::InvalidArgument, "{b:?}");
        }
    }

    #[test]
    fn debug_redacts_secrets_and_serde_round_trips() {
        let mut c = EtcdConfig::new(["h:1"]);
        c.username = Some("app".into());
        c.password = Some("hunter2".into());
        c.tls = Some(TlsFiles { ca_file: Some("/ca.pem".into()), ..TlsFiles::default() });
        c.request_timeout = Duration::from_millis(2500);
        assert!(!format!("{c:?}").contains("hunter2"));
        // The builder reads the TLS files: without them it refuses, naming the file.
        let err = c.builder().unwrap_err();
        assert!(err.to_string().contains("/ca.pem"), "{err}");
        let plain = EtcdConfig { tls: None, ..c.clone() };
        let b = plain.builder().unwrap();
        assert!(!format!("{b:?}").contains("hunter2"), "{b:?}");
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"2s 500ms\""), "{text}");
        let back: EtcdConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let unknown = serde_json::from_str::<EtcdConfig>(r#"{"endpoints":["h"],"ttl":"1s"}"#).unwrap_err();
        assert!(unknown.to_string().contains("ttl"), "{unknown}");
    }

    #[test]
    fn redacts_urls() {
        assert_eq!(redact("etcd://u:secret@h/p"), "etcd://u:***@h/p");
        assert_eq!(redact("etcd://h/p"), "etcd://h/p");
    }
}
