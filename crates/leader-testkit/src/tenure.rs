//! [`TenureRecorder`]: records every participant's tenures from its change stream, and checks
//! that no two overlap and that tokens only grow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::{FutureExt, StreamExt};
use leader_core::{ChangeKind, ChangeReason, Election, FencingToken, LeadershipChange, LeadershipChanges};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ScenarioFailure;

/// One tenure as its holder saw it.
#[derive(Debug, Clone)]
pub struct Tenure {
    /// The holder's participant id.
    pub participant_id: String,
    /// The holder's instance id (tells apart two participants sharing a participant id).
    pub instance_id: String,
    /// The tenure's fencing token.
    pub token: FencingToken,
    /// When the holder started to lead (when it emitted `Acquired`).
    pub acquired: Instant,
    /// When it stopped (when it emitted `Lost`, or its stream ended); `None` while it leads.
    pub ended: Option<Instant>,
    /// Why it ended.
    pub reason: Option<ChangeReason>,
}

impl Tenure {
    /// Whether the two tenures share an instant (an open tenure lasts for ever).
    fn overlaps(&self, other: &Tenure) -> bool {
        let before = |t: &Tenure, instant: Instant| t.ended.is_none_or(|end| instant < end);
        before(self, other.acquired) && before(other, self.acquired)
    }
}

/// Records the tenures of every tracked participant, on the monotonic clock of this process.
///
/// A tenure runs from the participant's `Acquired` change to its `Lost` change. Both instants are
/// taken from the change's `at` (the moment the election emitted it, which is when `is_leader()`
/// turned true, and when it turned false or, for a deadline, just after) mapped onto
/// `tokio::time::Instant`, so a slow recorder task does not shift them. A tenure that ends at its
/// deadline is recorded as ending when the watchdog emitted `Lost`, a little after the deadline:
/// the recorded tenure covers the real one.
///
/// [`check`](TenureRecorder::check) fails on two overlapping tenures of different instances, on a
/// token that does not grow from one tenure to the next, and on a change stream that breaks the
/// rules of guarantee 8 (first item `Subscribed`; `Acquired` and `Lost` alternate).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use leader_core::{Election, ElectionOptions};
/// let store = Arc::new(leader_memory::MemoryStore::new());
/// let recorder = leader_testkit::TenureRecorder::new();
/// let a = Election::new(store, "jobs", "a", ElectionOptions::default())?;
/// recorder.track(&a);
/// assert!(a.try_acquire().await?);
/// a.release().await?;
/// recorder.wait_for(std::time::Duration::from_secs(5), |t| t.iter().any(|t| t.ended.is_some())).await?;
/// recorder.check()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct TenureRecorder {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// The tracked streams. Read by a background pump and, so that a query never misses a change
    /// already emitted, by every query before it answers.
    streams: Mutex<Vec<Tracked>>,
    changed: Notify,
}

struct Tracked {
    participant: String,
    instance: String,
    changes: Option<LeadershipChanges>,
    first: bool,
}

#[derive(Default)]
struct State {
    tenures: Vec<Tenure>,
    /// Index into `tenures` of each instance's open tenure.
    open: HashMap<String, usize>,
    violations: Vec<String>,
}

/// Maps a wall-clock instant of this process onto the monotonic clock.
fn instant_of(at: SystemTime) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match wall.duration_since(at) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(_) => now,
    }
}

impl TenureRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to `election`'s changes now (so nothing is missed) and records them. Does not
    /// keep the election alive. Needs a tokio runtime (a background task keeps the streams read so
    /// their buffers do not overflow).
    pub fn track(&self, election: &Election) {
        let first_tracked = {
            let mut streams = lock(&self.inner.streams);
            streams.push(Tracked {
                participant: election.participant_id().to_owned(),
                instance: election.instance_id().to_owned(),
                changes: Some(election.changes().follow_restarts()),
                first: true,
            });
            streams.len() == 1
        };
        if first_tracked {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                while let Some(inner) = weak.upgrade() {
                    inner.pump();
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        self.inner.pump();
    }

    /// Every tenure so far, in the order they began.
    pub fn tenures(&self) -> Vec<Tenure> {
        self.inner.pump();
        let mut t = lock(&self.inner.state).tenures.clone();
        t.sort_by_key(|t| t.acquired);
        t
    }

    /// The tenures still open (their holder has not emitted `Lost`).
    pub fn open(&self) -> Vec<Tenure> {
        self.tenures().into_iter().filter(|t| t.ended.is_none()).collect()
    }

    /// Waits until `pred` holds for the tenures recorded, at most `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&[Tenure]) -> bool,
    ) -> Result<Vec<Tenure>, ScenarioFailure> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.inner.changed.notified();
            let tenures = self.tenures();
            if pred(&tenures) {
                return Ok(tenures);
            }
            let wake = (Instant::now() + Duration::from_millis(10)).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline {
                return Err(ScenarioFailure::new(format!(
                    "the expected tenures were not recorded within {}; recorded: {}",
                    crate::fmt_duration(limit),
                    describe(&self.tenures())
                )));
            }
        }
    }

    /// Fails on overlapping tenures of different instances, on tokens that do not grow, and on
    /// change streams that broke the event rules.
    pub fn check(&self) -> Result<(), ScenarioFailure> {
        let tenures = self.tenures();
        let violations = lock(&self.inner.state).violations.clone();
        if !violations.is_empty() {
            return Err(ScenarioFailure::new(format!("change stream rules broken: {}", violations.join("; "))));
        }
        check_tenures(&tenures).map_err(ScenarioFailure::new)
    }
}

