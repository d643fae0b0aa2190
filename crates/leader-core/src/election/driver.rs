//! The background task of a started [`Election`](crate::Election): one state machine that
//! campaigns, renews, waits for the store's push hints or polls, and steps down.
//!
//! ```text
//!            acquire: Acquired                     renew: None / deadline passed
//!  Follower ───────────────────────▶ Leader ─────────────────────────────────────▶ Follower
//!     ▲  │ acquire: Held → wait for watch hint,                    │ release()
//!     │  │   the holder's expires_in, or retry_interval (jittered) ▼
//!     └──┴──────────────────────────────────────────────────── Abstaining (until another
//!                                                               leads or one lease passes)
//! ```
//!
//! Every store call runs under `operation_timeout`; no error ends the loop. The local deadline is
//! enforced by each tenure's watchdog (see `Core::begin_tenure`), not here, so a stuck driver
//! cannot keep a stale leader. Before campaigning it waits for `run_as_leader` work of the tenure
//! it last held (bounded by that work's grace), so that it never lets a successor in (by releasing
//! a lease it still holds in the store) while that work runs.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::core::{Attempt, Core};
use super::leadership::Leadership;
use crate::{ChangeReason, LeaderInfo};

/// The background task: [`run`] under a guard that turns a panic into a stopped election (with a
/// tracing error saying why) instead of a silent hang of `wait_for_leadership` and `changes()`.
pub(crate) async fn run_guarded(core: Arc<Core>, stop: watch::Receiver<bool>) {
    let outcome = std::panic::AssertUnwindSafe(run(core.clone(), stop)).catch_unwind().await;
    if let Err(panic) = outcome {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let failure = format!("the background task of election {:?} panicked: {what}", core.name);
        tracing::error!(election = %core.name, participant = %core.participant_id, %failure, "election stopped");
        core.stopped(Some(failure));
        core.end_run();
    }
}

