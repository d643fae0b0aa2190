//! Crashes, outages, partitions, slow and hung stores, ambiguous calls, cancellation, and the
//! local deadline.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use leader_core::layer::Op;
use leader_core::{ChangeKind, ChangeReason, ErrorKind};
use tokio::time::Instant;

use super::{call, elapsed_since, first_leader, follows, lead_within, next_where, start_all, stop_all, Ctx};
use crate::{ensure, fail, fmt_duration, FaultControl, FencedResource, Provider, ScenarioResult, TenureRecorder};

/// The instant the leader's last successful acquire/renew was sent, from its local deadline.
fn last_send(l: &leader_core::Leadership, ctx: &Ctx) -> Instant {
    l.valid_until() - ctx.options.renew_deadline
}

/// Guarantee 6, (b) 6: the leader crashes (its `Election` and its own store handle dropped, no
/// release). A follower leads within the crash bound (`Capabilities::crash_bound`) plus margin,
/// and not before the dead leader's lease could have expired.
pub async fn crash_takeover(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "crash_takeover").await?;
    let rec = TenureRecorder::new();
    let sa = ctx.store().await?;
    let a = ctx.election(sa.clone(), "a")?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let la = lead_within(&a, ctx.start_bound()).await?;
    b.start().await?;
    follows(&b, &a, ctx.takeover_bound()).await?;
    let earliest = last_send(&la, &ctx) + ctx.lease();
    drop((a, sa, la));
    let crashed = Instant::now();
    let result = async {
        lead_within(&b, ctx.takeover_bound()).await.map_err(|e| e.context("after the leader crashed"))?;
        let tenures = rec.tenures();
        let tb = tenures.iter().find(|t| t.participant_id == "b").map(|t| t.acquired).unwrap_or_else(Instant::now);
        ensure!(
            ctx.provider.frees_lease_when_holder_exits() || tb + ctx.tolerance() >= earliest,
            "the follower led {} before the crashed leader's lease could have expired",
            fmt_duration(earliest - tb)
        );
        crate::harness::note(format!(
            "leader-testkit: crash_takeover on {}: takeover {} after the crash",
            ctx.provider.name(),
            fmt_duration(tb - crashed)
        ));
        rec.check()
    }
    .await;
    stop_all(&[b]).await;
    result
}

/// (b) 31: the leader crashes and a brand-new participant (new id, new handle) starts later; it
/// leads within the crash bound of the crash, not a full lease after it first looked.
pub async fn fresh_fleet_after_crash(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "fresh_fleet_after_crash").await?;
    let sa = ctx.store().await?;
    let a = ctx.election(sa.clone(), "old")?;
    let la = lead_within(&a, ctx.start_bound()).await?;
    let earliest = last_send(&la, &ctx) + ctx.lease();
    drop((a, sa, la));
    let crashed = Instant::now();
    tokio::time::sleep(ctx.lease() * 3 / 4).await;
    let c = ctx.participant("new").await?;
    // A new participant that waited a full lease from its own first look would need
    // 1.75 leases; the store's expiry allows one lease (times the reap multiplier) from the crash.
    let bound = ctx.caps.crash_bound(&ctx.options) + ctx.lease() / 2;
    let result = async {
        let waited = crashed.elapsed();
        lead_within(&c, bound.saturating_sub(waited)).await.map_err(|e| e.context("the new participant"))?;
        ensure!(
            ctx.provider.frees_lease_when_holder_exits() || Instant::now() + ctx.tolerance() >= earliest,
            "the new participant led before the old lease could have expired"
        );
        Ok(())
    }
    .await;
    c.stop().await?;
    result
}

