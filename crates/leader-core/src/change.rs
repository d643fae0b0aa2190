//! [`LeadershipChange`] and the [`LeadershipChanges`] stream each subscriber gets.

use std::ops::BitOr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::LeaderInfo;

/// What kind of transition a [`LeadershipChange`] reports.
///
/// The first item of every [`changes()`](crate::Election::changes) stream is a snapshot of the
/// state at subscription ([`LeadershipChange::is_snapshot`]): kind `Acquired` if this participant
/// leads then, else `LeaderChanged` with the holder (or none). It reports a state, not a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// This participant became leader (once per acquisition), or, in a snapshot, leads at
    /// subscription (a tenure in progress).
    Acquired,
    /// This participant stopped being leader (once per loss).
    Lost,
    /// Another participant became leader, or nobody leads now (in a snapshot: the holder at
    /// subscription, while this participant does not lead).
    LeaderChanged,
}

/// A set of [`ChangeKind`]s, plus the [`SNAPSHOT`](ChangeKinds::SNAPSHOT) flag, for
/// [`kinds`](crate::LeadershipStreamExt::kinds).
///
/// A change [`matches`](ChangeKinds::matches) the set when its kind is in the set and, if it is the
/// subscription snapshot ([`LeadershipChange::is_snapshot`]), the set also has `SNAPSHOT`. So
/// `SNAPSHOT` widens the kind bits, it does not select on its own: `ACQUIRED | SNAPSHOT` passes
/// every `Acquired`, the snapshot included; `ACQUIRED` passes only the live ones; `SNAPSHOT` alone
/// passes nothing. [`ALL`](ChangeKinds::ALL) is every kind without snapshots; `ALL | SNAPSHOT`
/// passes everything.
///
/// ```
/// use leader_core::{ChangeKind, ChangeKinds};
/// let set = ChangeKinds::ACQUIRED | ChangeKinds::LOST;
/// assert!(set.contains(ChangeKind::Lost));
/// assert!(!set.contains(ChangeKind::LeaderChanged));
/// assert!(!set.contains_snapshots());
/// assert!((set | ChangeKinds::SNAPSHOT).contains_snapshots());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeKinds(u8);

impl ChangeKinds {
    /// No kind.
    pub const NONE: ChangeKinds = ChangeKinds(0);
    /// [`ChangeKind::Acquired`].
    pub const ACQUIRED: ChangeKinds = ChangeKinds(1);
    /// [`ChangeKind::Lost`].
    pub const LOST: ChangeKinds = ChangeKinds(2);
    /// [`ChangeKind::LeaderChanged`].
    pub const LEADER_CHANGED: ChangeKinds = ChangeKinds(4);
    /// Every kind (snapshots not included: add [`SNAPSHOT`](ChangeKinds::SNAPSHOT) for them).
    pub const ALL: ChangeKinds = ChangeKinds(7);
    /// Also pass the subscription snapshot when its kind is in the set (see the type's docs).
    pub const SNAPSHOT: ChangeKinds = ChangeKinds(8);

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: ChangeKind) -> bool {
        self.0 & ChangeKinds::from(kind).0 != 0
    }

    /// Whether the set has the [`SNAPSHOT`](ChangeKinds::SNAPSHOT) flag.
    pub fn contains_snapshots(self) -> bool {
        self.0 & ChangeKinds::SNAPSHOT.0 != 0
    }

    /// Whether [`kinds`](crate::LeadershipStreamExt::kinds) with this set passes `change`: its kind
    /// is in the set, and it is not a snapshot or the set has `SNAPSHOT`.
    ///
    /// ```
    /// # use leader_core::{ChangeKind, ChangeKinds, ChangeReason, LeadershipChange};
    /// let snapshot = LeadershipChange {
    ///     kind: ChangeKind::Acquired, is_leader: true, current: None, previous: None,
    ///     reason: ChangeReason::Subscribed, missed: 0, at: std::time::SystemTime::now(),
    /// };
    /// assert!(!ChangeKinds::ACQUIRED.matches(&snapshot));
    /// assert!((ChangeKinds::ACQUIRED | ChangeKinds::SNAPSHOT).matches(&snapshot));
    /// assert!(!(ChangeKinds::LOST | ChangeKinds::SNAPSHOT).matches(&snapshot));
    /// ```
    pub fn matches(self, change: &LeadershipChange) -> bool {
        self.contains(change.kind) && (!change.is_snapshot() || self.contains_snapshots())
    }
}

