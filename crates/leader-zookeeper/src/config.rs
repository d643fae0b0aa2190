//! Configuration: the `zk://` URL and [`ZooKeeperStoreBuilder`].

use std::time::Duration;

use leader_core::{Error, Result, DEFAULT_LEASE};
use zookeeper_client::Acl;

use crate::ZooKeeperStore;

/// URL schemes this crate answers in `leader::connect`.
pub const SCHEMES: &[&str] = &["zk", "zookeeper"];

/// The root path used when the URL or builder names none.
pub const DEFAULT_ROOT: &str = "/leader";

/// The session timeout asked for when none is given: [`DEFAULT_LEASE`] (15 s), so that a store
/// built with defaults accepts `ElectionOptions::default()`.
pub const DEFAULT_SESSION_TIMEOUT: Duration = DEFAULT_LEASE;

const DEFAULT_PORT: u16 = 2181;

/// Builds a [`ZooKeeperStore`]: servers, root path, session timeout, ACLs and credentials.
///
/// ```no_run
/// # async fn demo() -> leader_core::Result<()> {
/// use std::time::Duration;
/// let store = leader_zookeeper::ZooKeeperStore::builder("10.0.0.1:2181,10.0.0.2:2181")
///     .root("/services/leader")
///     .session_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZooKeeperStoreBuilder {
    pub(crate) hosts: String,
    pub(crate) root: String,
    pub(crate) session_timeout: Duration,
    pub(crate) acls: Vec<Acl>,
    pub(crate) auth: Vec<(String, Vec<u8>)>,
}

/// Redacts the auth data (digest `user:password` and the like): only the schemes show.
impl std::fmt::Debug for ZooKeeperStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth: Vec<String> = self.auth.iter().map(|(scheme, _)| format!("{scheme}:***")).collect();
        f.debug_struct("ZooKeeperStoreBuilder")
            .field("hosts", &self.hosts)
            .field("root", &self.root)
            .field("session_timeout", &self.session_timeout)
            .field("acls", &self.acls.len())
            .field("auth", &auth)
            .finish()
    }
}

impl ZooKeeperStoreBuilder {
    pub(crate) fn new(hosts: &str) -> Self {
        ZooKeeperStoreBuilder {
            hosts: hosts.to_owned(),
            root: DEFAULT_ROOT.to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            acls: Vec::new(),
            auth: Vec::new(),
        }
    }

    /// The node under which every election lives (default `/leader`); created if missing.
    /// Segments of `A-Z a-z 0-9 . _ - :`, e.g. `/services/leader`.
    #[must_use]
    pub fn root(mut self, root: &str) -> Self {
        self.root = root.to_owned();
        self
    }

    /// The session timeout to ask the server for (default 15 s). The server clamps it to its
    /// `minSessionTimeout`/`maxSessionTimeout` (2 and 20 `tickTime`s unless set); every election on
    /// this store must use the negotiated value as its `lease_duration`.
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// ACLs for the nodes this store creates (default: `world:anyone` with all permissions).
    #[must_use]
    pub fn acls(mut self, acls: Vec<Acl>) -> Self {
        self.acls = acls;
        self
    }

    /// Credentials sent when each session starts (`addauth`), e.g. `("digest", b"user:secret")`.
    #[must_use]
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth.push((scheme.to_owned(), auth.to_vec()));
        self
    }

    /// Validates the settings, connects (one session for this store handle) and creates the root
    /// path if it is missing.
    ///
    /// # Errors
    /// [`InvalidArgument`](leader_core::ErrorKind::InvalidArgument) for bad settings;
    /// [`Unavailable`](leader_core::ErrorKind::Unavailable) when no server answers.
    pub async fn connect(self) -> Result<ZooKeeperStore> {
        validate_hosts(&self.hosts)?;
        validate_root(&self.root)?;
        if self.session_timeout < Duration::from_millis(1) || self.session_timeout > Duration::from_secs(3600) {
            return Err(Error::invalid_argument(format!(
                "session_timeout {} is out of range; it must be between 1ms and 1h (the server clamps it further)",
                humantime::format_duration(self.session_timeout)
            )));
        }
        ZooKeeperStore::open(self).await
    }
}