/// (b) 9: a release whose reply is lost (the store applied it) hands over at once; a release that
/// never reaches the store (hung, then the process dies) leaves a lease that expires within the
/// crash bound. No overlap either way.
pub async fn crash_during_release(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "crash_during_release").await?;
    for (case, lose_reply) in [("reply lost", true), ("never sent", false)] {
        let rec = TenureRecorder::new();
        let control = FaultControl::new();
        let sa = ctx.faulty_store(&control).await?;
        let name = format!("{}.{}", ctx.name, if lose_reply { "lost" } else { "hung" });
        let a = ctx.election_on(sa.clone(), &name, "a", ctx.options.clone())?;
        let b = ctx.election_on(ctx.store().await?, &name, "b", ctx.options.clone())?;
        rec.track(&a);
        rec.track(&b);
        lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        if lose_reply {
            control.lose_replies(Op::Release, 1);
        } else {
            control.hang(&[Op::Release, Op::Withdraw, Op::Current]);
        }
        let t0 = Instant::now();
        // stop() ends the tenure locally first; its release then fails or times out.
        let _ = a.stop().await;
        drop((a, sa));
        let bound = if lose_reply { ctx.release_bound() } else { ctx.takeover_bound() };
        let result = lead_within(&b, bound).await.map_err(|e| e.context(format!("release {case}")));
        control.release_hang();
        b.stop().await?;
        result?;
        rec.check().map_err(|e| e.context(format!("release {case}")))?;
        crate::harness::note(format!(
            "leader-testkit: crash_during_release ({case}) on {}: takeover {}",
            ctx.provider.name(),
            elapsed_since(t0)
        ));
    }
    Ok(())
}

/// Guarantee 7: the store goes down for everyone. The leader steps down by its local deadline
/// (`Lost`, reason `StoreUnavailable`); nobody leads during the outage; when the store returns a
/// leader is elected again. No panic, no overlap.
pub async fn store_unavailable_steps_down(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "store_unavailable_steps_down").await?;
    let rec = TenureRecorder::new();
    let control = FaultControl::new();
    let a = ctx.election(ctx.faulty_store(&control).await?, "a")?;
    let b = ctx.election(ctx.faulty_store(&control).await?, "b")?;
    rec.track(&a);
    rec.track(&b);
    let mut changes = a.changes();
    let all = [a, b];
    let result = async {
        let la = lead_within(&all[0], ctx.start_bound()).await?;
        all[1].start().await?;
        follows(&all[1], &all[0], ctx.takeover_bound()).await?;
        control.set_unavailable(true);
        crate::within(ctx.options.renew_deadline + ctx.margin(), "the leader stepping down", la.lost()).await?;
        let stepped = Instant::now();
        ensure!(!all[0].is_leader(), "is_leader() is true after lost() fired");
        ensure!(
            stepped <= la.valid_until() + ctx.deadline_slack(),
            "stepped down {} after its deadline",
            fmt_duration(stepped - la.valid_until())
        );
        let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind == ChangeKind::Lost).await?;
        ensure!(
            lost.reason == ChangeReason::StoreUnavailable,
            "Lost reason is {:?}, expected StoreUnavailable",
            lost.reason
        );
        // The outage lasts one lease; nobody may lead meanwhile.
        tokio::time::sleep(ctx.lease()).await;
        ensure!(all.iter().all(|e| !e.is_leader()), "someone leads while the store is down");
        control.set_unavailable(false);
        first_leader(&all, ctx.takeover_bound()).await.map_err(|e| e.context("after the store returned"))?;
        rec.check()
    }
    .await;
    control.set_unavailable(false);
    stop_all(&all).await;
    result
}

/// (b) 4: the store is down when candidates start and comes back after two leases; candidates
/// kept retrying, and one leads soon after.
pub async fn store_unavailable_at_startup(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "store_unavailable_at_startup").await?;
    let rec = TenureRecorder::new();
    let control = FaultControl::new();
    control.set_unavailable(true);
    let mut all = Vec::new();
    for p in ["a", "b", "c"] {
        let e = ctx.election(ctx.faulty_store(&control).await?, p)?;
        rec.track(&e);
        all.push(e);
    }
    let result = async {
        start_all(&all).await?;
        tokio::time::sleep(ctx.lease() * 2).await;
        ensure!(rec.tenures().is_empty(), "someone led while the store was down: {:?}", rec.tenures());
        control.set_unavailable(false);
        first_leader(&all, ctx.start_bound() + ctx.options.retry_interval * 2)
            .await
            .map_err(|e| e.context("after the store came up"))?;
        rec.check()
    }
    .await;
    stop_all(&all).await;
    result
}

