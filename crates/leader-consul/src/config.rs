//! [`ConsulConfig`]: which agent, which token and datacenter, where the keys live.

use std::time::Duration;

use leader_core::redact::secrets as redact;
use leader_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The default key prefix: election `jobs` lives at `leader/jobs`.
pub const DEFAULT_PREFIX: &str = "leader/";
/// The default lock-delay of election sessions: none (Consul's own default is 15 s, which would
/// keep a released or expired election leaderless for 15 s).
pub const DEFAULT_LOCK_DELAY: Duration = Duration::ZERO;
/// The default `wait` of followers' blocking queries.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The default timeout of one non-blocking HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach Consul and where the election keys live.
///
/// URL: `consul://HOST[:PORT][?token=...&dc=...&prefix=leader/&tls=false&lock_delay=0s&wait=60s&timeout=10s]`
/// (port 8500 by default; `tls=true` speaks HTTPS, verified against the Mozilla roots).
///
/// ```
/// use leader_consul::ConsulConfig;
/// let c = ConsulConfig::from_url("consul://127.0.0.1:8500?dc=dc1&prefix=apps/leader/")?;
/// assert_eq!(c.address(), "http://127.0.0.1:8500");
/// assert_eq!(c.key("jobs"), "apps/leader/jobs");
/// # Ok::<(), leader_core::Error>(())
/// ```
///
/// In configuration files (serde) the keys are `address` (`http(s)://host:port` or `host:port`,
/// default `127.0.0.1:8500`), `token`, `datacenter`, `prefix`, `lock_delay`, `wait` and `timeout`
/// (durations written `"10s"`, `"500ms"`), all optional and checked by the same rules as the URL's
/// parameters; unknown keys are errors. Serialising writes the token (the file needs it; `Debug`
/// never shows it).
///
/// ```
/// use leader_consul::ConsulConfig;
/// let c: ConsulConfig =
///     serde_json::from_str(r#"{ "address": "http://127.0.0.1:8500", "prefix": "apps/leader/", "wait": "30s" }"#).unwrap();
/// assert_eq!(c.key("jobs"), "apps/leader/jobs");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ConsulConfig {
    pub(crate) address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) datacenter: Option<String>,
    pub(crate) prefix: String,
    #[serde(with = "humantime_serde")]
    pub(crate) lock_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) wait: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