impl From<ChangeKind> for ChangeKinds {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Acquired => ChangeKinds::ACQUIRED,
            ChangeKind::Lost => ChangeKinds::LOST,
            ChangeKind::LeaderChanged => ChangeKinds::LEADER_CHANGED,
        }
    }
}

impl BitOr for ChangeKinds {
    type Output = ChangeKinds;
    fn bitor(self, rhs: Self) -> Self {
        ChangeKinds(self.0 | rhs.0)
    }
}

impl<const N: usize> From<[ChangeKind; N]> for ChangeKinds {
    fn from(kinds: [ChangeKind; N]) -> Self {
        kinds.into_iter().fold(ChangeKinds::NONE, |set, k| set | k.into())
    }
}

/// Why a change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChangeReason {
    /// The first item of every [`changes()`](crate::Election::changes) stream: the state when the
    /// subscriber subscribed (see [`LeadershipChange::is_snapshot`]).
    Subscribed,
    /// This participant won a campaign (or a manual `try_acquire`).
    Elected,
    /// A new holder (or none) was seen by a follower.
    Observed,
    /// The lease was released on purpose ([`Election::release`](crate::Election::release)).
    Released,
    /// The store says the lease is no longer ours: it expired, or was broken or taken.
    Expired,
    /// The local deadline passed without a successful renew, and the store answered with errors.
    RenewFailed,
    /// The local deadline passed without a successful renew because the store could not be reached
    /// or did not answer in time.
    StoreUnavailable,
    /// [`Election::stop`](crate::Election::stop) was called, or the last handle dropped.
    Stopped,
    /// The user's health check said this participant is unhealthy.
    Unhealthy,
}

impl ChangeReason {
    /// A short snake_case name, e.g. `"store_unavailable"` (used as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeReason::Subscribed => "subscribed",
            ChangeReason::Elected => "elected",
            ChangeReason::Observed => "observed",
            ChangeReason::Released => "released",
            ChangeReason::Expired => "expired",
            ChangeReason::RenewFailed => "renew_failed",
            ChangeReason::StoreUnavailable => "store_unavailable",
            ChangeReason::Stopped => "stopped",
            ChangeReason::Unhealthy => "unhealthy",
        }
    }
}

/// One transition, as delivered to every subscriber of [`Election::changes`](crate::Election::changes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeadershipChange {
    /// What happened.
    pub kind: ChangeKind,
    /// Whether this participant leads after the change.
    pub is_leader: bool,
    /// The holder after the change, if known.
    pub current: Option<LeaderInfo>,
    /// The holder before the change, if known.
    pub previous: Option<LeaderInfo>,
    /// Why.
    pub reason: ChangeReason,
    /// Changes this subscriber lost to overflow of its buffer just before this one (normally 0).
    /// Only overflow: the [`LeadershipStreamExt`](crate::LeadershipStreamExt) combinators never
    /// count the items they merge or drop on purpose here; they carry an upstream count forward
    /// into the next item they yield.
    pub missed: u64,
    /// When the change happened (wall clock, for display).
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

impl LeadershipChange {
    /// The token of `current`, if any.
    pub fn token(&self) -> Option<crate::FencingToken> {
        self.current.as_ref().map(|l| l.token)
    }

    /// Whether this is the subscription snapshot, the first item of every
    /// [`changes()`](crate::Election::changes) stream (`reason` [`ChangeReason::Subscribed`]). Its
    /// kind is `Acquired` when this participant leads at subscription (a tenure in progress, which
    /// later ends with a `Lost` like any other), else `LeaderChanged` with the holder or none. It
    /// describes a state, not a transition: `previous` is `None`.
    pub fn is_snapshot(&self) -> bool {
        self.reason == ChangeReason::Subscribed
    }
}

/// What an election's broadcast channel carries: a change, or the end of a run (a `stop()`).
#[derive(Debug, Clone)]
// Boxing the change would cost an allocation per change per subscriber (broadcast clones each item);
// the small variant is rare (once per stop()).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event {
    /// A change emitted during run `run`.
    Change { run: u64, change: LeadershipChange },
    /// Run `run` was stopped: its streams end here.
    End { run: u64 },
}