/// Guarantee 3, (b) 10: the leader's store calls hang (a paused process, a stuck connection). It is
/// not leader past its local deadline although its renewals never return; a follower takes over
/// with a greater token; the old leader's write with its old token is refused by a fenced
/// resource; after the hang ends the old leader does not think it leads.
pub async fn paused_leader_is_fenced(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "paused_leader_is_fenced").await?;
    let rec = TenureRecorder::new();
    let (sa, cut) = ctx.cuttable_store().await?;
    let a = ctx.election(sa, "a")?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let fenced = FencedResource::new();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        fenced.write(la.token(), "a: before the pause").map_err(|e| crate::ScenarioFailure::new(e.to_string()))?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        cut.pause();
        crate::within(ctx.options.renew_deadline + ctx.margin(), "the paused leader's deadline", la.lost()).await?;
        ensure!(
            Instant::now() <= la.valid_until() + ctx.deadline_slack(),
            "lost() fired {} after the deadline",
            fmt_duration(Instant::now() - la.valid_until())
        );
        ensure!(!a.is_leader(), "the paused leader's is_leader() is true past its deadline");
        let lb = lead_within(&b, ctx.takeover_bound()).await?;
        ensure!(lb.token() > la.token(), "successor token {} is not greater than {}", lb.token(), la.token());
        fenced
            .write(lb.token(), "b")
            .map_err(|e| crate::ScenarioFailure::new(format!("the new leader's write was refused: {e}")))?;
        ensure!(
            fenced.write(la.token(), "a: after the pause").is_err(),
            "the deposed leader's write with its old token was accepted"
        );
        cut.heal();
        // Give the old leader's driver one renew interval to act on the hung calls' outcome.
        tokio::time::sleep(ctx.options.renew_interval).await;
        ensure!(!a.is_leader(), "the old leader leads again while the new one holds the lease");
        rec.check()
    }
    .await;
    cut.heal();
    stop_all(&[a, b]).await;
    result
}

/// (b) 11 and (b) 5: the leader is partitioned from the store (black-holed through the fault
/// proxy where the provider connects through one, else every call fails). It steps down by its
/// deadline; the follower leads only after the old lease expired; after the partition heals and
/// the follower stops, the old leader campaigns again by itself and leads with a new, greater token.
pub async fn partitioned_leader_recampaigns(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "partitioned_leader_recampaigns").await?;
    let rec = TenureRecorder::new();
    let (sa, cut) = ctx.cuttable_store().await?;
    let a = ctx.election(sa, "a")?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let mut changes = a.changes();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        cut.cut();
        crate::within(ctx.options.renew_deadline + ctx.margin(), "the partitioned leader stepping down", la.lost())
            .await?;
        ensure!(
            Instant::now() <= la.valid_until() + ctx.deadline_slack(),
            "stepped down {} after the deadline",
            fmt_duration(Instant::now() - la.valid_until())
        );
        let lb = lead_within(&b, ctx.takeover_bound()).await?;
        let tb =
            rec.tenures().iter().find(|t| t.participant_id == "b").map(|t| t.acquired).unwrap_or_else(Instant::now);
        let earliest = last_send(&la, &ctx) + ctx.lease();
        ensure!(
            tb + ctx.tolerance() >= earliest,
            "the follower led {} before the old lease could have expired",
            fmt_duration(earliest - tb)
        );
        cut.heal();
        b.stop().await?;
        let la2 = lead_within(&a, ctx.takeover_bound() + ctx.margin())
            .await
            .map_err(|e| e.context("after the partition healed"))?;
        ensure!(
            la2.token() > lb.token(),
            "re-acquired with token {} after the successor's {}",
            la2.token(),
            lb.token()
        );
        let mut seen = super::collect_until(&mut changes, ctx.margin(), "Acquired after the heal", |c| {
            c.kind == ChangeKind::Acquired && c.token() == Some(la2.token())
        })
        .await?;
        seen.extend(super::drain(&mut changes));
        let acquisitions = super::check_alternation("the partitioned leader", &seen)?;
        ensure!(acquisitions == 2, "expected Acquired, Lost, Acquired; saw {acquisitions} acquisitions");
        rec.check()
    }
    .await;
    cut.heal();
    stop_all(&[a, b]).await;
    result
}

/// (b) 12, below the timeout: every call of the leader's handle is slowed to 40% of
/// `operation_timeout`. It keeps leading for two leases; the follower never leads.
pub async fn slow_store_below_timeout(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "slow_store_below_timeout").await?;
    let rec = TenureRecorder::new();
    let control = FaultControl::new();
    let a = ctx.election(ctx.faulty_store(&control).await?, "a")?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        control.set_latency(Some(ctx.options.operation_timeout * 2 / 5));
        tokio::time::sleep(ctx.lease() * 2).await;
        ensure!(a.is_leader(), "a leader whose store answers within the timeout lost its lease");
        ensure!(a.leadership().map(|l| l.token()) == Some(la.token()), "the leader's tenure changed");
        ensure!(rec.tenures().len() == 1, "expected one tenure, saw {:?}", rec.tenures());
        rec.check()
    }
    .await;
    control.set_latency(None);
    stop_all(&[a, b]).await;
    result
}

