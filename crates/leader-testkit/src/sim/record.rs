//! What a simulation records while it runs: each participant's grants as its store answered them
//! (for the deadline probe), every change it emitted (the checker's own subscriber, read at once),
//! what each ordinary subscriber received, and its injected suspend clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::Stream;
use leader_core::clock::SuspendClock;
use leader_core::{
    Acquire, AcquireRequest, Capabilities, Election, ElectionOptions, FencingToken, LeaderInfo, LeadershipChange,
    LeadershipChanges, Lease, LeaseStore, Metadata, Result, WeakElection,
};
use tokio::time::Instant;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One acquire or renew that granted this participant its lease, as the election saw it: the
/// outermost layer of the participant's store, so `sent` is when the election sent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    pub(crate) sent: Instant,
    pub(crate) answered: Instant,
    pub(crate) token: FencingToken,
}

/// The grants one participant received, and when it made each store call.
#[derive(Default)]
pub(crate) struct Grants(Mutex<Vec<Grant>>, Mutex<Vec<Instant>>);

impl Grants {
    fn push(&self, sent: Instant, token: FencingToken) {
        lock(&self.0).push(Grant { sent, answered: Instant::now(), token });
    }

    fn call(&self) {
        lock(&self.1).push(Instant::now());
    }

    /// The most store calls made within any `window`.
    pub(crate) fn busiest(&self, window: Duration) -> (usize, Option<Instant>) {
        let calls = lock(&self.1);
        let (mut best, mut at, mut from) = (0, None, 0);
        for (to, t) in calls.iter().enumerate() {
            while *t - calls[from] >= window {
                from += 1;
            }
            if to + 1 - from > best {
                best = to + 1 - from;
                at = Some(calls[from]);
            }
        }
        (best, at)
    }

    /// The latest local deadline the grants answered by `now` allow for `token`: the latest send
    /// time plus `renew_deadline`, less the time the host slept since that send.
    pub(crate) fn deadline(
        &self,
        token: FencingToken,
        now: Instant,
        renew_deadline: Duration,
        clock: &SimSuspend,
    ) -> Option<(Instant, Grant)> {
        lock(&self.0)
            .iter()
            .filter(|g| g.token == token && g.answered <= now)
            .map(|g| {
                let slept = clock.slept_since(g.sent);
                let deadline = (g.sent + renew_deadline).checked_sub(slept).unwrap_or(g.sent);
                (deadline, *g)
            })
            .max_by_key(|(d, _)| *d)
    }
}

/// The outermost layer of a participant's store: records the grants.
pub(crate) struct Recording {
    pub(crate) inner: Arc<dyn LeaseStore>,
    pub(crate) grants: Arc<Grants>,
}

#[leader_core::async_trait]
impl LeaseStore for Recording {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.grants.call();
        let sent = Instant::now();
        let answer = self.inner.try_acquire(req).await;
        if let Ok(Acquire::Acquired(lease)) = &answer {
            if lease.instance_id == req.instance_id {
                self.grants.push(sent, lease.token);
            }
        }
        answer
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.grants.call();
        let sent = Instant::now();
        let answer = self.inner.renew(lease, ttl).await;
        if let Ok(Some(renewed)) = &answer {
            self.grants.push(sent, renewed.token);
        }
        answer
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.grants.call();
        self.inner.release(lease).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.grants.call();
        self.inner.update_metadata(lease, metadata).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.grants.call();
        self.inner.withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.grants.call();
        self.inner.current(election).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.grants.call();
        self.inner.list(prefix).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        Some(&*self.inner)
    }
}

/// Just above a participant's own store handle: when armed, the next call of one operation is
/// sent again, to the store itself, after a delay ([`FaultKind::Duplicate`](super::FaultKind)).
pub(crate) struct Duplicating {
    pub(crate) inner: Arc<dyn LeaseStore>,
    pub(crate) armed: Arc<Mutex<Option<(leader_core::layer::Op, Duration)>>>,
}

impl Duplicating {
    fn take(&self, op: leader_core::layer::Op) -> Option<Duration> {
        let mut armed = lock(&self.armed);
        match *armed {
            Some((o, delay)) if o == op => {
                *armed = None;
                Some(delay)
            }
            _ => None,
        }
    }
}