/// Unknown keys and bad durations are errors naming the key; values go through the setters, so a
/// refused one is the setter's error (which names the setting and the rule).
impl<'de> Deserialize<'de> for ConsulConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            address: Option<String>,
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            datacenter: Option<String>,
            #[serde(default)]
            prefix: Option<String>,
            #[serde(with = "humantime_serde", default)]
            lock_delay: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            wait: Option<Duration>,
            #[serde(with = "humantime_serde", default)]
            timeout: Option<Duration>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let build = || -> Result<Self> {
            let mut config = Self::from_parts(raw.address, raw.token, None)?;
            if let Some(dc) = raw.datacenter {
                config = config.datacenter(dc)?;
            }
            if let Some(prefix) = &raw.prefix {
                config = config.prefix(prefix)?;
            }
            if let Some(delay) = raw.lock_delay {
                config = config.lock_delay(delay)?;
            }
            if let Some(wait) = raw.wait {
                config = config.wait(wait)?;
            }
            if let Some(timeout) = raw.timeout {
                if timeout.is_zero() {
                    return Err(Error::invalid_argument("timeout is 0s; it must be above zero, such as 10s"));
                }
                config.timeout = timeout;
            }
            Ok(config)
        };
        build().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .field("prefix", &self.prefix)
            .field("lock_delay", &self.lock_delay)
            .field("wait", &self.wait)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ConsulConfig {
    /// An agent at `http://host:port` with the defaults.
    pub fn new(host: &str, port: u16) -> Result<Self> {
        Self::from_url(&format!("consul://{host}:{port}"))
    }

    /// Parses a `consul://` URL (see the type's docs).
    pub fn from_url(s: &str) -> Result<Self> {
        let url = url::Url::parse(s)
            .map_err(|e| Error::invalid_argument(format!("invalid Consul URL {:?}: {e}", redact(s))))?;
        if url.scheme() != "consul" {
            return Err(Error::invalid_argument(format!(
                "URL scheme {:?} is not Consul's; write consul://HOST:PORT",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid_argument(format!("Consul URL {:?} has no host", redact(s))))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid_argument(
                "Consul URL carries a user or password; pass the ACL token as ?token=",
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(Error::invalid_argument(format!(
                "Consul URL path {:?} is not used; set the key prefix with ?prefix=",
                url.path()
            )));
        }
        let port = url.port().unwrap_or(8500);
        let mut tls = false;
        let mut config = ConsulConfig {
            address: String::new(),
            token: None,
            datacenter: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            lock_delay: DEFAULT_LOCK_DELAY,
            wait: DEFAULT_WAIT,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        };
        for (key, value) in url.query_pairs() {
            let value = value.into_owned();
            match key.as_ref() {
                "token" => config = config.token(value)?,
                "dc" | "datacenter" => config = config.datacenter(value)?,
                "prefix" => config = config.prefix(&value)?,
                "tls" => tls = parse_bool(&key, &value)?,
                "lock_delay" => config = config.lock_delay(parse_duration(&key, &value, true)?)?,
                "wait" => config = config.wait(parse_duration(&key, &value, false)?)?,
                "timeout" => config.timeout = parse_duration(&key, &value, false)?,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "unknown Consul URL parameter {other:?}; known are token, dc, prefix, tls, lock_delay, wait, timeout"
                    )))
                }
            }
        }
        config.address = format!("{}://{host}:{port}", if tls { "https" } else { "http" });
        Ok(config)
    }

    /// From Consul's own environment variables, as its CLI reads them: `CONSUL_HTTP_ADDR`
    /// (`host:port` or `http(s)://host:port`, default `127.0.0.1:8500`), `CONSUL_HTTP_TOKEN`,
    /// `CONSUL_HTTP_SSL=true`. For applications that already configure Consul this way; the test
    /// suites never read these (they use `LEADER_TEST_CONSUL_URL`).
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self::from_parts(var("CONSUL_HTTP_ADDR"), var("CONSUL_HTTP_TOKEN"), var("CONSUL_HTTP_SSL"))
    }

    fn from_parts(addr: Option<String>, token: Option<String>, ssl: Option<String>) -> Result<Self> {
        let addr = addr.unwrap_or_else(|| "127.0.0.1:8500".to_owned());
        let (tls, rest) = if let Some(rest) = addr.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = addr.strip_prefix("http://") {
            (false, rest)
        } else if addr.contains("://") {
            return Err(Error::invalid_argument(format!(
                "CONSUL_HTTP_ADDR {addr:?} must be host:port or http(s)://host:port"
            )));
        } else {
            (ssl.as_deref().map(|v| parse_bool("CONSUL_HTTP_SSL", v)).transpose()?.unwrap_or(false), addr.as_str())
        };
        let mut config = Self::from_url(&format!("consul://{}", rest.trim_end_matches('/')))?;
        if tls {
            config.address = config.address.replacen("http://", "https://", 1);
        }
        match token {
            Some(token) => config.token(token),
            None => Ok(config),
        }
    }

    /// Sets the ACL token (sent as `X-Consul-Token`).
    pub fn token(mut self, token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::invalid_argument("Consul token must be non-empty printable ASCII without spaces"));
        }
        self.token = Some(token);
        Ok(self)
    }

    /// Sets the datacenter (`?dc=` on every request).
    pub fn datacenter(mut self, dc: impl Into<String>) -> Result<Self> {
        let dc = dc.into();
        if dc.is_empty()
            || dc.len() > 64
            || !dc.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid_argument(format!(
                "Consul datacenter {dc:?} must be 1-64 characters of letters, digits, '-', '_', '.'"
            )));
        }
        self.datacenter = Some(dc);
        Ok(self)
    }

    /// Sets the key prefix: 0-256 characters of letters, digits, `. _ - : /`, not starting with `/`,
    /// without empty (`//`) or dot (`.`/`..`) path segments. Election `e` lives at `prefix + e`.
    pub fn prefix(mut self, prefix: &str) -> Result<Self> {
        let bad_char =
            prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')));
        let segments_ok = prefix.split('/').enumerate().all(|(i, seg)| {
            let last = i == prefix.split('/').count() - 1;
            (!seg.is_empty() || last) && seg != "." && seg != ".."
        });
        if prefix.len() > 256 || bad_char.is_some() || prefix.starts_with('/') || !segments_ok {
            return Err(Error::invalid_argument(format!(
                "Consul key prefix {prefix:?} is not allowed; use up to 256 characters of letters, digits, \
                 '.', '_', '-', ':', '/', not starting with '/', without '//', '.' or '..' segments"
            )));
        }
        self.prefix = prefix.to_owned();
        Ok(self)
    }

    /// Sets the sessions' lock-delay (0-60 s; default 0). After a lock is lost by invalidation
    /// (not by release), Consul refuses to lock the key again for this long.
    pub fn lock_delay(mut self, delay: Duration) -> Result<Self> {
        if delay > Duration::from_secs(60) {
            return Err(Error::invalid_argument(format!("lock_delay {delay:?} is over Consul's 60 s maximum")));
        }
        self.lock_delay = delay;
        Ok(self)
    }

    /// Sets how long one blocking query waits (1 s - 10 min; Consul caps it at 10 min).
    pub fn wait(mut self, wait: Duration) -> Result<Self> {
        if wait < Duration::from_secs(1) || wait > Duration::from_secs(600) {
            return Err(Error::invalid_argument(format!("wait {wait:?} must be between 1s and 10m")));
        }
        self.wait = wait;
        Ok(self)
    }

    /// `http(s)://host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The key of `election`.
    pub fn key(&self, election: &str) -> String {
        format!("{}{election}", self.prefix)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(Error::invalid_argument(format!("{key}={other:?} is not a boolean; use true or false"))),
    }
}

