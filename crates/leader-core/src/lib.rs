//! The provider-independent core of `leader`: distributed leader election over a store you
//! already run.
//!
//! - [`LeaseStore`]: the primitives each provider implements (acquire, renew, release, ...).
//! - [`Election`]: one participant; campaigns, renews and steps down, all in one driver loop.
//! - [`Leadership`]: a tenure with its [`FencingToken`] and a local deadline.
//! - [`Election::changes`] and [`LeadershipStreamExt`]: the stream of leadership changes.
//! - [`observe`]: follow the holder of an election without taking part.
//!
//! # Guarantees
//! 1. **Mutual exclusion** while clocks run at the same rate and the store does not expire a lease
//!    early. 2. **Fencing**: tokens strictly increase per election. 3. **Local deadline**:
//!    [`Election::is_leader`] turns false at (send time of the last successful renew) +
//!    `renew_deadline`, even when the task or the store is stuck. 4. **Expiry by the store's clock.**
//!    5. **Graceful release** hands over at once. 6. **Crash**: replaced within
//!    [`Capabilities::crash_bound`]. 7. **Store outage**: step down by the deadline, re-elect when
//!    the store returns. 8. **Events**: every transition to every subscriber, in order, with a
//!    bounded buffer.
//!
//! # Clocks
//! Local bookkeeping uses `tokio::time::Instant` (monotonic; tests can pause it). A monotonic clock
//! stops while the machine is suspended, so every deadline check also reads the boot-time clock
//! and takes the time the host spent suspended off the deadline ([`clock`] lists the clocks used
//! on each platform). A suspend is noticed within [`clock::SUSPEND_CHECK`] of the resume; fencing
//! tokens protect downstream writes in that window.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod change;
pub mod clock;
mod election;
mod error;
mod floor;
pub mod layer;
mod lease;
mod observe;
mod options;
pub mod redact;
mod shutdown;
mod store;
mod stream_ext;
mod validate;

pub use change::{ChangeKind, ChangeKinds, ChangeReason, LeadershipChange, LeadershipChanges};
pub use election::{
    default_participant_id, Election, ElectionBuilder, HealthReport, Leadership, RefusedReport, WeakElection,
};
pub use error::{cause_of, BoxError, Error, ErrorKind, Result};
pub use floor::RawFloor;
pub use lease::{FencingToken, LeaderInfo, Lease, LeaseHandle, Metadata};
pub use observe::observe;
pub use options::{ElectionOptions, DEFAULT_EVENT_BUFFER, DEFAULT_LEASE};
pub use shutdown::shutdown_signal;
pub use store::{Acquire, AcquireRequest, Capabilities, DynLeaseStore, LeaseStore, Refusal, Renewal};
pub use stream_ext::{Debounce, DistinctUntilChanged, Kinds, LeadershipStreamExt, TakeUntilLeader, WhileLeader};
pub use validate::{
    validate_election_name, validate_instance_id, validate_metadata, validate_participant_id, validate_prefix,
    MAX_ELECTION_NAME, MAX_INSTANCE_ID, MAX_METADATA_ENTRIES, MAX_METADATA_KEY, MAX_METADATA_VALUE, MAX_PARTICIPANT_ID,
};

/// Re-exported for providers: implement [`LeaseStore`] with `#[leader_core::async_trait]`.
pub use async_trait::async_trait;
/// Re-exported for providers: [`LeaseStore::watch`] returns a `BoxStream`.
pub use futures::stream::BoxStream;
