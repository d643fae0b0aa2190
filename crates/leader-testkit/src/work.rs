//! [`WorkRecorder`]: guarantee 1 at the level of the user's work. Records when each participant's
//! `run_as_leader` work runs (from the moment its future is first polled to the moment it returns
//! or is dropped) and fails when the work of two participants overlaps.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_core::{Election, FencingToken, Leadership};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{fmt_duration, ScenarioFailure, ScenarioResult};

/// One piece of `run_as_leader` work, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSpan {
    /// Whose work it was.
    pub participant: String,
    /// The token of the tenure it ran under.
    pub token: FencingToken,
    /// When it started (first polled), on the monotonic clock.
    pub started: Instant,
    /// When it returned or was dropped (`None`: still running).
    pub ended: Option<Instant>,
}

/// Records the work of every participant of one election and checks that no two participants'
/// work ever runs at the same time (guarantee 1 for work, not only for leases).
///
/// ```no_run
/// # async fn demo(a: leader_core::Election, b: leader_core::Election) -> leader_testkit::ScenarioResult {
/// use std::time::Duration;
/// let work = leader_testkit::WorkRecorder::new();
/// let _a = work.spawn_stubborn(&a, Duration::from_secs(60)); // ignores lost()
/// let _b = work.spawn_stubborn(&b, Duration::from_secs(60));
/// // ... end a's tenure somehow, let b take over ...
/// work.check()
/// # }
/// ```
#[derive(Clone, Default)]
pub struct WorkRecorder {
    spans: Arc<Mutex<Vec<WorkSpan>>>,
    changed: Arc<tokio::sync::Notify>,
}

/// Marks its span ended when the work's future is dropped (returned or cancelled).
struct SpanGuard {
    recorder: WorkRecorder,
    index: usize,
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        lock(&self.recorder.spans)[self.index].ended = Some(Instant::now());
        self.recorder.changed.notify_waiters();
    }
}

impl WorkRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn begin(&self, participant: &str, leadership: &Leadership) -> SpanGuard {
        let mut spans = lock(&self.spans);
        spans.push(WorkSpan {
            participant: participant.to_owned(),
            token: leadership.token(),
            started: Instant::now(),
            ended: None,
        });
        self.changed.notify_waiters();
        SpanGuard { recorder: self.clone(), index: spans.len() - 1 }
    }

    /// Wraps `work` so that it is recorded as `participant`'s work under `leadership`.
    pub fn record<F: Future>(
        &self,
        participant: &str,
        leadership: &Leadership,
        work: F,
    ) -> impl Future<Output = F::Output> {
        let recorder = self.clone();
        let participant = participant.to_owned();
        let leadership = leadership.clone();
        async move {
            let _span = recorder.begin(&participant, &leadership);
            work.await
        }
    }

    /// Runs work that ignores `lost()` (it sleeps `run_for`) as `election`'s `run_as_leader` work,
    /// recorded, in a task of its own; the task's output is `run_as_leader`'s result.
    pub fn spawn_stubborn(&self, election: &Election, run_for: Duration) -> JoinHandle<leader_core::Result<()>> {
        let recorder = self.clone();
        let election = election.clone();
        tokio::spawn(async move {
            let who = election.participant_id().to_owned();
            election.run_as_leader(|l| recorder.record(&who, &l, tokio::time::sleep(run_for))).await
        })
    }

    /// Runs work that stops at `lost()` (or after `run_for`) as `election`'s `run_as_leader` work,
    /// recorded, in a task of its own.
    pub fn spawn_cooperative(&self, election: &Election, run_for: Duration) -> JoinHandle<leader_core::Result<()>> {
        let recorder = self.clone();
        let election = election.clone();
        tokio::spawn(async move {
            let who = election.participant_id().to_owned();
            election
                .run_as_leader(|l| {
                    let lost = l.clone();
                    recorder.record(&who, &l, async move {
                        tokio::select! {
                            _ = lost.lost() => {}
                            _ = tokio::time::sleep(run_for) => {}
                        }
                    })
                })
                .await
        })
    }

    /// Every span so far, in the order they started.
    pub fn spans(&self) -> Vec<WorkSpan> {
        let mut spans = lock(&self.spans).clone();
        spans.sort_by_key(|s| s.started);
        spans
    }

    /// Waits until `pred` holds for the spans recorded, at most `limit`.
    pub async fn wait_for(&self, limit: Duration, mut pred: impl FnMut(&[WorkSpan]) -> bool) -> ScenarioResult {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if pred(&self.spans()) {
                return Ok(());
            }
            let wake = (Instant::now() + Duration::from_millis(20)).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline {
                return Err(ScenarioFailure::new(format!(
                    "the expected work was not recorded within {}; recorded: {:?}",
                    fmt_duration(limit),
                    self.spans()
                )));
            }
        }
    }

    /// Waits until `participant`'s work has started (at most `limit`); returns its first span.
    pub async fn started(&self, participant: &str, limit: Duration) -> Result<WorkSpan, ScenarioFailure> {
        self.wait_for(limit, |s| s.iter().any(|s| s.participant == participant))
            .await
            .map_err(|e| e.context(format!("{participant}'s work starting")))?;
        self.spans()
            .into_iter()
            .find(|s| s.participant == participant)
            .ok_or_else(|| ScenarioFailure::new("a recorded span vanished"))
    }

    /// Fails if two participants' work overlapped (an open span counts as running until now).
    pub fn check(&self) -> ScenarioResult {
        check_work(&self.spans())
    }
}

/// Fails if two spans of different participants overlap (an open span runs until now).
pub fn check_work(spans: &[WorkSpan]) -> ScenarioResult {
    let now = Instant::now();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.participant == b.participant {
                continue;
            }
            let a_end = a.ended.unwrap_or(now);
            let b_end = b.ended.unwrap_or(now);
            if a.started < b_end && b.started < a_end {
                let overlap = a_end.min(b_end) - a.started.max(b.started);
                return Err(ScenarioFailure::new(format!(
                    "the work of {} (token {}) and of {} (token {}) ran at the same time for {}",
                    a.participant,
                    a.token,
                    b.participant,
                    b.token,
                    fmt_duration(overlap)
                )));
            }
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