/// (b) 12 above the timeout, guarantee 3 for `run_as_leader`: the leader's calls take longer than
/// `renew_deadline`. Its calls time out; it steps down by its deadline (`Lost`, reason
/// `StoreUnavailable`); its `run_as_leader` work that ignores `lost()` is cancelled
/// `lease_duration - renew_deadline - drift_allowance` after the deadline with `LeadershipLost`; no overlap; once the
/// link heals and the old leader stops, the follower takes over.
pub async fn slow_store_above_timeout(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "slow_store_above_timeout").await?;
    let rec = TenureRecorder::new();
    let (sa, cut) = ctx.cuttable_store().await?;
    let a = ctx.election(sa, "a")?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let mut changes = a.changes();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let worker = a.clone();
        let work = tokio::spawn(async move {
            let r = worker
                .run_as_leader(|l| async move {
                    let _ = tx.send(l);
                    std::future::pending::<()>().await
                })
                .await;
            (r, Instant::now())
        });
        let lw = crate::within(ctx.margin(), "run_as_leader starting its work", rx)
            .await?
            .map_err(|_| crate::ScenarioFailure::new("run_as_leader ended before running the work"))?;
        ensure!(lw.token() == la.token(), "run_as_leader ran under token {}, the tenure is {}", lw.token(), la.token());
        cut.slow(ctx.options.renew_deadline);
        crate::within(ctx.options.renew_deadline + ctx.margin(), "the slow leader stepping down", la.lost()).await?;
        ensure!(!a.is_leader(), "is_leader() true after lost()");
        ensure!(Instant::now() <= la.valid_until() + ctx.deadline_slack(), "stepped down after the deadline");
        let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind == ChangeKind::Lost).await?;
        ensure!(
            lost.reason == ChangeReason::StoreUnavailable,
            "Lost reason {:?}, expected StoreUnavailable (timeouts)",
            lost.reason
        );
        // The work's grace after the deadline: lease_duration - renew_deadline - drift_allowance.
        let grace = ctx.options.work_grace();
        let (r, ended) = crate::within(grace + ctx.margin(), "run_as_leader giving up on the work", work)
            .await?
            .map_err(|e| crate::ScenarioFailure::new(format!("the run_as_leader task panicked: {e}")))?;
        match r {
            Err(e) if e.kind() == ErrorKind::LeadershipLost => {}
            other => fail!("run_as_leader with stuck work must end with LeadershipLost, got {other:?}"),
        }
        let cancel_at = la.valid_until() + grace;
        ensure!(
            ended + ctx.tolerance() >= cancel_at,
            "the work was cancelled {} before its grace ended",
            fmt_duration(cancel_at - ended)
        );
        ensure!(
            ended <= cancel_at + ctx.deadline_slack(),
            "the work was cancelled {} after its grace ended",
            fmt_duration(ended - cancel_at)
        );
        // Requests a slow link delivers late may still be applied (through a proxy a timed-out
        // acquire can leave a lease the old leader does not know it has, refreshed by its later
        // retries): only once the link heals and the old leader stops is the follower sure to lead.
        cut.heal();
        // Right after the link heals, stop()'s release may itself time out while the client
        // reconnects; it still ends the tenure locally and the lease then expires, which the
        // takeover bound (the crash bound) allows for.
        if let Err(e) = a.stop().await {
            eprintln!("leader-testkit: slow_store_above_timeout: the old leader's release failed ({e}); waiting out its lease");
        }
        lead_within(&b, ctx.takeover_bound()).await?;
        rec.check()
    }
    .await;
    cut.heal();
    stop_all(&[a, b]).await;
    result
}