#[leader_core::async_trait]
impl LeaseStore for Duplicating {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        self.inner.try_acquire(req).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        if let Some(delay) = self.take(leader_core::layer::Op::Renew) {
            let (inner, lease) = (self.inner.clone(), lease.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inner.renew(&lease, ttl).await;
            });
        }
        self.inner.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        if let Some(delay) = self.take(leader_core::layer::Op::Release) {
            let (inner, lease) = (self.inner.clone(), lease.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inner.release(&lease).await;
            });
        }
        self.inner.release(lease).await
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        self.inner.update_metadata(lease, metadata).await
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.inner.withdraw(election, instance_id).await
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        self.inner.current(election).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        self.inner.list(prefix).await
    }
    fn watch(&self, election: &str, instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.watch(election, instance_id)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        self.inner.check_options(options)
    }
    fn inner_store(&self) -> Option<&dyn LeaseStore> {
        Some(&*self.inner)
    }
}

/// A participant's host clock: how long it has been suspended, advanced by the simulation, with
/// the instants of each jump so the probe can tell how long it slept between two instants.
#[derive(Default)]
pub(crate) struct SimSuspend {
    total_ms: AtomicU64,
    jumps: Mutex<Vec<(Instant, Duration)>>,
}

impl SimSuspend {
    /// The host slept `d` (it resumes now).
    pub(crate) fn advance(&self, d: Duration) {
        let mut jumps = lock(&self.jumps);
        let total = self.total_ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst) + d.as_millis() as u64;
        jumps.push((Instant::now(), Duration::from_millis(total)));
    }

    /// Total suspended as of `at`, a jump made at `at` itself included (the lenient reading: a
    /// request sent in the same instant as a resume counts from after it).
    fn total_at(&self, at: Instant) -> Duration {
        lock(&self.jumps).iter().rev().find(|(t, _)| *t <= at).map_or(Duration::ZERO, |(_, total)| *total)
    }

    /// Time suspended since `from`, as of now.
    pub(crate) fn slept_since(&self, from: Instant) -> Duration {
        self.suspended().saturating_sub(self.total_at(from))
    }
}

impl SuspendClock for SimSuspend {
    fn suspended(&self) -> Duration {
        Duration::from_millis(self.total_ms.load(Ordering::SeqCst))
    }
}

/// One change as a stream delivered it, with the instant it was read.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) at: Instant,
    pub(crate) change: LeadershipChange,
}

/// The checker's own subscriber of one participant (`follow_restarts`), read as soon as a change
/// is sent (a task woken by the stream, and [`pump`](ChangeLog::pump) from anyone who needs the
/// log up to date), so each entry carries the instant the change was emitted.
///
/// Beside it, an ordinary stream read in lockstep finds where each run ends (each `stop()` or
/// drop, whoever calls it): it yields the same changes and ends with its run; it is taken again at
/// once, so each end is noted by log position.
#[derive(Clone)]
pub(crate) struct ChangeLog {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    stream: Option<LeadershipChanges>,
    /// The ordinary stream of the current run, and whether its first item (the snapshot) is
    /// still to come.
    run: Option<(LeadershipChanges, bool)>,
    election: WeakElection,
    /// The reading task's waker: synchronous pumps poll with it so it stays registered.
    waker: Option<Waker>,
    entries: Vec<Entry>,
    /// Log length when each run ended, in order.
    run_ends: Vec<usize>,
}

