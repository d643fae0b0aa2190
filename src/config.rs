//! [`Config`]: one election's whole configuration (store URL, election, participant, options,
//! metadata) from a TOML or JSON file or from `LEADER_*` environment variables.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Election, ElectionOptions, Error, Metadata, Result};

/// Everything needed to build an [`Election`]. Durations are written `"15s"`, `"500ms"`; unknown
/// keys and bad durations are errors that name the key.
///
/// ```toml
/// store = "postgres://app@db/app"
/// election = "nightly-report"
/// participant_id = "web-1"          # optional: default host-pid-random
///
/// [options]                         # optional: from_lease(15s) when absent
/// lease_duration = "15s"
/// retry_interval = "2s"
///
/// [metadata]
/// hostname = "web-1"
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> leader::Result<()> {
/// let config = leader::Config::from_toml_str(r#"
///     store = "memory://docs-config"
///     election = "jobs"
///     [options]
///     lease_duration = "3s"
/// "#)?;
/// let election = config.build().await?;
/// assert_eq!(election.options().renew_interval, std::time::Duration::from_secs(1));
/// # Ok(()) }
/// ```
///
/// `Debug` shows the store URL without its password or keys ([`redact::secrets`](crate::redact::secrets)).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store URL, as [`connect`](crate::connect) takes it.
    pub store: String,
    /// The election's name.
    pub election: String,
    /// This participant's id; default `<host>-<pid>-<random>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Timing options; default [`ElectionOptions::balanced`].
    #[serde(default)]
    pub options: ElectionOptions,
    /// Metadata published with the lease (merged over `options.metadata`).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("store", &crate::redact::secrets(&self.store))
            .field("election", &self.election)
            .field("participant_id", &self.participant_id)
            .field("options", &self.options)
            .field("metadata", &self.metadata)
            .finish()
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

fn invalid_at(path: &serde_path_to_error::Path, e: &dyn std::fmt::Display) -> Error {
    Error::invalid_argument(format!("invalid config at `{path}`: {}", one_line(e)))
}

/// Environment variables [`Config::from_env`] reads (besides `LEADER_TEST_*`, which belong to the
/// test suites, and `LEADER_ID`/`LEADER_ELECTION`, which `leader run` sets for its command).
pub const ENV_KEYS: &[&str] = &[
    "LEADER_STORE",
    "LEADER_ELECTION",
    "LEADER_PARTICIPANT_ID",
    "LEADER_LEASE_DURATION",
    "LEADER_RENEW_DEADLINE",
    "LEADER_RENEW_INTERVAL",
    "LEADER_RETRY_INTERVAL",
    "LEADER_OPERATION_TIMEOUT",
    "LEADER_EVENT_BUFFER",
    "LEADER_METADATA",
];

impl Config {
    /// Parses TOML.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| Error::invalid_argument(format!("invalid TOML config: {}", one_line(&e))))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| invalid_at(e.path(), e.inner()))?;
        config.checked()
    }

    /// Parses JSON.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| invalid_at(e.path(), e.inner()))?;
        config.checked()
    }

    /// Reads a `.toml` or `.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_argument(format!("cannot read config file {}: {e}", path.display())))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text),
            Some("json") => Self::from_json_str(&text),
            _ => Err(Error::invalid_argument(format!("config file {} must end in .toml or .json", path.display()))),
        }
    }

    /// Reads `LEADER_STORE`, `LEADER_ELECTION` (both required), `LEADER_PARTICIPANT_ID`,
    /// `LEADER_LEASE_DURATION` (the other timings derive from it unless set too),
    /// `LEADER_RENEW_DEADLINE`, `LEADER_RENEW_INTERVAL`, `LEADER_RETRY_INTERVAL`,
    /// `LEADER_OPERATION_TIMEOUT`, `LEADER_EVENT_BUFFER` and `LEADER_METADATA` (`k=v,k2=v2`).
    ///
    /// Any other `LEADER_*` variable (except `LEADER_TEST_*` and `LEADER_ID`) is ignored with a
    /// `tracing` warning that names it, so that an unrelated variable with the same prefix does
    /// not stop a service from starting; a misspelt required variable still fails, and the error
    /// then lists the unknown ones.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// [`from_env`](Config::from_env) over the given variables.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut get = std::collections::BTreeMap::new();
        let mut unknown = Vec::new();
        for (k, v) in vars {
            if !k.starts_with("LEADER_") || k.starts_with("LEADER_TEST_") || k == "LEADER_ID" {
                continue;
            }
            if !ENV_KEYS.contains(&k.as_str()) {
                tracing::warn!(
                    variable = %k,
                    "leader: ignoring unknown environment variable {k}; known: {}",
                    ENV_KEYS.join(", ")
                );
                unknown.push(k);
                continue;
            }
            get.insert(k, v);
        }
        unknown.sort();
        let required = |k: &str| {
            get.get(k).cloned().ok_or_else(|| {
                let hint = if unknown.is_empty() {
                    String::new()
                } else {
                    format!(" (unknown LEADER_* variables are set: {})", unknown.join(", "))
                };
                Error::invalid_argument(format!("environment variable {k} is not set{hint}"))
            })
        };
        let duration = |k: &str| -> Result<Option<Duration>> {
            get.get(k)
                .map(|v| {
                    humantime::parse_duration(v).map_err(|e| {
                        Error::invalid_argument(format!("{k}={v:?} is not a duration ({e}); write e.g. 15s or 500ms"))
                    })
                })
                .transpose()
        };
        let mut options =
            ElectionOptions::from_lease(duration("LEADER_LEASE_DURATION")?.unwrap_or(crate::DEFAULT_LEASE));
        if let Some(d) = duration("LEADER_RENEW_DEADLINE")? {
            options.renew_deadline = d;
        }
        if let Some(d) = duration("LEADER_RENEW_INTERVAL")? {
            options.renew_interval = d;
        }
        if let Some(d) = duration("LEADER_RETRY_INTERVAL")? {
            options.retry_interval = d;
        }
        if let Some(d) = duration("LEADER_OPERATION_TIMEOUT")? {
            options.operation_timeout = d;
        }
        if let Some(v) = get.get("LEADER_EVENT_BUFFER") {
            options.event_buffer =
                v.parse().map_err(|_| Error::invalid_argument(format!("LEADER_EVENT_BUFFER={v:?} is not a number")))?;
        }
        let mut metadata = Metadata::new();
        if let Some(v) = get.get("LEADER_METADATA") {
            for pair in v.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    Error::invalid_argument(format!("LEADER_METADATA entry {pair:?} is not key=value"))
                })?;
                metadata.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        Config {
            store: required("LEADER_STORE")?,
            election: required("LEADER_ELECTION")?,
            participant_id: get.get("LEADER_PARTICIPANT_ID").cloned(),
            options,
            metadata,
        }
        .checked()
    }

    /// The options with `metadata` merged in.
    pub fn election_options(&self) -> ElectionOptions {
        let mut options = self.options.clone();
        options.metadata.extend(self.metadata.clone());
        options
    }

    /// Checks names and options without touching the store.
    fn checked(self) -> Result<Self> {
        crate::validate_election_name(&self.election)?;
        if let Some(id) = &self.participant_id {
            crate::validate_participant_id(id)?;
        }
        self.election_options().validate()?;
        Ok(self)
    }

    /// Connects to the store and builds the election (not started).
    pub async fn build(&self) -> Result<Election> {
        let store = crate::connect(&self.store).await?;
        let mut builder = Election::builder(store, &self.election).options(self.election_options());
        if let Some(id) = &self.participant_id {
            builder = builder.participant_id(id.clone());
        }
        builder.build()
    }
}
