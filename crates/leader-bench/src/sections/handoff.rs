//! Graceful handoff: the leader calls `stop()` (ends its background task, then releases the lease)
//! → a waiting follower's `Acquired` change, timed from just before `stop` is called to the moment
//! the follower's `changes()` stream yields it.
//!
//! `stop()` rather than `release()`: after `release()` the old leader campaigns again once one
//! lease has passed, and a polling follower wakes at the holder's expiry plus a small jitter, so
//! when the release comes just after a renew, a loaded machine can let the old leader win again
//! (seen on fs under CPU and fsync load). `stop()` is the graceful shutdown of a rolling deploy.
//! In polling mode the release comes at a random moment within one lease of the follower's first
//! look, so that the samples cover the whole poll cycle rather than its worst case.

use std::sync::Arc;
use std::time::Duration;

use leader::layer::Op;
use leader::{LeaseStore, Result};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{bound, lead, next_acquired, participant, wait_for_calls, SETTLE};
use crate::stats::{ms, Summary};

/// Handoff latency in one mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HandoffReport {
    /// `push` (the store's watch passed on) or `polling` (watch hidden by an `Intercept` whose
    /// `allow_watch` is false, so followers poll).
    pub mode: String,
    /// Latency of each handoff.
    pub summary: Summary,
    /// Every sample, in order, in milliseconds.
    pub samples_ms: Vec<f64>,
}

/// `handoffs` handoffs on one election; each round a fresh follower takes over from the last.
pub async fn run(
    store: &Arc<dyn LeaseStore>,
    run_id: &str,
    lease: Duration,
    handoffs: usize,
    push: bool,
) -> Result<HandoffReport> {
    let mode = if push { "push" } else { "polling" };
    let name = format!("bench-{run_id}-handoff-{mode}");
    let bound = bound(lease);
    let (mut leader, _) = participant(store, &name, "bench-handoff-0", lease, push)?;
    leader.start().await?;
    lead(&leader, bound, "handoff: first leader").await?;
    let mut samples = Vec::with_capacity(handoffs);
    for round in 1..=handoffs {
        let (follower, probe) = participant(store, &name, &format!("bench-handoff-{round}"), lease, push)?;
        let mut changes = follower.changes();
        follower.start().await?;
        // The follower has been told who leads and is waiting (on its watch, or its poll timer).
        wait_for_calls(&probe, Op::TryAcquire, 1, bound, "handoff: follower's first attempt").await?;
        // A polling follower sleeps until the expiry it last read; releasing right after its first
        // look would always hit the longest sleep. A long-running follower is at a random point of
        // its poll cycle when the leader lets go, so release at a random moment within one lease.
        let phase = if push { Duration::ZERO } else { lease.mul_f64(fastrand::f64()) };
        tokio::time::sleep(SETTLE + phase).await;

        let start = Instant::now();
        let (stopped, acquired) = tokio::join!(leader.stop(), next_acquired(&mut changes, bound, "handoff: follower"));
        stopped?;
        samples.push(acquired?.saturating_duration_since(start));
        leader = follower;
    }
    leader.stop().await?;
    Ok(HandoffReport {
        mode: mode.to_owned(),
        summary: Summary::of(&samples),
        samples_ms: samples.into_iter().map(ms).collect(),
    })
}
