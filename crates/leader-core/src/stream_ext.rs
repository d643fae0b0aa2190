//! [`LeadershipStreamExt`]: combinators for streams of [`LeadershipChange`]. `futures::StreamExt`
//! supplies the general ones (`filter`, `map`, `take`, ...).

mod debounce;
mod distinct_until_changed;
mod kinds;
mod take_until_leader;
mod while_leader;

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

pub use self::debounce::Debounce;
pub use self::distinct_until_changed::DistinctUntilChanged;
pub use self::kinds::Kinds;
pub use self::take_until_leader::TakeUntilLeader;
pub use self::while_leader::WhileLeader;
use crate::{ChangeKind, ChangeKinds, LeadershipChange};

/// Combinators for any `Stream<Item = LeadershipChange>`, such as [`Election::changes`](crate::Election::changes).
/// Implemented for every such stream; do not implement it yourself.
///
/// ```
/// use futures::{stream, StreamExt};
/// use leader_core::{ChangeKind, ChangeKinds, LeadershipStreamExt};
/// # fn change(kind: ChangeKind, is_leader: bool) -> leader_core::LeadershipChange {
/// #     leader_core::LeadershipChange { kind, is_leader, current: None, previous: None,
/// #         reason: leader_core::ChangeReason::Observed, missed: 0, at: std::time::SystemTime::now() }
/// # }
/// # futures::executor::block_on(async {
/// let changes = stream::iter(vec![
///     change(ChangeKind::LeaderChanged, false),
///     change(ChangeKind::Acquired, true),
///     change(ChangeKind::Lost, false),
/// ]);
/// let kinds: Vec<_> = changes.kinds(ChangeKinds::ACQUIRED | ChangeKinds::LOST).map(|c| c.kind).collect().await;
/// assert_eq!(kinds, [ChangeKind::Acquired, ChangeKind::Lost]);
/// # });
/// ```
pub trait LeadershipStreamExt: Stream<Item = LeadershipChange> {
    /// Only the changes whose kind is in `kinds` (a [`ChangeKinds`] set, or one [`ChangeKind`]).
    fn kinds(self, kinds: impl Into<ChangeKinds>) -> Kinds<Self>
    where
        Self: Sized,
    {
        Kinds::new(self, kinds.into())
    }

    /// Every change up to and including the first one with `is_leader`, then ends.
    fn take_until_leader(self) -> TakeUntilLeader<Self>
    where
        Self: Sized,
    {
        TakeUntilLeader::new(self)
    }

    /// The changes while this participant leads; ends at the first change with `is_leader == false`
    /// (normally the `Lost`), which it does not yield.
    fn while_leader(self) -> WhileLeader<Self>
    where
        Self: Sized,
    {
        WhileLeader::new(self)
    }

    /// Drops a change that repeats the previous one's kind and holder (instance and token).
    fn distinct_until_changed(self) -> DistinctUntilChanged<Self>
    where
        Self: Sized,
    {
        DistinctUntilChanged::new(self)
    }

    /// Emits the latest change once `quiet` has passed without another; the last change is emitted
    /// when the stream ends. `missed` of an emitted change counts the changes it replaced too.
    fn debounce(self, quiet: Duration) -> Debounce<Self>
    where
        Self: Sized,
    {
        Debounce::new(self, quiet)
    }

    /// Consumes the stream, calling `on_acquired` for each `Acquired` and `on_lost` for each `Lost`.
    fn on_transition<A, L>(self, mut on_acquired: A, mut on_lost: L) -> impl Future<Output = ()> + Send
    where
        Self: Sized + Send,
        A: FnMut(&LeadershipChange) + Send,
        L: FnMut(&LeadershipChange) + Send,
    {
        self.for_each(move |change| {
            match change.kind {
                ChangeKind::Acquired => on_acquired(&change),
                ChangeKind::Lost => on_lost(&change),
                ChangeKind::LeaderChanged => {}
            }
            futures::future::ready(())
        })
    }
}

impl<S: Stream<Item = LeadershipChange>> LeadershipStreamExt for S {}
