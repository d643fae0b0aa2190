//! Guarantee 1 for the user's work, on every way a tenure ends: the leader runs `run_as_leader`
//! work that ignores `lost()`, its tenure ends (stop, release, health step-down, deadline, or the
//! store taking the lease away), and the successor's work must not start before the old work
//! ended. Recorded with [`WorkRecorder`], at the level of the work, not the lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leader_core::{ChangeKind, ChangeReason, Election, ErrorKind};
use tokio::time::Instant;

use super::{follows, lead_within, next_where, stop_all, Ctx};
use crate::{ensure, fmt_duration, within, Provider, ScenarioResult, WorkRecorder};

/// How the leader's tenure is ended in [`work_handover`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Stop,
    Release,
    Health,
    Deadline,
}

/// Guarantee 1 for work: `stop()` while stubborn work runs. The lease is released only after the
/// work ended (after at most `lease_duration - renew_deadline - drift_allowance`), so the
/// follower's work starts after it. Prints the time from `stop()` to the end of the old work and
/// to the successor's acquisition.
pub async fn work_handover_on_stop(provider: Arc<dyn Provider>) -> ScenarioResult {
    work_handover(provider, "work_handover_on_stop", End::Stop).await
}

/// Guarantee 1 for work: the same with `release()`.
pub async fn work_handover_on_release(provider: Arc<dyn Provider>) -> ScenarioResult {
    work_handover(provider, "work_handover_on_release", End::Release).await
}

/// Guarantee 1 for work: the same with a health step-down.
pub async fn work_handover_on_health(provider: Arc<dyn Provider>) -> ScenarioResult {
    work_handover(provider, "work_handover_on_health", End::Health).await
}

/// Guarantees 1 and 3 for work: the leader is cut off from the store; its work is dropped at the
/// deadline plus `lease_duration - renew_deadline - drift_allowance`, before the lease can expire
/// in the store and the follower's work start.
pub async fn work_handover_on_deadline(provider: Arc<dyn Provider>) -> ScenarioResult {
    work_handover(provider, "work_handover_on_deadline", End::Deadline).await
}

async fn work_handover(provider: Arc<dyn Provider>, scenario: &'static str, how: End) -> ScenarioResult {
    let ctx = Ctx::new(provider, scenario).await?;
    let work = WorkRecorder::new();
    let healthy = Arc::new(AtomicBool::new(true));
    let (a_store, cut) = match how {
        End::Deadline => {
            let (store, cut) = ctx.cuttable_store().await?;
            (store, Some(cut))
        }
        _ => (ctx.store().await?, None),
    };
    let a = match how {
        End::Health => {
            let flag = healthy.clone();
            Election::builder(a_store, ctx.name.clone())
                .participant_id("a")
                .options(ctx.options.clone())
                .health_check(move || {
                    let flag = flag.clone();
                    async move { flag.load(Ordering::SeqCst) }
                })
                .build()?
        }
        _ => ctx.election(a_store, "a")?,
    };
    let b = ctx.participant("b").await?;
    let long = ctx.lease() * 20;
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        let a_run = work.spawn_stubborn(&a, long);
        work.started("a", ctx.margin()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        let b_run = work.spawn_stubborn(&b, long);
        match how {
            End::Stop => {
                a.stop().await?;
                let a_span = work.spans().into_iter().find(|s| s.participant == "a");
                ensure!(a_span.is_some_and(|s| s.ended.is_some()), "stop() returned while a's work still ran");
            }
            End::Release => a.release().await?,
            End::Health => {
                healthy.store(false, Ordering::SeqCst);
                within(ctx.options.renew_interval + ctx.margin(), "a stepping down when unhealthy", la.lost()).await?;
            }
            End::Deadline => {
                if let Some(cut) = &cut {
                    cut.cut();
                }
                within(ctx.options.renew_deadline + ctx.margin(), "a stepping down when cut off", la.lost()).await?;
            }
        }
        let bound = match how {
            End::Deadline => ctx.takeover_bound(),
            _ => ctx.release_bound() + ctx.options.work_grace(),
        };
        let b_span = work.started("b", bound).await?;
        let a_span = work
            .spans()
            .into_iter()
            .find(|s| s.participant == "a")
            .ok_or_else(|| crate::ScenarioFailure::new("a's work was not recorded"))?;
        let a_end = a_span.ended.ok_or_else(|| crate::ScenarioFailure::new("a's work still runs after b leads"))?;
        work.check()?;
        let a_result = within(ctx.margin(), "a's run_as_leader returning", a_run).await?;
        ensure!(
            matches!(&a_result, Ok(Err(e)) if e.kind() == ErrorKind::LeadershipLost),
            "a's run_as_leader of stubborn work returned {a_result:?}, expected LeadershipLost"
        );
        // When the tenure ended (its deadline, or the moment it was ended).
        let from = la.valid_until();
        crate::harness::note(format!(
            "leader-testkit: {scenario} on {}: a's work ended {} after the tenure ended ({how:?}); b acquired {} and b's work started {} after that",
            ctx.provider.name(),
            fmt_duration(a_end.saturating_duration_since(from)),
            fmt_duration(b.leadership().map_or(b_span.started, |l| l.started()).saturating_duration_since(from)),
            fmt_duration(b_span.started.saturating_duration_since(from)),
        ));
        b_run.abort();
        Ok(())
    }
    .await;
    if let Some(cut) = &cut {
        cut.heal();
    }
    stop_all(&[a, b]).await;
    result
}

/// Guarantee 1 for work: the store takes the lease away behind the leader's back
/// ([`Provider::break_lease`]); the leader's next renew is answered "not yours", and its work is
/// dropped at once (someone else may already lead), with no grace.
pub async fn work_dropped_when_lease_broken(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "work_dropped_when_lease_broken").await?;
    let work = WorkRecorder::new();
    let a = ctx.participant("a").await?;
    let mut changes = a.changes();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        let a_run = work.spawn_stubborn(&a, ctx.lease() * 20);
        work.started("a", ctx.margin()).await?;
        match ctx.provider.break_lease(&ctx.name).await {
            None => return ctx.skip("the provider cannot take a lease away behind its holder (Provider::break_lease)"),
            Some(r) => r.map_err(|e| crate::ScenarioFailure::from(e).context("breaking the lease"))?,
        }
        within(ctx.options.renew_deadline + ctx.margin(), "a noticing its lease is gone", la.lost()).await?;
        let lost_at = Instant::now();
        let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind == ChangeKind::Lost).await?;
        ensure!(
            lost.reason == ChangeReason::Expired,
            "a's Lost reason is {:?}, expected Expired (a renew answered \"not yours\")",
            lost.reason
        );
        work.wait_for(ctx.margin(), |s| s.iter().all(|s| s.ended.is_some())).await?;
        let ended = work.spans().first().and_then(|s| s.ended).unwrap_or(lost_at);
        let after = ended.saturating_duration_since(lost_at);
        let bound = (ctx.options.work_grace() / 2).min(Duration::from_millis(250));
        ensure!(
            after <= bound,
            "a's work ran {} after the store said the lease was gone (bound {}); it must be dropped at once",
            fmt_duration(after),
            fmt_duration(bound)
        );
        let a_result = within(ctx.margin(), "a's run_as_leader returning", a_run).await?;
        ensure!(
            matches!(&a_result, Ok(Err(e)) if e.kind() == ErrorKind::LeadershipLost),
            "a's run_as_leader returned {a_result:?}, expected LeadershipLost"
        );
        Ok(())
    }
    .await;
    stop_all(&[a]).await;
    result
}
