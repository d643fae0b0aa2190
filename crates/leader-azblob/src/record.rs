//! What an election's blob holds: the current (or last) holder's record, as JSON content.
//!
//! Content rather than blob metadata, because metadata names must be C# identifiers and values
//! ASCII, while participant ids and metadata values are any printable text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leader_core::{Error, FencingToken, Lease, LeaseHandle, Metadata, Result};
use serde::{Deserialize, Serialize};

/// The holder's record. Written only while the blob has no active lease (a claim, with `If-Match`
/// on the version read) or by the lease holder (lease id and `If-Match`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The fencing token of this tenure; every claim writes the previous record's token + 1.
    pub token: u64,
    pub instance_id: String,
    pub participant_id: String,
    /// The blob service's clock (its `Date` header) when the claim was made, in ms since the epoch.
    #[serde(default)]
    pub acquired_at_ms: Option<u64>,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Record {
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::backend("cannot encode the lease record").with_source(e))
    }

    /// `None` for an empty blob (made by someone else, e.g. the bench's floor).
    pub fn from_json(blob: &str, body: &[u8]) -> Result<Option<Self>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(body).map(Some).map_err(|e| {
            Error::backend(format!(
                "blob {blob:?} does not hold a leader-azblob lease record; \
                 is the container shared with something else?"
            ))
            .with_source(e)
        })
    }

    /// The lease this record describes, as followers see it (no handle, no expiry: Azure does not
    /// say how long a lease has left).
    pub fn lease(&self, election: &str) -> Lease {
        Lease {
            election: election.to_owned(),
            participant_id: self.participant_id.clone(),
            instance_id: self.instance_id.clone(),
            token: FencingToken::new(self.token),
            acquired_at: self.acquired_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            expires_at: None,
            expires_in: None,
            metadata: self.metadata.clone(),
            handle: LeaseHandle::default(),
        }
    }
}

/// Milliseconds since the epoch.
pub(crate) fn millis(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_millis()).ok())
}