impl ChangeLog {
    /// Subscribes to `election` now; the returned future reads the stream until it ends (spawn it).
    pub(crate) fn new(election: &Election) -> (ChangeLog, impl Future<Output = ()> + Send + 'static) {
        let inner = Arc::new(Mutex::new(LogInner {
            stream: Some(election.changes().follow_restarts()),
            run: Some((election.changes(), true)),
            election: election.downgrade(),
            waker: None,
            entries: Vec::new(),
            run_ends: Vec::new(),
        }));
        let reader = inner.clone();
        let task = futures::future::poll_fn(move |cx| {
            let mut g = lock(&reader);
            g.waker = Some(cx.waker().clone());
            drain(&mut g, cx);
            if g.stream.is_none() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        (ChangeLog { inner }, task)
    }

    /// Reads every change already sent; returns the log's length.
    pub(crate) fn pump(&self) -> usize {
        let mut g = lock(&self.inner);
        let waker = g.waker.clone().unwrap_or_else(futures::task::noop_waker);
        drain(&mut g, &mut Context::from_waker(&waker));
        g.entries.len()
    }

    /// How many runs have ended so far (read after a [`pump`](Self::pump)): a stream taken now
    /// follows run number `runs_ended()`.
    pub(crate) fn runs_ended(&self) -> usize {
        lock(&self.inner).run_ends.len()
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.pump();
        lock(&self.inner).entries.clone()
    }

    pub(crate) fn run_ends(&self) -> Vec<usize> {
        lock(&self.inner).run_ends.clone()
    }
}

fn drain(g: &mut LogInner, cx: &mut Context<'_>) {
    loop {
        // The run's stream first: each change it yields, the log takes up to and including the
        // same change (the log may hold more: changes of an older run, and the change of a newer
        // run that ended the run's stream).
        if let Some((run, fresh)) = g.run.as_mut() {
            match Pin::new(run).poll_next(cx) {
                Poll::Ready(Some(change)) => {
                    if std::mem::take(fresh) {
                        continue; // its snapshot
                    }
                    while let Some(stream) = g.stream.as_mut() {
                        match Pin::new(stream).poll_next(cx) {
                            Poll::Ready(Some(c)) => {
                                let found = same(&c, &change);
                                g.entries.push(Entry { at: Instant::now(), change: c });
                                if found {
                                    break;
                                }
                            }
                            Poll::Ready(None) => g.stream = None,
                            Poll::Pending => break,
                        }
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    g.run_ends.push(g.entries.len());
                    g.run = g.election.upgrade().map(|e| (e.changes(), true));
                    continue;
                }
                Poll::Pending => {}
            }
        }
        let Some(stream) = g.stream.as_mut() else { break };
        match Pin::new(stream).poll_next(cx) {
            Poll::Ready(Some(change)) => g.entries.push(Entry { at: Instant::now(), change }),
            Poll::Ready(None) => g.stream = None,
            Poll::Pending => break,
        }
    }
}

/// Whether two changes are the same emitted change (as two streams delivered it).
pub(crate) fn same(a: &LeadershipChange, b: &LeadershipChange) -> bool {
    let key = |h: &Option<leader_core::LeaderInfo>| h.as_ref().map(|l| (l.instance_id.clone(), l.token));
    a.kind == b.kind
        && a.reason == b.reason
        && a.is_leader == b.is_leader
        && a.at == b.at
        && key(&a.current) == key(&b.current)
        && key(&a.previous) == key(&b.previous)
}

/// What one ordinary subscriber's stream (one `changes()` call) delivered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscription {
    /// The participant's change log length when the stream was taken.
    pub(crate) start: usize,
    /// How many runs had ended when it was taken: the run it follows.
    pub(crate) run: usize,
    pub(crate) items: Vec<Entry>,
    /// The stream ended.
    pub(crate) ended: bool,
    /// The application dropped it for a new one (after a restart).
    pub(crate) abandoned: bool,
    /// `stop()` calls that had returned when it was taken.
    pub(crate) stops_done_at_start: u64,
    /// `stop()` calls begun when it ended, and whether the election was gone by then.
    pub(crate) stops_begun_at_end: u64,
    pub(crate) gone_at_end: bool,
}

/// Every stream one subscriber took, in order (it takes a new one when its stream ends, and when
/// the application restarts the election).
pub(crate) type SubscriberLog = Arc<Mutex<Vec<Subscription>>>;

/// How many `stop()` calls one participant began and how many returned (whoever called them).
#[derive(Default)]
pub(crate) struct StopCount {
    pub(crate) begun: AtomicU64,
    pub(crate) done: AtomicU64,
}

impl StopCount {
    /// Runs `stop`, counted.
    pub(crate) async fn stop(&self, election: &Election) -> Result<()> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        let result = election.stop().await;
        self.done.fetch_add(1, Ordering::SeqCst);
        result
    }
}