async fn run(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut driver = Driver { core, watch: None, watch_retry_at: Instant::now(), next_renew: Instant::now() };
    // Elections that share a store handle and start together would all campaign in the same
    // instant: spread their first attempts over a millisecond per election on the handle, at most
    // one retry interval (a lone election goes at once).
    let sharing = driver.core.coalescer.attached();
    if sharing > 1 && driver.core.tenure().is_none() {
        let most = (Duration::from_millis(1) * u32::try_from(sharing).unwrap_or(u32::MAX))
            .min(driver.core.options.retry_interval);
        let spread = most.mul_f64(fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(spread) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    loop {
        if *stop.borrow() {
            break;
        }
        let step = async {
            match driver.core.tenure() {
                Some(tenure) => driver.lead(tenure).await,
                None => match driver.core.abstaining_until() {
                    Some(until) => driver.abstain(until).await,
                    None => driver.campaign().await,
                },
            }
        };
        tokio::select! {
            _ = step => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Stopped or dropped: whatever we held ends here (stop() releases it in the store afterwards).
    if let Some(t) = driver.core.tenure() {
        driver.core.end_tenure(&t, ChangeReason::Stopped);
    }
}

struct Driver {
    core: Arc<Core>,
    watch: Option<BoxStream<'static, ()>>,
    watch_retry_at: Instant,
    next_renew: Instant,
}

impl Driver {
    /// Leader: renew every `renew_interval` (retrying sooner after a failure) until the tenure ends.
    async fn lead(&mut self, tenure: Leadership) {
        // No need for push hints while leading (for queue stores they watch our predecessor).
        self.watch = None;
        tokio::select! {
            _ = sleep_until(self.next_renew) => {}
            _ = tenure.lost() => {
                // End it here rather than wait for the watchdog task: until the tenure is gone
                // this loop would find it again and spin without yielding.
                self.core.end_tenure(&tenure, self.core.deadline_reason());
                return;
            }
            _ = self.core.wake.notified() => return,
        }
        let core = &self.core;
        if !core.check_health().await {
            // Unhealthy: step down at once rather than keep renewing a lease we should not hold,
            // and release it once the work under it has ended.
            if core.end_tenure(&tenure, ChangeReason::Unhealthy) {
                let _ = core.hand_over(&tenure).await;
            }
            return;
        }
        let _op = core.op_lock.lock().await;
        if !tenure.is_valid() {
            core.end_tenure(&tenure, core.deadline_reason());
            return;
        }
        match core.renew(&tenure).await {
            Ok((stamp, Some(renewed))) => {
                if core.renewed(&tenure, renewed, stamp) {
                    let interval = core.options.renew_interval;
                    self.next_renew = core.coalescer.align(stamp.sent + interval, interval);
                }
            }
            Ok((_, None)) => {
                core.end_tenure(&tenure, ChangeReason::Expired);
            }
            Err(_) => {
                // Retry soon, but never past the deadline; the watchdog steps down at the deadline.
                self.next_renew =
                    (Instant::now() + Core::jitter(core.options.retry_interval)).min(tenure.valid_until());
            }
        }
    }

    /// Follower: one acquire attempt, then wait for a reason to try again.
    async fn campaign(&mut self) {
        self.core.wait_for_ended_work().await;
        self.ensure_watch();
        self.drain_watch();
        if !self.core.check_health().await {
            // Not healthy: no campaigning until the check passes again.
            let wake = Instant::now() + Core::jitter(self.core.options.retry_interval);
            self.wait(wake).await;
            return;
        }
        let attempt = {
            let _op = self.core.op_lock.lock().await;
            self.core.acquire_once().await
        };
        match attempt {
            Ok(Attempt::Leading(tenure)) => {
                let interval = self.core.options.renew_interval;
                let due = tenure.valid_until() - self.core.options.renew_deadline + interval;
                self.next_renew = self.core.coalescer.align(due, interval);
            }
            Ok(Attempt::Follower(holder)) => {
                let wake = self.follower_wake(holder.as_ref());
                self.wait(wake).await;
            }
            Ok(Attempt::Refused(refusal)) => {
                // Look again when the store said it elects again, and at least every retry.
                let retry = Core::jitter(self.core.options.retry_interval);
                let at_end = refusal.retry_in.map(|d| d + small_jitter(self.core.options.retry_interval));
                let wake = Instant::now() + at_end.map_or(retry, |d| d.min(retry));
                self.wait(wake).await;
            }
            Err(_) => {
                // Back off for a retry interval whatever the push channel says: its hints may
                // come from this attempt's own calls (a lease of ours it released), and would
                // otherwise start the next attempt at once, in a loop as fast as the store answers.
                let wake = Instant::now() + Core::jitter(self.core.options.retry_interval);
                tokio::select! {
                    _ = sleep_until(wake) => {}
                    _ = self.core.wake.notified() => {}
                }
            }
        }
    }

    /// After `release()`: watch who leads without campaigning, until another participant leads
    /// (then campaign as a normal follower) or the abstention ends.
    async fn abstain(&mut self, until: Instant) {
        self.ensure_watch();
        self.drain_watch();
        // Under op_lock, so that this read cannot overtake our own release in flight.
        let read = {
            let _op = self.core.op_lock.lock().await;
            self.core.call("current", self.core.store.current(&self.core.name)).await
        };
        let holder = match read {
            Ok(holder) => {
                self.core.observe_holder(holder.clone());
                holder
            }
            Err(_) => None,
        };
        let wake = self.follower_wake(holder.as_ref()).min(until);
        self.wait(wake).await;
    }

    /// When a follower should look again if no push hint comes first: at the holder's expiry where
    /// the store says it and does not push expiry itself, else every `retry_interval`; with a push
    /// channel that covers expiry, only a slow safety poll.
    fn follower_wake(&self, holder: Option<&LeaderInfo>) -> Instant {
        let opts = &self.core.options;
        let now = Instant::now();
        let pushed = self.watch.is_some() && self.core.caps.pushes_expiry;
        let at_expiry = holder.and_then(|h| h.expires_in).map(|d| d + small_jitter(opts.retry_interval));
        let fallback = if pushed { opts.lease_duration } else { Core::jitter(opts.retry_interval) };
        match (holder, at_expiry) {
            (Some(_), Some(expiry)) => now + expiry.min(opts.lease_duration),
            _ => now + fallback,
        }
    }

    async fn wait(&mut self, until: Instant) {
        let core = self.core.clone();
        match self.watch.as_mut() {
            Some(watch) => {
                tokio::select! {
                    _ = sleep_until(until) => {}
                    hint = watch.next() => if hint.is_none() {
                        // The push channel is down: poll, and try to watch again after a retry.
                        self.watch = None;
                        self.watch_retry_at = Instant::now() + core.options.retry_interval;
                    },
                    _ = core.wake.notified() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = sleep_until(until) => {}
                    _ = core.wake.notified() => {}
                }
            }
        }
    }

    fn ensure_watch(&mut self) {
        if self.watch.is_none() && self.core.caps.push_notifications && Instant::now() >= self.watch_retry_at {
            self.watch = self.core.store.watch(&self.core.name, Some(&self.core.instance_id));
            if self.watch.is_none() {
                self.watch_retry_at = Instant::now() + self.core.options.retry_interval;
            }
        }
    }

    /// Hints that arrived before this attempt are answered by it.
    fn drain_watch(&mut self) {
        if let Some(watch) = self.watch.as_mut() {
            while let Some(item) = watch.next().now_or_never() {
                if item.is_none() {
                    self.watch = None;
                    self.watch_retry_at = Instant::now() + self.core.options.retry_interval;
                    break;
                }
            }
        }
    }
}

/// Up to a tenth of `retry` (at most 50 ms), so that followers woken by one expiry do not all call
/// the store in the same millisecond.
fn small_jitter(retry: Duration) -> Duration {
    (retry / 10).min(Duration::from_millis(50)).mul_f64(fastrand::f64())
}
