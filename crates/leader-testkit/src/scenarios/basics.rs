//! Mutual exclusion and liveness: concurrent start, incumbent stability, restart, graceful
//! handover, duplicate participant ids, exclusive `run_as_leader` work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use leader_core::{ChangeKind, ChangeReason};
use tokio::time::Instant;

use super::{first_leader, follows, lead_within, next_where, start_all, stop_all, Ctx};
use crate::{ensure, fail, fmt_duration, FencedResource, Provider, ScenarioResult, TenureRecorder};

/// Guarantee 1, (b) 1: 16 candidates started at once (each on its own store handle) elect exactly
/// one leader; during one lease no second leader appears, the leader keeps its one tenure, and
/// every follower's `current_leader()` is either unknown or the real leader.
pub async fn concurrent_start(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "concurrent_start").await?;
    let rec = TenureRecorder::new();
    let mut all = Vec::new();
    for i in 0..16 {
        let e = ctx.participant(&format!("c{i:02}")).await?;
        rec.track(&e);
        all.push(e);
    }
    let result = async {
        start_all(&all).await?;
        let (w, _) = first_leader(&all, ctx.start_bound()).await?;
        // One lease: every candidate has tried again several times by then.
        tokio::time::sleep(ctx.lease()).await;
        let leaders: Vec<_> = all.iter().filter(|e| e.is_leader()).map(|e| e.participant_id().to_owned()).collect();
        ensure!(leaders.len() == 1, "expected exactly one leader after one lease, saw {leaders:?}");
        ensure!(all[w].is_leader(), "the first leader {} lost its lease without any fault", all[w].participant_id());
        for e in &all {
            if let Some(h) = e.current_leader() {
                ensure!(
                    h.instance_id == all[w].instance_id(),
                    "{} reports {} as leader, but {} leads",
                    e.participant_id(),
                    h.participant_id,
                    all[w].participant_id()
                );
            }
        }
        rec.check()?;
        let n = rec.tenures().len();
        ensure!(n == 1, "expected one tenure under a stable leader, saw {n}");
        Ok(())
    }
    .await;
    stop_all(&all).await;
    result?;
    rec.check()
}

/// (b) 2: A leads; B starts. For three leases B never leads **and** A never loses (a provider
/// whose leases silently lapse would let B in).
pub async fn incumbent_stability(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "incumbent_stability").await?;
    let rec = TenureRecorder::new();
    let a = ctx.participant("a").await?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        tokio::time::sleep(ctx.lease() * 3).await;
        ensure!(a.is_leader(), "the incumbent lost its lease without any fault");
        ensure!(!b.is_leader(), "the challenger leads");
        let token = a.leadership().map(|l| l.token());
        ensure!(token == Some(la.token()), "the incumbent's token changed from {} to {token:?}", la.token());
        rec.check()?;
        let tenures = rec.tenures();
        ensure!(
            tenures.len() == 1 && tenures[0].ended.is_none(),
            "expected one open tenure of the incumbent, saw {tenures:?}"
        );
        Ok(())
    }
    .await;
    stop_all(&[a, b]).await;
    result
}

