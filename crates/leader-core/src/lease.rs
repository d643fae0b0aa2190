//! What a store says about a lease: [`Lease`], [`FencingToken`], [`Metadata`], [`LeaseHandle`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Free-form key/value pairs a participant publishes with its lease (host name, version, address).
/// Followers and observers see them in [`LeaderInfo::metadata`].
pub type Metadata = BTreeMap<String, String>;

/// A number that strictly increases with every new acquisition of one election (guarantee 2).
///
/// Pass it to the resources the leader writes to, and have them reject a write whose token is lower
/// than the highest they have seen: that is what stops a deposed leader that has not noticed yet.
///
/// ```
/// use leader_core::FencingToken;
/// assert!(FencingToken::new(34) > FencingToken::new(33));
/// assert_eq!(FencingToken::new(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token with this value.
    pub const fn new(value: u64) -> Self {
        FencingToken(value)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for FencingToken {
    fn from(value: u64) -> Self {
        FencingToken(value)
    }
}

/// Provider-private state carried with a [`Lease`] (a znode path, a Consul session, an Azure lease
/// id). Only the provider that made it can read it back, because only it knows the type inside.
/// Not serialised; redacted in `Debug`.
#[derive(Clone, Default)]
pub struct LeaseHandle(Option<Arc<dyn Any + Send + Sync>>);

impl LeaseHandle {
    /// Wraps a provider's private value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        LeaseHandle(Some(Arc::new(value)))
    }

    /// The provider's value, if this handle holds one of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref::<T>())
    }

    /// Whether the handle is empty (a lease read by someone other than its holder, or a provider
    /// that needs no handle).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for LeaseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "LeaseHandle(<redacted>)" } else { "LeaseHandle(None)" })
    }
}

/// One lease as the store sees it: who holds which election, with which token, until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The election's name.
    pub election: String,
    /// Who holds it, as the user named the participant (host, pod, ...).
    pub participant_id: String,
    /// Random per [`Election`](crate::Election) object: tells apart two processes given the same
    /// participant id, and makes a retried acquire idempotent.
    pub instance_id: String,
    /// See [`FencingToken`].
    pub token: FencingToken,
    /// When the holder acquired it, by the store's clock; `None` where the store cannot say.
    #[serde(with = "humantime_serde::option", default)]
    pub acquired_at: Option<SystemTime>,
    /// When it expires unless renewed, by the store's clock; `None` where the store cannot say
    /// (ZooKeeper, Consul, Azure).
    #[serde(with = "humantime_serde::option", default)]
    pub expires_at: Option<SystemTime>,
    /// Remaining lease as the store computed it when it answered. Followers sleep until then instead
    /// of polling every `retry_interval`.
    #[serde(with = "humantime_serde::option", default)]
    pub expires_in: Option<Duration>,
    /// What the holder published with the lease.
    #[serde(default)]
    pub metadata: Metadata,
    /// Provider-private; see [`LeaseHandle`].
    #[serde(skip)]
    pub handle: LeaseHandle,
}

impl Lease {
    /// Whether this lease and `other` are the same tenure: same instance and same token.
    pub fn same_tenure(&self, other: &Lease) -> bool {
        self.instance_id == other.instance_id && self.token == other.token
    }
}

/// What followers see of the current leader.
pub type LeaderInfo = Lease;