/// (b) 13: a renew is applied but its reply is lost. The leader's deadline does not move on the
/// unacknowledged renew; the next renew succeeds with the same token and no `Lost` in between.
pub async fn ambiguous_renew(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "ambiguous_renew").await?;
    let rec = TenureRecorder::new();
    let control = FaultControl::new();
    let a = ctx.election(ctx.faulty_store(&control).await?, "a")?;
    rec.track(&a);
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        let set_at = Instant::now();
        control.lose_replies(Op::Renew, 1);
        crate::within(
            ctx.options.renew_interval + ctx.margin(),
            "a renew with a lost reply",
            control.wait_lost_replies(1),
        )
        .await?;
        let v1 = la.valid_until();
        ensure!(
            v1 <= set_at + ctx.options.renew_deadline,
            "the deadline moved on a renew whose reply was lost ({} past the last acknowledged one)",
            fmt_duration(v1 - (set_at + ctx.options.renew_deadline))
        );
        ensure!(a.is_leader(), "one lost renew reply ended the tenure before its deadline");
        // The retry (within retry_interval, before the deadline) reconciles.
        let moved = async {
            let mut step = Duration::from_millis(10);
            while la.valid_until() <= v1 && la.is_valid() {
                tokio::time::sleep(step).await;
                step = (step * 2).min(Duration::from_millis(50));
            }
        };
        crate::within(ctx.options.renew_deadline + ctx.margin(), "the next renew", moved).await?;
        ensure!(la.is_valid() && a.is_leader(), "the tenure ended instead of being renewed after a lost reply");
        ensure!(a.leadership().map(|l| l.token()) == Some(la.token()), "the token changed");
        ensure!(rec.tenures().len() == 1, "expected one tenure, saw {:?}", rec.tenures());
        rec.check()
    }
    .await;
    a.stop().await?;
    result
}

/// (b) 14: an acquire is applied but its reply is lost. The participant does not think it leads;
/// the store shows it as holder; its next `try_acquire` recognises the lease as its own (same
/// token) instead of leaking it until the TTL; others are refused meanwhile.
pub async fn ambiguous_acquire(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "ambiguous_acquire").await?;
    let control = FaultControl::new();
    let store = ctx.store().await?;
    let a = ctx.election(ctx.faulty_store(&control).await?, "a")?;
    let b = ctx.election(ctx.store().await?, "b")?;
    control.lose_replies(Op::TryAcquire, 1);
    ensure!(a.try_acquire().await.is_err(), "try_acquire with a lost reply did not fail");
    ensure!(!a.is_leader(), "leader after a failed try_acquire");
    let holder = call(ctx.margin(), "current()", store.current(&ctx.name)).await?;
    let Some(h) = holder else { fail!("the store does not show the applied acquire") };
    ensure!(h.instance_id == a.instance_id(), "the store shows {} as holder, expected a", h.participant_id);
    ensure!(!b.try_acquire().await?, "another participant acquired a lease held by an ambiguous acquire");
    ensure!(a.try_acquire().await?, "the retried acquire did not recognise the lease as ours");
    let token = a.leadership().map(|l| l.token());
    ensure!(token == Some(h.token), "the retried acquire got token {token:?}, the store had {}", h.token);
    a.release().await?;
    ensure!(b.try_acquire().await?, "after the release another participant cannot acquire");
    b.stop().await?;
    a.stop().await?;
    Ok(())
}

/// (b) 15: `Election::try_acquire` futures dropped at several points (before the first poll, after
/// one poll, while the request is in flight, while the reply is in flight) leak nothing: either
/// nobody holds the lease, or the store shows it held by that participant and its next
/// `try_acquire` recognises it (same token); after `stop()` nobody holds it.
pub async fn cancelled_try_acquire_leaks_nothing(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "cancelled_try_acquire_leaks_nothing").await?;
    let store = ctx.store().await?;
    let slow = ctx.options.operation_timeout / 2;
    for (i, cut) in ["before the first poll", "after one poll", "while the request is slow", "while the reply is slow"]
        .into_iter()
        .enumerate()
    {
        let control = FaultControl::new();
        let e = ctx.election(ctx.faulty_store(&control).await?, &format!("p{i}"))?;
        match i {
            0 => drop(e.try_acquire()),
            1 => {
                let mut fut = Box::pin(e.try_acquire());
                let _ = (&mut fut).now_or_never();
                drop(fut);
            }
            2 => {
                control.set_op_latency(Op::TryAcquire, Some(slow));
                let _ = tokio::time::timeout(slow / 2, e.try_acquire()).await;
                control.set_op_latency(Op::TryAcquire, None);
            }
            _ => {
                control.set_reply_latency(Op::TryAcquire, Some(slow));
                let _ = tokio::time::timeout(slow / 2, e.try_acquire()).await;
                control.set_reply_latency(Op::TryAcquire, None);
            }
        }
        // A request already sent may still be applied: wait out one operation timeout.
        tokio::time::sleep(ctx.options.operation_timeout).await;
        let holder = call(ctx.margin(), "current()", store.current(&ctx.name)).await?;
        match holder {
            None => {}
            Some(h) if h.instance_id == e.instance_id() => {
                ensure!(e.try_acquire().await?, "cancelled {cut}: the next try_acquire did not recognise our lease");
                let token = e.leadership().map(|l| l.token());
                ensure!(token == Some(h.token), "cancelled {cut}: token {token:?}, the store had {}", h.token);
            }
            Some(h) => fail!("cancelled {cut}: the lease is held by {} although only p{i} tried", h.participant_id),
        }
        e.stop().await?;
        let holder = call(ctx.margin(), "current()", store.current(&ctx.name)).await?;
        ensure!(holder.is_none(), "cancelled {cut}: after stop() the store still shows {holder:?}");
    }
    Ok(())
}