/// (b) 3: start → leader; stop → not leader, `Lost` (reason `Stopped`), nobody holds the lease;
/// start again → leader again with a greater token.
pub async fn restart_after_stop(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "restart_after_stop").await?;
    let store = ctx.store().await?;
    let a = ctx.election(store.clone(), "a")?;
    let mut changes = a.changes();
    let first = next_where(&mut changes, ctx.margin(), "the Subscribed change", |_| true).await?;
    ensure!(first.reason == ChangeReason::Subscribed, "first change is {:?}, not Subscribed", first.reason);
    a.start().await?;
    let l1 = lead_within(&a, ctx.start_bound()).await?;
    let acq = next_where(&mut changes, ctx.margin(), "Acquired", |c| c.kind != ChangeKind::LeaderChanged).await?;
    ensure!(
        acq.kind == ChangeKind::Acquired && acq.token() == Some(l1.token()),
        "expected Acquired with token {}, got {acq:?}",
        l1.token()
    );
    a.stop().await?;
    ensure!(!a.is_leader(), "is_leader() is true after stop()");
    ensure!(a.leadership().is_none(), "leadership() is Some after stop()");
    let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind != ChangeKind::LeaderChanged).await?;
    ensure!(
        lost.kind == ChangeKind::Lost && lost.reason == ChangeReason::Stopped,
        "expected Lost(Stopped), got {lost:?}"
    );
    let holder = super::call(ctx.margin(), "current()", store.current(&ctx.name)).await?;
    ensure!(holder.is_none(), "after stop() the store still shows a holder: {holder:?}");
    // stop() ends the streams taken before it, after their Lost; one taken now follows the next run.
    let end = tokio::time::timeout(ctx.margin(), changes.next()).await;
    ensure!(matches!(end, Ok(None)), "the stream taken before stop() did not end after its Lost: {end:?}");
    let mut changes = a.changes();
    a.start().await?;
    let l2 = lead_within(&a, ctx.start_bound()).await?;
    ensure!(l2.token() > l1.token(), "re-acquired with token {} after token {}", l2.token(), l1.token());
    let acq = next_where(&mut changes, ctx.margin(), "the second Acquired", |c| {
        c.kind != ChangeKind::LeaderChanged && c.reason != ChangeReason::Subscribed
    })
    .await?;
    ensure!(
        acq.kind == ChangeKind::Acquired && acq.token() == Some(l2.token()),
        "expected Acquired with token {}, got {acq:?}",
        l2.token()
    );
    a.stop().await?;
    Ok(())
}

/// Guarantee 5, (b) 7: A leads, B follows; A stops. B leads within 2 s where the store pushes
/// changes (within the crash bound where it polls), with a greater token and no overlap.
pub async fn graceful_release_takeover(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "graceful_release_takeover").await?;
    let rec = TenureRecorder::new();
    let a = ctx.participant("a").await?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        let t0 = Instant::now();
        a.stop().await?;
        let bound = ctx.release_bound();
        let lb = lead_within(&b, bound).await?;
        let took = t0.elapsed();
        ensure!(lb.token() > la.token(), "successor token {} is not greater than {}", lb.token(), la.token());
        crate::harness::note(format!(
            "leader-testkit: graceful_release_takeover on {}: takeover {}",
            ctx.provider.name(),
            fmt_duration(took)
        ));
        rec.check()
    }
    .await;
    stop_all(&[a, b]).await;
    result
}

/// Guarantee 5 for `release()` (capability `push_notifications`): A leads, B follows; A releases
/// (`Lost`, reason `Released`) and abstains; B leads within 2 s. Then B releases, and A, whose
/// abstention ended when B led, takes over. Skipped on stores without push: there a follower wakes
/// at the released lease's old expiry, the moment the releaser's one-lease abstention ends, and
/// either may win (reported as a core issue: the abstention should outlast the crash bound).
pub async fn release_hands_over(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "release_hands_over").await?;
    if !ctx.caps.push_notifications {
        return ctx.skip(
            "needs push_notifications: a polling follower wakes at the old lease's expiry, when the releaser's \
             abstention ends too, so release() does not reliably hand over",
        );
    }
    let rec = TenureRecorder::new();
    let a = ctx.participant("a").await?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let mut changes = a.changes();
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        a.release().await?;
        ensure!(!a.is_leader(), "is_leader() is true after release()");
        let lost = next_where(&mut changes, ctx.margin(), "Lost", |c| c.kind == ChangeKind::Lost).await?;
        ensure!(lost.reason == ChangeReason::Released, "Lost reason {:?}, expected Released", lost.reason);
        let lb = lead_within(&b, ctx.release_bound()).await?;
        ensure!(lb.token() > la.token(), "token {} after {}", lb.token(), la.token());
        follows(&a, &b, ctx.takeover_bound()).await?;
        b.release().await?;
        let la2 = lead_within(&a, ctx.release_bound())
            .await
            .map_err(|e| e.context("the first releaser, once another led"))?;
        ensure!(la2.token() > lb.token(), "token {} after {}", la2.token(), lb.token());
        rec.check()
    }
    .await;
    stop_all(&[a, b]).await;
    result
}

