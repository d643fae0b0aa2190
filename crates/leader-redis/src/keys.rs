//! Key layout: which Redis keys and channel one store uses, and the rules for its key prefix.
//!
//! For key prefix `P` and election `E`:
//! - `P:{E}:lease`  string: `instance \n token \n participant \n acquired_at_us \n metadata_json`,
//!   written with `SET ... PX` so it expires by the server's clock.
//! - `P:{E}:token`  the election's record `last_token \n run_id \n ends_us` (never expires).
//! - `P:epoch`      when a promoted replica was first seen as primary (see the crate docs); on Redis
//!   Cluster one per hash slot, `P:{tag}:epoch` with a tag that hashes to the election's slot, so a
//!   script names only keys of one slot.
//! - channel `P:events`: the acquire, release and metadata scripts publish the election name here.
//!
//! The hash tag `{E}` puts an election's keys in one slot (Redis Cluster runs a script only on keys
//! of one slot). Neither `P` nor `E` may contain braces, so the first `{` ends the prefix and two
//! different (prefix, election) pairs never share a key, even when the prefix contains `:`.

use std::sync::OnceLock;

use leader_core::{Error, Result};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "leader";
/// Longest key prefix, in bytes.
pub const MAX_KEY_PREFIX: usize = 64;

/// A key prefix is 1-64 printable ASCII characters without spaces or braces (`{`, `}` would move
/// the hash tag).
pub fn validate_key_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Err(Error::invalid_argument(format!(
            "key prefix is empty; it needs 1-{MAX_KEY_PREFIX} printable characters"
        )));
    }
    if prefix.len() > MAX_KEY_PREFIX {
        return Err(Error::invalid_argument(format!(
            "key prefix {prefix:?} is {} bytes; the limit is {MAX_KEY_PREFIX}",
            prefix.len()
        )));
    }
    if let Some(bad) = prefix.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '{' | '}')) {
        return Err(Error::invalid_argument(format!(
            "key prefix {prefix:?} contains {bad:?}; allowed are printable ASCII characters other than space, '{{' and '}}'"
        )));
    }
    Ok(())
}

/// The keys of one store (one key prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    channel: String,
    clustered: bool,
}

impl Keys {
    pub(crate) fn new(prefix: &str, clustered: bool) -> Self {
        Keys { prefix: prefix.to_owned(), channel: format!("{prefix}:events"), clustered }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn lease(&self, election: &str) -> String {
        format!("{}:{{{election}}}:lease", self.prefix)
    }

    pub(crate) fn token(&self, election: &str) -> String {
        format!("{}:{{{election}}}:token", self.prefix)
    }

    pub(crate) fn epoch(&self, election: &str) -> String {
        if self.clustered {
            format!("{}:{{{}}}:epoch", self.prefix, slot_tag(hash_slot(election.as_bytes())))
        } else {
            format!("{}:epoch", self.prefix)
        }
    }

    /// The SCAN pattern for lease keys of elections starting with `election_prefix`.
    pub(crate) fn scan_pattern(&self, election_prefix: &str) -> String {
        format!("{}:{{{}*}}:lease", glob_escape(&self.prefix), glob_escape(election_prefix))
    }

    /// The election of a lease key of this store, or `None` for any other key.
    pub(crate) fn election_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let name = rest.strip_suffix("}:lease")?;
        (!name.contains(['{', '}'])).then_some(name)
    }
}

/// Escapes Redis glob characters (`*`, `?`, `[`, `]`, `\`) so they match themselves in SCAN MATCH.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// CRC16-XMODEM, Redis Cluster's key hash.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The Redis Cluster slot of a hash tag's content.
pub(crate) fn hash_slot(tag: &[u8]) -> u16 {
    crc16(tag) % 16384
}

/// A short string that hashes to `slot` (the first decimal number that does).
fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); 16384];
        let mut missing = tags.len();
        let mut n: u64 = 0;
        while missing > 0 {
            let s = n.to_string();
            let t = &mut tags[usize::from(hash_slot(s.as_bytes()))];
            if t.is_empty() {
                *t = s;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[usize::from(slot)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
    }

    #[test]
    fn slot_tags_hash_to_their_slot() {
        for slot in [0u16, 1, 5061, 12182, 16383] {
            assert_eq!(hash_slot(slot_tag(slot).as_bytes()), slot);
        }
        let keys = Keys::new("app", true);
        let epoch = keys.epoch("jobs");
        let tag = epoch.split(['{', '}']).nth(1).unwrap_or_default();
        assert_eq!(hash_slot(tag.as_bytes()), hash_slot(b"jobs"));
    }

    #[test]
    fn layout_and_parsing() {
        let keys = Keys::new("my:app", false);
        assert_eq!(keys.lease("a.b"), "my:app:{a.b}:lease");
        assert_eq!(keys.token("a.b"), "my:app:{a.b}:token");
        assert_eq!(keys.epoch("a.b"), "my:app:epoch");
        assert_eq!(keys.channel(), "my:app:events");
        assert_eq!(keys.election_of("my:app:{a.b}:lease"), Some("a.b"));
        assert_eq!(keys.election_of("my:app:{a.b}:token"), None);
        assert_eq!(keys.election_of("other:{a.b}:lease"), None);
        assert_eq!(keys.election_of("my:app:{x}:lease:{y}:lease"), None);
    }

    #[test]
    fn glob_characters_are_escaped() {
        let keys = Keys::new("a*b?[c]\\", false);
        assert_eq!(keys.scan_pattern("x"), "a\\*b\\?\\[c\\]\\\\:{x*}:lease");
    }

    #[test]
    fn prefix_rules() {
        assert!(validate_key_prefix("myapp:leader-election").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "tab\t", "é"] {
            let err = validate_key_prefix(bad).unwrap_err();
            assert_eq!(err.kind(), leader_core::ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert!(validate_key_prefix(&"x".repeat(65)).is_err());
    }
}