/// The stream returned by [`Election::changes`](crate::Election::changes): the state at subscription
/// first (`reason: Subscribed`), then every transition in order. Its buffer is bounded
/// (`event_buffer`); a subscriber that falls behind loses the oldest changes and the next one it
/// gets carries `missed > 0`.
///
/// It ends after the `Lost` of a [`stop`](crate::Election::stop) (once the lease is released, or
/// at a [`start`](crate::Election::start) that comes before that; for a `stop()` called from
/// inside `run_as_leader` work, when it returns), or when the election is dropped. A stream taken after `stop()` follows the next
/// [`start`](crate::Election::start). A stream that lost changes to overflow just before its end
/// (so that no change is left to carry `missed`) delivers one last change of its own before it
/// ends: `missed > 0`, `is_leader: false`, reason `Stopped`, `current: None` (not known), of kind
/// `Lost` (with `previous` the lease it last reported) if the last change it delivered said
/// `is_leader`, else `LeaderChanged`.
#[must_use = "streams do nothing unless polled"]
pub struct LeadershipChanges {
    first: Option<LeadershipChange>,
    inner: BroadcastStream<Event>,
    missed: u64,
    /// The lease the last delivered change said we hold (`None`: it said we do not lead).
    leading: Option<crate::LeaderInfo>,
    /// The run this stream follows.
    run: u64,
    /// Keeps following the runs after `run` instead of ending at its stop.
    follow_restarts: bool,
    done: bool,
}

impl LeadershipChanges {
    pub(crate) fn new(first: LeadershipChange, rx: tokio::sync::broadcast::Receiver<Event>, run: u64) -> Self {
        LeadershipChanges {
            first: Some(first),
            inner: BroadcastStream::new(rx),
            missed: 0,
            leading: None,
            run,
            follow_restarts: false,
            done: false,
        }
    }

    /// This stream, made to carry on through [`stop`](crate::Election::stop) and later
    /// [`start`](crate::Election::start)s instead of ending at the next stop: for monitors that
    /// watch a participant for its whole life. It still ends when the election is dropped.
    ///
    /// ```no_run
    /// # async fn demo(election: leader_core::Election) {
    /// use futures::StreamExt;
    /// let mut all = election.changes().follow_restarts();
    /// while let Some(change) = all.next().await {
    ///     println!("{:?} {:?}", change.kind, change.reason);
    /// }
    /// # }
    /// ```
    pub fn follow_restarts(mut self) -> Self {
        self.follow_restarts = true;
        self
    }

    /// Delivers `change`, remembering whether it said we lead.
    fn deliver(&mut self, change: LeadershipChange) -> Poll<Option<LeadershipChange>> {
        self.leading = if change.is_leader { change.current.clone() } else { None };
        Poll::Ready(Some(change))
    }

    /// Ends the stream; if changes were lost to overflow and none is left to say so, first
    /// delivers one that does (see the type's docs).
    fn end(&mut self) -> Poll<Option<LeadershipChange>> {
        self.done = true;
        if self.missed == 0 {
            return Poll::Ready(None);
        }
        let previous = self.leading.take();
        Poll::Ready(Some(LeadershipChange {
            kind: if previous.is_some() { ChangeKind::Lost } else { ChangeKind::LeaderChanged },
            is_leader: false,
            current: None,
            previous,
            reason: ChangeReason::Stopped,
            missed: std::mem::take(&mut self.missed),
            at: SystemTime::now(),
        }))
    }
}

impl Stream for LeadershipChanges {
    type Item = LeadershipChange;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return self.deliver(first);
        }
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(Event::Change { run, mut change }))) => {
                    if run < self.run {
                        continue; // sent before this stream's run began (a stop() raced the subscribe)
                    }
                    if run > self.run && !self.follow_restarts {
                        // Our run's end marker was lost to overflow: the run is over.
                        return self.end();
                    }
                    change.missed = std::mem::take(&mut self.missed);
                    return self.deliver(change);
                }
                Poll::Ready(Some(Ok(Event::End { run }))) => {
                    if run >= self.run && !self.follow_restarts {
                        return self.end();
                    }
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => self.missed += n,
                Poll::Ready(None) => return self.end(),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures::stream::FusedStream for LeadershipChanges {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