/// Parses `zk://host:port[,host:port]/root[?session_timeout=4s]` into a builder.
pub(crate) fn parse_url(url: &str) -> Result<ZooKeeperStoreBuilder> {
    let rest =
        SCHEMES.iter().find_map(|s| url.strip_prefix(s).and_then(|r| r.strip_prefix("://"))).ok_or_else(|| {
            Error::invalid_argument(format!(
                "URL {url:?} is not a ZooKeeper URL; expected zk://host:port[,host:port]/root (schemes {SCHEMES:?})"
            ))
        })?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (hosts, root) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if hosts.is_empty() {
        return Err(Error::invalid_argument(format!("URL {url:?} names no server; expected zk://host:port/root")));
    }
    let mut builder = ZooKeeperStoreBuilder::new(&normalise_hosts(hosts, url)?);
    let root = root.trim_end_matches('/');
    if !root.is_empty() {
        builder = builder.root(root);
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "session_timeout" => {
                let timeout = humantime::parse_duration(value).map_err(|e| {
                    Error::invalid_argument(format!(
                        "URL {url:?}: session_timeout {value:?} is not a duration such as \"4s\" or \"1500ms\": {e}"
                    ))
                })?;
                builder = builder.session_timeout(timeout);
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "URL {url:?}: unknown parameter {other:?}; the only parameter is session_timeout"
                )))
            }
        }
    }
    Ok(builder)
}

/// `a:1,b` -> `a:1,b:2181`, checking every port.
fn normalise_hosts(hosts: &str, url: &str) -> Result<String> {
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let bad = |why: &str| {
            // Neither the URL nor the server may show a password (`user:secret@host`).
            let shown = match host.rfind('@') {
                Some(at) => format!("***{}", &host[at..]),
                None => host.to_owned(),
            };
            Error::invalid_argument(format!("URL {:?}: server {shown:?} {why}", leader_core::redact::secrets(url)))
        };
        if host.is_empty() {
            return Err(bad("is empty"));
        }
        // `[::1]:2181` or `host:2181` or `host`.
        let (name, port) = if let Some(v6) = host.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed '['"))?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match host.rsplit_once(':') {
                Some((n, p)) => (n.to_owned(), Some(p)),
                None => (host.to_owned(), None),
            }
        };
        if name.is_empty() || name.contains(['/', '@', ' ']) {
            return Err(bad("is not a host name"));
        }
        let port = match port {
            Some(p) => {
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("has a port that is not 1-65535"))?
            }
            None => DEFAULT_PORT,
        };
        out.push(format!("{name}:{port}"));
    }
    Ok(out.join(","))
}

fn validate_hosts(hosts: &str) -> Result<()> {
    normalise_hosts(hosts, hosts).map(drop)
}

/// A root is `/` followed by one or more segments of `A-Z a-z 0-9 . _ - :`; not `/zookeeper`
/// (reserved by the server), no `.` or `..` segments.
pub(crate) fn validate_root(root: &str) -> Result<()> {
    let rule = "a root path is '/' and segments of letters, digits, '.', '_', '-', ':' (not '.', '..' or /zookeeper)";
    let Some(rest) = root.strip_prefix('/') else {
        return Err(Error::invalid_argument(format!("root path {root:?} does not start with '/'; {rule}")));
    };
    if root.len() > 512 {
        return Err(Error::invalid_argument(format!("root path is {} bytes; the limit is 512", root.len())));
    }
    for (i, segment) in rest.split('/').enumerate() {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !(i == 0 && segment == "zookeeper")
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if !ok {
            return Err(Error::invalid_argument(format!("root path {root:?} has a bad segment {segment:?}; {rule}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    #[test]
    fn no_password_in_url_errors_or_debug() {
        let Err(err) = parse_url("zk://u:hunter2@127.0.0.1:1/root") else { panic!("accepted a user in the host") };
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
        let b = parse_url("zk://127.0.0.1:1/root").unwrap().auth("digest", b"u:hunter2");
        let shown = format!("{b:?}");
        assert!(!shown.contains("hunter2") && shown.contains("digest:***"), "{shown}");
    }

    #[test]
    fn parses_urls() {
        let b = parse_url("zk://127.0.0.1:52181/leader-test").unwrap();
        assert_eq!(b.hosts, "127.0.0.1:52181");
        assert_eq!(b.root, "/leader-test");
        assert_eq!(b.session_timeout, DEFAULT_SESSION_TIMEOUT);

        let b = parse_url("zookeeper://a:1,b,[::1]:3/x/y?session_timeout=4s").unwrap();
        assert_eq!(b.hosts, "a:1,b:2181,[::1]:3");
        assert_eq!(b.root, "/x/y");
        assert_eq!(b.session_timeout, Duration::from_secs(4));

        let b = parse_url("zk://h").unwrap();
        assert_eq!(b.root, DEFAULT_ROOT);
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "http://h:1/x",
            "zk:///x",
            "zk://h:0/x",
            "zk://h:99999/x",
            "zk://h:1,/x",
            "zk://h:1/x?session_timeout=soon",
            "zk://h:1/x?ttl=4s",
        ] {
            let err = parse_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url}");
            assert!(err.to_string().contains(url), "{err}");
        }
    }

    #[test]
    fn validates_roots() {
        for ok in ["/leader", "/a/b-c/d.e:f_g"] {
            validate_root(ok).unwrap();
        }
        for bad in ["", "leader", "/", "/a//b", "/a/", "/zookeeper", "/zookeeper/x", "/a/..", "/a b", "/ä"] {
            let err = validate_root(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
