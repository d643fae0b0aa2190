//! Many elections on one handle, many candidates on one election.

use std::sync::Arc;

use tokio::time::Instant;

use super::{first_leader, follows, lead_within, start_all, stop_all, Ctx};
use crate::{ensure, fmt_duration, OpCounter, Provider, ScenarioResult, TenureRecorder};

/// (b) 35: four elections whose leaders share one store handle (one connection or session),
/// followers on another. Churn in one election leaves the others' leaders untouched; killing the
/// shared handle's connection (proxy reset, or an outage through the fault layer) makes every one
/// of its leaders step down by its deadline, and the followers take over.
pub async fn elections_share_one_handle(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "elections_share_one_handle").await?;
    const K: usize = 4;
    let (shared, cut) = ctx.cuttable_store().await?;
    let other = ctx.store().await?;
    let mut leaders = Vec::new();
    let mut followers = Vec::new();
    let mut recs = Vec::new();
    for i in 0..K {
        let name = format!("{}.{i}", ctx.name);
        let a = ctx.election_on(shared.clone(), &name, &format!("a{i}"), ctx.options.clone())?;
        let b = ctx.election_on(other.clone(), &name, &format!("b{i}"), ctx.options.clone())?;
        let rec = TenureRecorder::new();
        rec.track(&a);
        rec.track(&b);
        leaders.push(a);
        followers.push(b);
        recs.push(rec);
    }
    let result = async {
        let mut tenures = Vec::new();
        for a in &leaders {
            tenures.push(lead_within(a, ctx.start_bound()).await?);
        }
        start_all(&followers).await?;
        for (a, b) in leaders.iter().zip(&followers) {
            follows(b, a, ctx.takeover_bound()).await?;
        }
        // Churn in election 0 only.
        leaders[0].stop().await?;
        lead_within(&followers[0], ctx.release_bound()).await?;
        followers[0].stop().await?;
        for (i, (a, l)) in leaders.iter().zip(&tenures).enumerate().skip(1) {
            ensure!(
                a.leadership().is_some_and(|now| now.token() == l.token()),
                "election {i}'s leader lost or changed its tenure during another election's churn"
            );
        }
        cut.kill();
        let t0 = Instant::now();
        // Each leader's step-down instant, awaited together (their deadlines differ).
        let stepped = futures::future::join_all(tenures.iter().skip(1).map(|l| async move {
            l.lost().await;
            Instant::now()
        }));
        let stepped =
            crate::within(ctx.options.renew_deadline + ctx.margin(), "every leader stepping down", stepped).await?;
        for (i, (l, at)) in tenures.iter().skip(1).zip(stepped).enumerate() {
            ensure!(
                at <= l.valid_until() + ctx.deadline_slack(),
                "leader {} stepped down {} after its deadline",
                i + 1,
                fmt_duration(at - l.valid_until())
            );
        }
        for (i, b) in followers.iter().enumerate().skip(1) {
            lead_within(b, ctx.takeover_bound().saturating_sub(t0.elapsed()) + ctx.margin())
                .await
                .map_err(|e| e.context(format!("election {i} after the shared handle died")))?;
        }
        for (i, rec) in recs.iter().enumerate() {
            rec.check().map_err(|e| e.context(format!("election {i}")))?;
        }
        Ok(())
    }
    .await;
    cut.heal();
    stop_all(&leaders).await;
    stop_all(&followers).await;
    result
}

/// (b) 36: sixteen followers (each on its own handle, all counted by one [`OpCounter`]) wait on a
/// leader that stops. Exactly one of them takes over, and the store calls the fleet makes from the
/// stop until one retry interval after the takeover stay bounded: at most
/// `N × (3 + window / (0.75 × retry_interval))` (no herd of retries).
pub async fn herd_bounded_store_ops(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "herd_bounded_store_ops").await?;
    const N: usize = 16;
    let rec = TenureRecorder::new();
    let counter = OpCounter::new();
    let a = ctx.participant("leader").await?;
    rec.track(&a);
    let mut fleet = Vec::new();
    for i in 0..N {
        let e = ctx.election(counter.wrap(ctx.store().await?), &format!("f{i:02}"))?;
        rec.track(&e);
        fleet.push(e);
    }
    let result = async {
        lead_within(&a, ctx.start_bound()).await?;
        start_all(&fleet).await?;
        for f in &fleet {
            follows(f, &a, ctx.takeover_bound()).await?;
        }
        counter.reset();
        let t0 = Instant::now();
        a.stop().await?;
        first_leader(&fleet, ctx.release_bound()).await?;
        tokio::time::sleep(ctx.options.retry_interval).await;
        let window = t0.elapsed();
        let ops = counter.total();
        let per = 3.0 + window.as_secs_f64() / (0.75 * ctx.options.retry_interval.as_secs_f64());
        let bound = (N as f64 * per) as u64;
        crate::harness::note(format!(
            "leader-testkit: herd_bounded_store_ops on {}: {ops} store calls by {N} followers in {}",
            ctx.provider.name(),
            fmt_duration(window)
        ));
        ensure!(
            ops <= bound,
            "{N} followers made {ops} store calls in one failover ({}), bound {bound}",
            fmt_duration(window)
        );
        let leaders = fleet.iter().filter(|e| e.is_leader()).count();
        ensure!(leaders == 1, "{leaders} followers lead after one failover");
        rec.check()
    }
    .await;
    stop_all(&fleet).await;
    a.stop().await?;
    result
}