/// Guarantee 3, (b) 13/20: the local deadline counts from when the acquire or renew was *sent*:
/// a slow reply shortens the tenure rather than extending it.
pub async fn deadline_counts_from_send(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "deadline_counts_from_send").await?;
    let control = FaultControl::new();
    let a = ctx.election(ctx.faulty_store(&control).await?, "a")?;
    let slow = ctx.options.operation_timeout / 2;
    control.set_reply_latency(Op::TryAcquire, Some(slow));
    for what in ["acquire", "renew (manual try_acquire)"] {
        let before = Instant::now();
        ensure!(a.try_acquire().await?, "{what} failed on a free election");
        let after = Instant::now();
        let l = a.leadership().ok_or_else(|| crate::ScenarioFailure::new("no leadership after try_acquire"))?;
        let rd = ctx.options.renew_deadline;
        ensure!(l.valid_until() >= before + rd, "{what}: the deadline is earlier than the send time + renew_deadline");
        ensure!(
            l.valid_until() <= after - slow + rd,
            "{what}: the deadline counts from after the reply ({} too late)",
            fmt_duration(l.valid_until() - (after - slow + rd))
        );
    }
    control.set_reply_latency(Op::TryAcquire, None);
    a.stop().await?;
    Ok(())
}

/// (b) 17, zombie leader: renewals succeed but the work is hung; the user's health check
/// (`ElectionBuilder::health_check`) says so. The leader releases at once (`Lost`, reason
/// `Unhealthy`) within one renew interval, the follower takes over, and the unhealthy participant
/// does not campaign until its check passes again; then it takes over when the follower stops.
pub async fn zombie_leader_health(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "zombie_leader_health").await?;
    let rec = TenureRecorder::new();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let check = healthy.clone();
    let a = leader_core::Election::builder(ctx.store().await?, &ctx.name)
        .participant_id("zombie")
        .options(ctx.options.clone())
        .health_check(move || {
            let ok = check.load(std::sync::atomic::Ordering::SeqCst);
            async move { ok }
        })
        .build()
        .map_err(|e| crate::ScenarioFailure::from(e).context("building a participant with a health check"))?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let mut changes = a.changes();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        healthy.store(false, std::sync::atomic::Ordering::SeqCst);
        let bound = ctx.options.renew_interval + ctx.options.operation_timeout + ctx.margin();
        crate::within(bound, "the unhealthy leader stepping down", la.lost()).await?;
        ensure!(!a.is_leader(), "the unhealthy leader still leads");
        let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind == ChangeKind::Lost).await?;
        ensure!(lost.reason == ChangeReason::Unhealthy, "Lost reason {:?}, expected Unhealthy", lost.reason);
        let lb = lead_within(&b, ctx.release_bound()).await?;
        ensure!(lb.token() > la.token(), "token {} after {}", lb.token(), la.token());
        b.stop().await?;
        // Unhealthy: it must not campaign, though the lease is free for a while.
        tokio::time::sleep(ctx.options.retry_interval * 2).await;
        ensure!(!a.is_leader(), "an unhealthy participant campaigned and leads");
        healthy.store(true, std::sync::atomic::Ordering::SeqCst);
        let la2 = lead_within(&a, ctx.takeover_bound()).await.map_err(|e| e.context("after the check passed again"))?;
        ensure!(la2.token() > lb.token(), "token {} after {}", la2.token(), lb.token());
        rec.check()
    }
    .await;
    stop_all(&[a, b]).await;
    result
}
