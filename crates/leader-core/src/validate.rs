//! The input rules every provider shares: election names, participant and instance ids, metadata.
//!
//! The rules are chosen so that every store can hold the value as it is (a ZooKeeper node name, an
//! Azure blob name, a Redis key, a SQL value, a Consul key) without escaping.

use crate::{Error, Metadata, Result};

/// Longest election name, in bytes.
pub const MAX_ELECTION_NAME: usize = 128;
/// Longest participant id, in bytes.
pub const MAX_PARTICIPANT_ID: usize = 256;
/// Longest instance id, in bytes (the core makes UUIDs of 36).
pub const MAX_INSTANCE_ID: usize = 256;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY: usize = 128;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE: usize = 1024;
/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 32;

/// An election name is 1-128 characters of `A-Z a-z 0-9 . _ - :`, starting with a letter or digit.
///
/// ```
/// use leader_core::validate_election_name;
/// assert!(validate_election_name("billing.nightly-job").is_ok());
/// let err = validate_election_name("a/b").unwrap_err();
/// assert!(err.to_string().contains("\"a/b\""));
/// ```
pub fn validate_election_name(name: &str) -> Result<()> {
    check_token("election name", name, MAX_ELECTION_NAME, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
    })?;
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid_argument(format!("election name {name:?} must start with a letter or digit")));
    }
    Ok(())
}

/// A prefix for [`LeaseStore::list`](crate::LeaseStore::list): empty, or the start of a valid
/// election name (same characters, at most 128).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_token("election prefix", prefix, MAX_ELECTION_NAME, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
    })
}

/// A participant id is 1-256 bytes of printable characters (no control characters, no leading or
/// trailing whitespace).
pub fn validate_participant_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_argument("participant id is empty; it needs 1-256 bytes"));
    }
    if id.len() > MAX_PARTICIPANT_ID {
        return Err(Error::invalid_argument(format!(
            "participant id {:?}... is {} bytes; the limit is {MAX_PARTICIPANT_ID}",
            truncate(id),
            id.len()
        )));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(Error::invalid_argument(format!(
            "participant id {id:?} has control characters or leading/trailing whitespace"
        )));
    }
    Ok(())
}

/// An instance id (what [`AcquireRequest::instance_id`](crate::AcquireRequest) carries; the core
/// makes a UUID per `Election`) is 1-256 bytes without control characters, so a store may keep it
/// on one line of a record.
///
/// ```
/// use leader_core::validate_instance_id;
/// assert!(validate_instance_id("0b8e1c9e-6a8e-4b7c-9d55-0d0e4f1b2a3c").is_ok());
/// assert!(validate_instance_id("a\nb").is_err());
/// ```
pub fn validate_instance_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_INSTANCE_ID || id.chars().any(char::is_control) {
        return Err(Error::invalid_argument(format!(
            "instance id {:?} must be 1-{MAX_INSTANCE_ID} bytes without control characters",
            truncate(id)
        )));
    }
    Ok(())
}

/// Metadata: at most 32 entries; keys 1-128 bytes of `A-Z a-z 0-9 . _ -`; values at most 1024 bytes
/// without control characters other than tab.
pub fn validate_metadata(metadata: &Metadata) -> Result<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid_argument(format!(
            "metadata has {} entries; the limit is {MAX_METADATA_ENTRIES}",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        check_token("metadata key", key, MAX_METADATA_KEY, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
        })?;
        if value.len() > MAX_METADATA_VALUE {
            return Err(Error::invalid_argument(format!(
                "metadata value of {key:?} is {} bytes; the limit is {MAX_METADATA_VALUE}",
                value.len()
            )));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::invalid_argument(format!("metadata value of {key:?} has control characters")));
        }
    }
    Ok(())
}

fn check_token(what: &str, value: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_argument(format!("{what} is empty; it needs 1-{max} characters")));
    }
    if value.len() > max {
        return Err(Error::invalid_argument(format!(
            "{what} {:?}... is {} bytes; the limit is {max}",
            truncate(value),
            value.len()
        )));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(Error::invalid_argument(format!(
            "{what} {value:?} contains {bad:?}; allowed are letters, digits and {}",
            if what == "metadata key" { "'.', '_', '-'" } else { "'.', '_', '-', ':'" }
        )));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