fn parse_duration(key: &str, value: &str, zero_ok: bool) -> Result<Duration> {
    match humantime::parse_duration(value) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(d),
        _ => Err(Error::invalid_argument(format!("{key}={value:?} is not a duration such as 10s"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    fn err(s: &str) -> String {
        let e = ConsulConfig::from_url(s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{s}");
        e.to_string()
    }

    #[test]
    fn url_defaults() -> Result<()> {
        let c = ConsulConfig::from_url("consul://127.0.0.1")?;
        assert_eq!(c.address(), "http://127.0.0.1:8500");
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.lock_delay, Duration::ZERO);
        assert_eq!(c.token, None);
        assert_eq!(c.datacenter, None);
        assert_eq!(c.key("jobs"), "leader/jobs");
        Ok(())
    }

    #[test]
    fn url_parameters() -> Result<()> {
        let c = ConsulConfig::from_url(
            "consul://consul.internal:8501?token=s3cr3t-uuid&dc=eu-west_1&prefix=svc/leader/&tls=true&lock_delay=1s&wait=30s&timeout=5s",
        )?;
        assert_eq!(c.address(), "https://consul.internal:8501");
        assert_eq!(c.token.as_deref(), Some("s3cr3t-uuid"));
        assert_eq!(c.datacenter.as_deref(), Some("eu-west_1"));
        assert_eq!(c.key("a"), "svc/leader/a");
        assert_eq!(
            (c.lock_delay, c.wait, c.timeout),
            (Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(5))
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        Ok(())
    }

    #[test]
    fn bad_urls_name_the_rule() {
        assert!(err("http://127.0.0.1:8500").contains("not Consul's"));
        assert!(err("consul://h?prefix=/abs").contains("not starting with '/'"));
        assert!(err("consul://h?prefix=a//b").contains("'//'"));
        assert!(err("consul://h?prefix=a/../b").contains("'..'"));
        assert!(err("consul://h?prefix=a%3Fb").contains("not allowed"));
        assert!(err("consul://h?prefix=a%20b").contains("not allowed"));
        assert!(err("consul://h?dc=a/b").contains("datacenter"));
        assert!(err("consul://h?token=a%20b").contains("token"));
        assert!(err("consul://h?lock_delay=2m").contains("60 s"));
        assert!(err("consul://h?wait=20m").contains("10m"));
        assert!(err("consul://h?wait=soon").contains("wait"));
        assert!(err("consul://h?tls=maybe").contains("boolean"));
        assert!(err("consul://h?frob=1").contains("unknown Consul URL parameter"));
        assert!(err("consul://user:pw@h").contains("token"));
        assert!(err("consul://h/kv/leader").contains("?prefix="));
        let e = err("consul://h?token=topsecret&frob=1");
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn prefixes() -> Result<()> {
        let base = ConsulConfig::from_url("consul://h")?;
        for ok in ["", "leader/", "a/b/c/", "team-1:elections/", "x.y_z"] {
            assert!(base.clone().prefix(ok).is_ok(), "{ok:?}");
        }
        Ok(())
    }

    fn from_json(text: &str) -> std::result::Result<ConsulConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
    }

    #[test]
    fn serde_round_trip_with_durations_as_text() -> Result<()> {
        let c = ConsulConfig::from_url(
            "consul://consul.internal:8501?token=s3cr3t&dc=dc1&prefix=svc/&tls=true&lock_delay=1s&wait=30s&timeout=500ms",
        )?;
        let text = serde_json::to_string(&c).map_err(|e| Error::invalid_argument(e.to_string()))?;
        for written in [
            r#""lock_delay":"1s""#,
            r#""wait":"30s""#,
            r#""timeout":"500ms""#,
            r#""address":"https://consul.internal:8501""#,
        ] {
            assert!(text.contains(written), "{written} in {text}");
        }
        assert_eq!(from_json(&text).map_err(Error::invalid_argument)?, c);
        // Everything is optional: the defaults are the agent on localhost.
        assert_eq!(
            from_json("{}").map_err(Error::invalid_argument)?,
            ConsulConfig::from_url("consul://127.0.0.1:8500")?
        );
        let c = from_json(r#"{"address": "c.example:8600"}"#).map_err(Error::invalid_argument)?;
        assert_eq!(c.address(), "http://c.example:8600");
        Ok(())
    }

    #[test]
    fn serde_errors_name_the_key() {
        let e = from_json(r#"{"adress": "h:8500"}"#).unwrap_err();
        assert!(e.contains("adress"), "{e}");
        let e = from_json(r#"{"lock_delay": "soon"}"#).unwrap_err();
        assert!(e.contains("lock_delay"), "{e}");
        let e = from_json(r#"{"wait": "20m"}"#).unwrap_err();
        assert!(e.contains("wait") && e.contains("10m"), "{e}");
        let e = from_json(r#"{"prefix": "/abs"}"#).unwrap_err();
        assert!(e.contains("prefix"), "{e}");
        let e = from_json(r#"{"token": "top secret"}"#).unwrap_err();
        assert!(e.contains("token") && !e.contains("top secret"), "{e}");
    }

    #[test]
    fn env_forms() -> Result<()> {
        let c = ConsulConfig::from_parts(None, None, None)?;
        assert_eq!(c.address(), "http://127.0.0.1:8500");
        let c = ConsulConfig::from_parts(Some("https://c.example:8501".into()), Some("tok".into()), None)?;
        assert_eq!(c.address(), "https://c.example:8501");
        assert_eq!(c.token.as_deref(), Some("tok"));
        let c = ConsulConfig::from_parts(Some("c.example:8501".into()), None, Some("true".into()))?;
        assert_eq!(c.address(), "https://c.example:8501");
        assert!(ConsulConfig::from_parts(Some("unix:///var/run/consul.sock".into()), None, None).is_err());
        Ok(())
    }
}