/// (b) 30, provider notes: two `Election`s given the same participant id are two participants
/// (different instance ids): only one leads, and the other takes over when it stops.
pub async fn shared_participant_id(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "shared_participant_id").await?;
    let rec = TenureRecorder::new();
    let x = ctx.participant("same-id").await?;
    let y = ctx.participant("same-id").await?;
    ensure!(x.instance_id() != y.instance_id(), "two Elections share an instance id");
    rec.track(&x);
    rec.track(&y);
    let all = [x, y];
    let result = async {
        start_all(&all).await?;
        let (w, lw) = first_leader(&all, ctx.start_bound()).await?;
        let other = &all[1 - w];
        follows(other, &all[w], ctx.takeover_bound()).await?;
        ensure!(!other.is_leader(), "both participants named \"same-id\" lead");
        all[w].stop().await?;
        let lo = lead_within(other, ctx.release_bound()).await?;
        ensure!(lo.token() > lw.token(), "token {} after {}", lo.token(), lw.token());
        rec.check()
    }
    .await;
    stop_all(&all).await;
    result
}

/// Guarantee 1 for work: four participants each run `run_as_leader` work once; never two works at
/// once, every work's fenced write is accepted (tokens grow), each release hands over.
pub async fn run_as_leader_exclusive(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "run_as_leader_exclusive").await?;
    let rec = TenureRecorder::new();
    let mut all = Vec::new();
    for i in 0..4 {
        let e = ctx.participant(&format!("w{i}")).await?;
        rec.track(&e);
        all.push(e);
    }
    let inflight = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let fenced = Arc::new(FencedResource::new());
    let hold = ctx.options.retry_interval;
    let runs = all.iter().map(|e| {
        let (inflight, overlaps, fenced) = (inflight.clone(), overlaps.clone(), fenced.clone());
        let who = e.participant_id().to_owned();
        async move {
            let r = e
                .run_as_leader(move |l| async move {
                    if inflight.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let write = fenced.write(l.token(), who.clone());
                    tokio::time::sleep(hold).await;
                    let valid = l.is_valid();
                    inflight.fetch_sub(1, Ordering::SeqCst);
                    (write, valid)
                })
                .await;
            // Done: leave the election, or this participant would campaign again (it released,
            // and abstains only until another participant leads).
            let _ = e.stop().await;
            r
        }
    });
    let limit = ctx.release_bound() * 4 + ctx.takeover_bound();
    let outcome =
        crate::within(limit, "four run_as_leader works, one after another", futures::future::join_all(runs)).await;
    stop_all(&all).await;
    let outcome = outcome?;
    for (i, r) in outcome.into_iter().enumerate() {
        match r {
            Ok((Ok(()), true)) => {}
            Ok((Ok(()), false)) => fail!("w{i}'s leadership ended while its work ran, without any fault"),
            Ok((Err(stale), _)) => fail!("w{i}'s fenced write was refused: {stale}"),
            Err(e) => fail!("w{i}'s run_as_leader failed: {e}"),
        }
    }
    let n = overlaps.load(Ordering::SeqCst);
    ensure!(n == 0, "{n} works started while another ran");
    ensure!(fenced.writes().len() == 4, "expected 4 fenced writes, saw {:?}", fenced.writes());
    let tenures = rec.tenures();
    ensure!(tenures.len() >= 4, "expected at least 4 tenures, saw {}", tenures.len());
    rec.check()
}