impl Inner {
    /// Records every change already emitted on the tracked streams.
    fn pump(&self) {
        let mut any = false;
        let mut streams = lock(&self.streams);
        for t in streams.iter_mut() {
            while let Some(changes) = t.changes.as_mut() {
                match changes.next().now_or_never() {
                    Some(Some(change)) => {
                        self.record(&t.participant, &t.instance, &change, t.first);
                        t.first = false;
                        any = true;
                    }
                    Some(None) => {
                        t.changes = None;
                        self.close(&t.instance, Instant::now(), None);
                        any = true;
                    }
                    None => break,
                }
            }
        }
        drop(streams);
        if any {
            self.changed.notify_waiters();
        }
    }

    fn record(&self, participant: &str, instance: &str, change: &LeadershipChange, first: bool) {
        let at = instant_of(change.at);
        {
            let mut st = lock(&self.state);
            if first && change.reason != ChangeReason::Subscribed {
                st.violations.push(format!("{participant}: first change is {:?}, not Subscribed", change.reason));
            }
            if !first && change.reason == ChangeReason::Subscribed {
                st.violations.push(format!("{participant}: a Subscribed change after the first"));
            }
            match change.kind {
                ChangeKind::Acquired => {
                    if !change.is_leader {
                        st.violations.push(format!("{participant}: Acquired with is_leader false"));
                    }
                    let Some(token) = change.token() else {
                        st.violations.push(format!("{participant}: Acquired without the lease"));
                        return;
                    };
                    if st.open.contains_key(instance) {
                        st.violations.push(format!("{participant}: Acquired (token {token}) twice without Lost"));
                    }
                    if let Some(last) = st.tenures.iter().filter(|t| t.instance_id == instance).map(|t| t.token).max() {
                        if token <= last {
                            st.violations.push(format!(
                                "{participant}: Acquired token {token} after an earlier tenure with token {last}"
                            ));
                        }
                    }
                    if change.missed > 0 {
                        st.violations.push(format!("{participant}: {} changes missed", change.missed));
                    }
                    let idx = st.tenures.len();
                    st.tenures.push(Tenure {
                        participant_id: participant.to_owned(),
                        instance_id: instance.to_owned(),
                        token,
                        acquired: at,
                        ended: None,
                        reason: None,
                    });
                    st.open.insert(instance.to_owned(), idx);
                }
                ChangeKind::Lost => {
                    if change.is_leader {
                        st.violations.push(format!("{participant}: Lost with is_leader true"));
                    }
                    match st.open.remove(instance) {
                        Some(idx) => {
                            st.tenures[idx].ended = Some(at);
                            st.tenures[idx].reason = Some(change.reason);
                        }
                        None => st.violations.push(format!("{participant}: Lost without a preceding Acquired")),
                    }
                }
                ChangeKind::LeaderChanged => {
                    if change.is_leader {
                        st.violations.push(format!("{participant}: LeaderChanged with is_leader true"));
                    }
                    if st.open.contains_key(instance) {
                        st.violations.push(format!("{participant}: LeaderChanged while it leads"));
                    }
                }
            }
        }
    }

    fn close(&self, instance: &str, at: Instant, reason: Option<ChangeReason>) {
        {
            let mut st = lock(&self.state);
            if let Some(idx) = st.open.remove(instance) {
                st.tenures[idx].ended = Some(at);
                st.tenures[idx].reason = reason;
            }
        }
    }
}

/// The checker on its own: no two tenures of different instances overlap, and in the order they
/// began every tenure's token is greater than the one before.
pub fn check_tenures(tenures: &[Tenure]) -> Result<(), String> {
    let mut sorted: Vec<&Tenure> = tenures.iter().collect();
    sorted.sort_by_key(|t| t.acquired);
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if a.instance_id != b.instance_id && a.overlaps(b) {
                let overlap = match (a.ended, b.ended) {
                    (Some(x), Some(y)) => crate::fmt_duration(x.min(y).saturating_duration_since(b.acquired)),
                    (Some(x), None) | (None, Some(x)) => crate::fmt_duration(x.saturating_duration_since(b.acquired)),
                    (None, None) => "both still lead".to_owned(),
                };
                return Err(format!(
                    "two leaders at once: {} (token {}) and {} (token {}) overlapped by {overlap}",
                    a.participant_id, a.token, b.participant_id, b.token
                ));
            }
        }
    }
    for pair in sorted.windows(2) {
        if pair[1].token <= pair[0].token {
            return Err(format!(
                "fencing token did not grow: {} led with token {}, then {} with token {}",
                pair[0].participant_id, pair[0].token, pair[1].participant_id, pair[1].token
            ));
        }
    }
    Ok(())
}

fn describe(tenures: &[Tenure]) -> String {
    if tenures.is_empty() {
        return "none".to_owned();
    }
    tenures
        .iter()
        .map(|t| format!("{}#{}{}", t.participant_id, t.token, if t.ended.is_some() { "" } else { " (open)" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
