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
use crate::{ChangeKinds, FencingToken, LeaderInfo, LeadershipChange};

/// Combinators for any `Stream<Item = LeadershipChange>`, such as [`Election::changes`](crate::Election::changes).
/// Implemented for every such stream; do not implement it yourself.
///
/// Rules every combinator keeps:
/// - **Snapshots.** The first item of a `changes()` stream is the subscription snapshot
///   ([`LeadershipChange::is_snapshot`]): kind `Acquired` (with `is_leader`) when this participant
///   leads at subscription, else `LeaderChanged`. A snapshot `Acquired` is a tenure in progress and
///   counts as the start of that tenure everywhere (`take_until_leader`, `while_leader`,
///   `on_transition`). Only [`kinds`](LeadershipStreamExt::kinds) drops snapshots, unless asked.
/// - **Leading** means `is_leader` on the item; a tenure is told apart from the next by its holder
///   (`current`: instance and token).
/// - **`missed` counts overflow only.** No combinator counts the items it drops or merges on
///   purpose; a combinator that drops an item carrying `missed > 0` adds that count to the next item
///   it yields, so a gap upstream stays visible downstream (it is lost only if nothing follows).
/// - Each returned stream can give back its input ([`into_inner`](Kinds::into_inner) and
///   friends) and is a [`FusedStream`](futures::stream::FusedStream) when it can tell it has ended:
///   always for `take_until_leader`, `while_leader` and `debounce`, when its input is one for
///   `kinds` and `distinct_until_changed`. Each is `Send`/`Unpin` when its input is (`debounce`
///   also needs a Tokio runtime with time enabled when polled).
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
    /// Only the changes that [`ChangeKinds::matches`]: kind in `kinds` (a [`ChangeKinds`] set, one
    /// [`ChangeKind`](crate::ChangeKind) or an array of them), and the subscription snapshot only
    /// when the set has [`ChangeKinds::SNAPSHOT`] (`ACQUIRED | SNAPSHOT` passes an `Acquired`
    /// snapshot; `ALL` passes no snapshot, `ALL | SNAPSHOT` everything). The `missed` count of a
    /// change it drops is added to the next one it yields.
    ///
    /// ```
    /// use futures::{stream, StreamExt};
    /// use leader_core::{ChangeKind::*, ChangeKinds, ChangeReason, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: ChangeReason::Observed, missed: 0, at: std::time::SystemTime::now() }
    /// # }
    /// # futures::executor::block_on(async {
    /// let snapshot = leader_core::LeadershipChange { reason: ChangeReason::Subscribed, ..change(Acquired) };
    /// let items = vec![snapshot, change(Lost), change(LeaderChanged), change(Acquired)];
    ///
    /// let live: Vec<_> = stream::iter(items.clone()).kinds(ChangeKinds::ACQUIRED).collect().await;
    /// assert_eq!(live.len(), 1);
    /// assert!(!live[0].is_snapshot());
    ///
    /// let all: Vec<_> =
    ///     stream::iter(items).kinds(ChangeKinds::ACQUIRED | ChangeKinds::SNAPSHOT).collect().await;
    /// assert_eq!(all.iter().map(|c| c.is_snapshot()).collect::<Vec<_>>(), [true, false]);
    /// # });
    /// ```
    fn kinds(self, kinds: impl Into<ChangeKinds>) -> Kinds<Self>
    where
        Self: Sized,
    {
        Kinds::new(self, kinds.into())
    }

    /// Every change up to and including the first one with `is_leader` (a live `Acquired` or an
    /// `Acquired` snapshot), then ends. Useful to wait for leadership while watching the holders.
    ///
    /// ```
    /// use futures::{stream, StreamExt};
    /// use leader_core::{ChangeKind::*, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: leader_core::ChangeReason::Observed, missed: 0, at: std::time::SystemTime::now() }
    /// # }
    /// # futures::executor::block_on(async {
    /// let items = vec![change(LeaderChanged), change(LeaderChanged), change(Acquired), change(Lost)];
    /// let kinds: Vec<_> = stream::iter(items).take_until_leader().map(|c| c.kind).collect().await;
    /// assert_eq!(kinds, [LeaderChanged, LeaderChanged, Acquired]);
    /// # });
    /// ```
    fn take_until_leader(self) -> TakeUntilLeader<Self>
    where
        Self: Sized,
    {
        TakeUntilLeader::new(self)
    }

    /// One tenure: skips changes until the first one where this participant leads (`is_leader`: a
    /// live `Acquired` or an `Acquired` snapshot), yields the changes while it leads, and ends at
    /// the first change that shows that tenure over, which it does not yield: normally its `Lost`;
    /// after an overflow that hid the `Lost`, any change without `is_leader`, or one with
    /// `is_leader` naming another tenure (holder or token). The `missed` count of the changes it
    /// skips before the tenure is added to the tenure's first one.
    ///
    /// ```
    /// use futures::{stream, StreamExt};
    /// use leader_core::{ChangeKind::*, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: leader_core::ChangeReason::Observed, missed: 0, at: std::time::SystemTime::now() }
    /// # }
    /// # futures::executor::block_on(async {
    /// // Taken while following: waits for the tenure, then ends at its Lost.
    /// let items = vec![change(LeaderChanged), change(Acquired), change(Lost), change(Acquired)];
    /// let kinds: Vec<_> = stream::iter(items).while_leader().map(|c| c.kind).collect().await;
    /// assert_eq!(kinds, [Acquired]);
    /// # });
    /// ```
    fn while_leader(self) -> WhileLeader<Self>
    where
        Self: Sized,
    {
        WhileLeader::new(self)
    }

    /// Drops a change that repeats the previous yielded one's kind and holder (instance and token;
    /// a snapshot counts as a change of its kind). The `missed` count of a change it drops is added
    /// to the next one it yields.
    ///
    /// ```
    /// use futures::{stream, StreamExt};
    /// use leader_core::{ChangeKind::*, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind, missed: u64) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: leader_core::ChangeReason::Observed, missed, at: std::time::SystemTime::now() }
    /// # }
    /// # futures::executor::block_on(async {
    /// // "Nobody leads" twice, the second after an overflow of 2.
    /// let items = vec![change(LeaderChanged, 0), change(LeaderChanged, 2), change(Acquired, 0)];
    /// let out: Vec<_> = stream::iter(items).distinct_until_changed().map(|c| (c.kind, c.missed)).collect().await;
    /// assert_eq!(out, [(LeaderChanged, 0), (Acquired, 2)]);
    /// # });
    /// ```
    fn distinct_until_changed(self) -> DistinctUntilChanged<Self>
    where
        Self: Sized,
    {
        DistinctUntilChanged::new(self)
    }

    /// Merges bursts of holder changes: a run of live `LeaderChanged` changes is held back and
    /// emitted as its last one once `quiet` has passed without another (or when the input ends).
    /// Every `Acquired` and `Lost`, and the subscription snapshot, passes at once, after the
    /// held-back change if there is one, so the order of everything it emits is the input's. The
    /// emitted change of a run has the run's first `previous` (the holder before the run) and the
    /// sum of the run's `missed` (overflow upstream); the merged changes themselves are not counted.
    /// Needs a Tokio runtime with time enabled when polled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use leader_core::{ChangeKind::*, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind, missed: u64) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: leader_core::ChangeReason::Observed, missed, at: std::time::SystemTime::now() }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// let mut out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).debounce(Duration::from_millis(100));
    /// for item in [change(LeaderChanged, 0), change(LeaderChanged, 3), change(Acquired, 0)] {
    ///     tx.send(item).unwrap();
    /// }
    /// // The Acquired flushes the merged LeaderChanged (carrying the overflow of 3), then passes.
    /// let first = out.next().await.unwrap();
    /// assert_eq!((first.kind, first.missed), (LeaderChanged, 3));
    /// assert_eq!(out.next().await.unwrap().kind, Acquired);
    /// // A lone LeaderChanged comes out after 100 ms of quiet.
    /// tx.send(change(LeaderChanged, 0)).unwrap();
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(out.next().await.unwrap().kind, LeaderChanged);
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # });
    /// ```
    fn debounce(self, quiet: Duration) -> Debounce<Self>
    where
        Self: Sized,
    {
        Debounce::new(self, quiet)
    }

    /// Consumes the stream, calling `on_acquired` when a tenure starts and `on_lost` when it ends,
    /// always in pairs: the calls alternate, starting with `on_acquired`.
    ///
    /// - `on_acquired` gets each change with `is_leader` that starts a tenure: a live `Acquired`, or
    ///   an `Acquired` snapshot (the tenure was in progress at subscription; it ends with a `Lost`
    ///   like any other). A repeat of the open tenure (same holder and token) is ignored.
    /// - `on_lost` gets the change that shows the open tenure over: normally its `Lost`. After an
    ///   overflow (`missed > 0`) or a filter upstream that hid the `Lost`, it is the first change
    ///   without `is_leader` (e.g. a `LeaderChanged`), or an `Acquired` of another tenure, which
    ///   then also goes to `on_acquired`; check `kind` if it matters.
    /// - A `Lost` with no open tenure (a stream taken after the `Acquired`, or one whose `Acquired`
    ///   an overflow hid) calls nothing. A stream that ends while a tenure is open (cut short by
    ///   `take`, say) leaves that last `on_acquired` without its `on_lost`.
    ///
    /// ```
    /// use futures::stream;
    /// use leader_core::{ChangeKind::*, ChangeReason, LeadershipStreamExt};
    /// # fn change(kind: leader_core::ChangeKind) -> leader_core::LeadershipChange {
    /// #     leader_core::LeadershipChange { kind, is_leader: kind == Acquired, current: None, previous: None,
    /// #         reason: ChangeReason::Observed, missed: 0, at: std::time::SystemTime::now() }
    /// # }
    /// # futures::executor::block_on(async {
    /// let snapshot = leader_core::LeadershipChange { reason: ChangeReason::Subscribed, ..change(Acquired) };
    /// let items = vec![snapshot, change(Lost), change(Lost), change(LeaderChanged)];
    /// let calls = std::sync::Mutex::new(Vec::new());
    /// stream::iter(items)
    ///     .on_transition(|_| calls.lock().unwrap().push("acquired"), |_| calls.lock().unwrap().push("lost"))
    ///     .await;
    /// assert_eq!(*calls.lock().unwrap(), ["acquired", "lost"]);
    /// # });
    /// ```
    fn on_transition<A, L>(self, mut on_acquired: A, mut on_lost: L) -> impl Future<Output = ()> + Send
    where
        Self: Sized + Send,
        A: FnMut(&LeadershipChange) + Send,
        L: FnMut(&LeadershipChange) + Send,
    {
        async move {
            let mut stream = std::pin::pin!(self);
            // The holder of the tenure `on_acquired` was last called for, while it is open.
            let mut open: Option<Tenure> = None;
            while let Some(change) = stream.next().await {
                if change.is_leader {
                    let tenure = tenure_of(&change);
                    match &open {
                        Some(o) if *o == tenure => continue,
                        Some(_) => on_lost(&change),
                        None => {}
                    }
                    on_acquired(&change);
                    open = Some(tenure);
                } else if open.take().is_some() {
                    on_lost(&change);
                }
            }
        }
    }
}

impl<S: Stream<Item = LeadershipChange>> LeadershipStreamExt for S {}

/// What tells one tenure from the next: the holder's instance and token (`None` when the change
/// names no holder).
type Tenure = Option<(String, FencingToken)>;

fn tenure_of(change: &LeadershipChange) -> Tenure {
    holder_key(change.current.as_ref())
}

fn holder_key(holder: Option<&LeaderInfo>) -> Tenure {
    holder.map(|l| (l.instance_id.clone(), l.token))
}
