//! Argument parsers and helpers shared by the subcommands.

use std::sync::Arc;
use std::time::Duration;

use leader::{Error, LeaseStore, Metadata};

/// A duration such as `15s`, `500ms`, `1m30s`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. 15s, 500ms, 1m30s"))
}

/// `key=value` pairs into metadata.
pub(crate) fn metadata(pairs: &[String]) -> leader::Result<Metadata> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::invalid_argument(format!("--metadata {p:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// Human form of a remaining duration.
pub(crate) fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Opens the store a URL names (with the test faults in force, in a `test-faults` build).
pub(crate) async fn connect(url: &str) -> leader::Result<Arc<dyn LeaseStore>> {
    leader::connect(url).await.map(crate::faults::wrap)
}
