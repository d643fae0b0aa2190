//! [`RedisConfig`]: the builder's settings as plain data, for configuration files.

use std::time::Duration;

use leader_core::Result;
use serde::{Deserialize, Serialize};

use crate::builder::{
    redact, RedisStoreBuilder, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_LEASE, DEFAULT_UNRESPONSIVE_TIMEOUT,
};
use crate::keys::DEFAULT_KEY_PREFIX;
use crate::store::RedisStore;

/// Everything [`RedisStoreBuilder`] takes, as plain data that (de)serialises, with durations
/// written as `"15s"`, `"500ms"`; unknown keys are errors. Only `url` is required. A store made
/// from a fred client or pool has no such form (the client is not data); this is the URL form.
///
/// Query parameters of `url` (`key_prefix`, `max_lease`, ...) are applied after the fields, so
/// they win. Settings are checked when the store is built ([`RedisConfig::connect`]), as the
/// builder checks them. `Debug` hides the URL's password; serialising writes it (the file needs it).
///
/// ```
/// use std::time::Duration;
/// let c: leader_redis::RedisConfig = serde_json::from_str(
///     r#"{ "url": "redis://127.0.0.1:6379/0", "key_prefix": "myapp", "max_lease": "30s" }"#,
/// ).unwrap();
/// assert_eq!(c.max_lease, Duration::from_secs(30));
/// assert_eq!(c.connection_timeout, Duration::from_secs(5));
/// let builder = c.builder(); // then `.build().await`
/// # drop(builder);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server: `redis://`, `rediss://`, `redis-cluster://`, `redis-sentinel://`, ... as
    /// [`RedisStore::builder`] takes it.
    pub url: String,
    /// See [`RedisStoreBuilder::key_prefix`]; default `leader`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// See [`RedisStoreBuilder::max_lease`]; default 60 s.
    #[serde(with = "humantime_serde", default = "default_max_lease")]
    pub max_lease: Duration,
    /// See [`RedisStoreBuilder::quarantine`]; default (absent): the lease of the election asking.
    #[serde(with = "humantime_serde", default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Duration>,
    /// See [`RedisStoreBuilder::wait_for_replicas`]; default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_replicas: Option<WaitForReplicasConfig>,
    /// See [`RedisStoreBuilder::unresponsive_timeout`]; default 2 s.
    #[serde(with = "humantime_serde", default = "default_unresponsive_timeout")]
    pub unresponsive_timeout: Duration,
    /// See [`RedisStoreBuilder::connection_timeout`]; default 5 s.
    #[serde(with = "humantime_serde", default = "default_connection_timeout")]
    pub connection_timeout: Duration,
    /// See [`RedisStoreBuilder::push_notifications`]; default true.
    #[serde(default = "default_push")]
    pub push_notifications: bool,
}

/// `WAIT replicas timeout` after each acquire and renew; see [`RedisStoreBuilder::wait_for_replicas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForReplicasConfig {
    /// How many replicas must acknowledge the write (at least 1).
    pub replicas: u32,
    /// How long to wait for them (above 0).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}
fn default_max_lease() -> Duration {
    DEFAULT_MAX_LEASE
}
fn default_unresponsive_timeout() -> Duration {
    DEFAULT_UNRESPONSIVE_TIMEOUT
}
fn default_connection_timeout() -> Duration {
    DEFAULT_CONNECTION_TIMEOUT
}
fn default_push() -> bool {
    true
}

impl RedisConfig {
    /// The defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: default_key_prefix(),
            max_lease: DEFAULT_MAX_LEASE,
            quarantine: None,
            wait_for_replicas: None,
            unresponsive_timeout: DEFAULT_UNRESPONSIVE_TIMEOUT,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            push_notifications: true,
        }
    }

    /// A builder with these settings (for settings only code can give).
    pub fn builder(&self) -> RedisStoreBuilder {
        RedisStoreBuilder::from(self.clone())
    }

    /// Connects: the store these settings describe.
    pub async fn connect(&self) -> Result<RedisStore> {
        self.builder().build().await
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("max_lease", &self.max_lease)
            .field("quarantine", &self.quarantine)
            .field("wait_for_replicas", &self.wait_for_replicas)
            .field("unresponsive_timeout", &self.unresponsive_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("push_notifications", &self.push_notifications)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> std::result::Result<RedisConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip_with_durations_as_text() {
        let mut config = RedisConfig::new("redis://user:s3cret@127.0.0.1:6379/2");
        config.key_prefix = "myapp".into();
        config.max_lease = Duration::from_secs(30);
        config.quarantine = Some(Duration::ZERO);
        config.wait_for_replicas = Some(WaitForReplicasConfig { replicas: 1, timeout: Duration::from_millis(500) });
        config.unresponsive_timeout = Duration::from_millis(800);
        config.connection_timeout = Duration::from_secs(1);
        config.push_notifications = false;
        let text = serde_json::to_string(&config).unwrap();
        for written in [
            r#""max_lease":"30s""#,
            r#""quarantine":"0s""#,
            r#""timeout":"500ms""#,
            r#""unresponsive_timeout":"800ms""#,
        ] {
            assert!(text.contains(written), "{written} in {text}");
        }
        assert_eq!(from_json(&text).unwrap(), config);
        // Only the URL is required; the rest are the builder's defaults.
        assert_eq!(from_json(r#"{"url": "redis://h"}"#).unwrap(), RedisConfig::new("redis://h"));
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
    }

    #[test]
    fn unknown_keys_and_bad_durations_name_the_key() {
        let err = from_json(r#"{"url": "redis://h", "max_leases": "30s"}"#).unwrap_err();
        assert!(err.contains("max_leases"), "{err}");
        let err = from_json(r#"{"url": "redis://h", "max_lease": "soon"}"#).unwrap_err();
        assert!(err.contains("max_lease"), "{err}");
        let err = from_json(r#"{"url": "redis://h", "wait_for_replicas": {"replicas": 1, "timeout": "1 fortnight"}}"#)
            .unwrap_err();
        assert!(err.contains("wait_for_replicas.timeout"), "{err}");
        let err = from_json(r#"{"key_prefix": "x"}"#).unwrap_err();
        assert!(err.contains("url"), "{err}");
    }
}
