//! Guarantee 8 and observation: the change stream, overflow, slow consumers, `observe`, metadata.

use std::sync::Arc;

use futures::StreamExt;
use leader_core::layer::Op;
use leader_core::{observe, ChangeKind, ChangeReason, ElectionOptions, FencingToken, LeaderInfo, Metadata};
use tokio::time::Instant;

use super::{call, check_alternation, drain, first_leader, follows, lead_within, next_where, stop_all, Ctx, Res};
use crate::{ensure, fail, OpCounter, Provider, ScenarioFailure, ScenarioResult, TenureRecorder};

/// Guarantee 8, (b) 27: two participants hand leadership back and forth four times (the leader
/// stops, the other takes over, the stopped one starts again). Each one's stream starts with `Subscribed`, then alternates `Acquired`/`Lost`
/// with strictly growing tokens, each `Lost` naming the tenure it ends, no `missed`; each sees the
/// other lead through `LeaderChanged`.
pub async fn events_alternate(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "events_alternate").await?;
    let rec = TenureRecorder::new();
    let all = [ctx.participant("a").await?, ctx.participant("b").await?];
    // These streams outlive the stop()/start() cycles below (a plain one ends at each stop()).
    let mut streams: Vec<_> = all.iter().map(|e| e.changes().follow_restarts()).collect();
    for e in &all {
        rec.track(e);
    }
    let result = async {
        super::start_all(&all).await?;
        let (mut w, mut lw) = first_leader(&all, ctx.start_bound()).await?;
        for _ in 0..4 {
            let other = 1 - w;
            follows(&all[other], &all[w], ctx.takeover_bound()).await?;
            all[w].stop().await?;
            let lo = lead_within(&all[other], ctx.release_bound()).await?;
            ensure!(lo.token() > lw.token(), "token {} after {}", lo.token(), lw.token());
            all[w].start().await?;
            (w, lw) = (other, lo);
        }
        Ok(())
    }
    .await;
    stop_all(&all).await;
    result?;
    let mut acquisitions = 0;
    for (e, s) in all.iter().zip(streams.iter_mut()) {
        let changes = drain(s);
        acquisitions += check_alternation(e.participant_id(), &changes)?;
        let other = if e.participant_id() == "a" { all[1].instance_id() } else { all[0].instance_id() };
        ensure!(
            changes
                .iter()
                .any(|c| c.kind == ChangeKind::LeaderChanged
                    && c.current.as_ref().is_some_and(|h| h.instance_id == other)),
            "{} never got LeaderChanged naming the other participant",
            e.participant_id()
        );
        ensure!(
            !changes.iter().any(|c| c.kind == ChangeKind::Acquired
                && c.reason != ChangeReason::Elected
                && c.reason != ChangeReason::Subscribed),
            "an Acquired change with a reason other than Elected"
        );
    }
    ensure!(acquisitions == 5, "expected 5 acquisitions over both streams, saw {acquisitions}");
    rec.check()
}

/// Guarantee 8: with `event_buffer` 2 a subscriber that does not read loses the oldest changes; the
/// first change it then reads after `Subscribed` carries `missed > 0`; a new subscriber starts
/// with the current state.
pub async fn overflow_reports_missed(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "overflow_reports_missed").await?;
    let options = ElectionOptions { event_buffer: 2, ..ctx.options.clone() };
    let a = ctx.election_on(ctx.store().await?, &ctx.name, "a", options)?;
    let mut slow = a.changes();
    for _ in 0..4 {
        ensure!(a.try_acquire().await?, "try_acquire of a free election failed");
        a.release().await?;
    }
    let first = next_where(&mut slow, ctx.margin(), "Subscribed", |_| true).await?;
    ensure!(first.reason == ChangeReason::Subscribed, "first change {:?}, not Subscribed", first.reason);
    let next = next_where(&mut slow, ctx.margin(), "a change after the overflow", |_| true).await?;
    ensure!(next.missed > 0, "8 changes into a buffer of 2, yet the next change reports missed = 0: {next:?}");
    let mut fresh = a.changes();
    let now = next_where(&mut fresh, ctx.margin(), "Subscribed", |_| true).await?;
    ensure!(now.reason == ChangeReason::Subscribed && !now.is_leader, "a new subscriber's first change is {now:?}");
    a.stop().await?;
    Ok(())
}

/// Guarantee 8, (b) 33: subscribers that never read (buffer 1) slow nothing: the leader renews at
/// its pace and keeps its tenure for a lease, hands over when it stops, and the successor renews too.
pub async fn slow_consumer_never_delays_renewals(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "slow_consumer_never_delays_renewals").await?;
    // No tenure recorder here: it would be a subscriber with the same tiny buffer.
    let options = ElectionOptions { event_buffer: 1, ..ctx.options.clone() };
    let (ca, cb) = (OpCounter::new(), OpCounter::new());
    let a = ctx.election_on(ca.wrap(ctx.store().await?), &ctx.name, "a", options.clone())?;
    let b = ctx.election_on(cb.wrap(ctx.store().await?), &ctx.name, "b", options)?;
    let _unread: Vec<_> = (0..8).flat_map(|_| [a.changes(), b.changes()]).collect();
    let all = [a, b];
    let result = async {
        let la = lead_within(&all[0], ctx.start_bound()).await?;
        all[1].start().await?;
        follows(&all[1], &all[0], ctx.takeover_bound()).await?;
        let expected =
            |window: std::time::Duration| (window.as_secs_f64() / ctx.options.renew_interval.as_secs_f64()) as u64;
        let mut token = la.token();
        for (leader, next, counter) in [(0, Some(1), &ca), (1, None, &cb)] {
            let t0 = Instant::now();
            let before = counter.get(Op::Renew);
            tokio::time::sleep(ctx.lease()).await;
            let renews = counter.get(Op::Renew) - before;
            let want = expected(t0.elapsed()).saturating_sub(1).max(1);
            let who = all[leader].participant_id();
            ensure!(renews >= want, "{who} renewed {renews} times in one lease, expected at least {want}");
            let now = all[leader].leadership().map(|l| l.token());
            ensure!(
                now == Some(token),
                "{who} lost or changed its tenure (token {token} -> {now:?}) with unread subscribers"
            );
            ensure!(!all[1 - leader].is_leader(), "both participants lead");
            if let Some(n) = next {
                all[leader].stop().await?;
                let ln = lead_within(&all[n], ctx.release_bound()).await?;
                ensure!(ln.token() > token, "token {} after {token}", ln.token());
                token = ln.token();
            }
        }
        Ok(())
    }
    .await;
    stop_all(&all).await;
    result
}

/// (b) 32: `observe` from a non-participant yields the current holder first (none), then each new
/// holder as the lease passes from A to B and then to nobody; every holder it names held a tenure
/// with that token; tokens never go backwards; it ends on the last state (none).
pub async fn observe_follows_holder(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "observe_follows_holder").await?;
    let rec = TenureRecorder::new();
    let mut holders = observe(ctx.store().await?, ctx.name.clone(), ctx.options.retry_interval);
    let mut seen: Vec<Option<LeaderInfo>> = Vec::new();
    next_holder(&mut holders, &mut seen, ctx.margin(), "the first observation", |_| true).await?;
    let a = ctx.participant("a").await?;
    let b = ctx.participant("b").await?;
    rec.track(&a);
    rec.track(&b);
    let result: Res<()> = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        let ia = a.instance_id().to_owned();
        next_holder(&mut holders, &mut seen, ctx.takeover_bound(), "observing a", |h| {
            h.as_ref().is_some_and(|h| h.instance_id == ia)
        })
        .await?;
        b.start().await?;
        follows(&b, &a, ctx.takeover_bound()).await?;
        a.stop().await?;
        let lb = lead_within(&b, ctx.release_bound()).await?;
        let ib = b.instance_id().to_owned();
        next_holder(&mut holders, &mut seen, ctx.takeover_bound(), "observing b", |h| {
            h.as_ref().is_some_and(|h| h.instance_id == ib)
        })
        .await?;
        b.stop().await?;
        next_holder(&mut holders, &mut seen, ctx.takeover_bound(), "observing nobody", |h| h.is_none()).await?;
        ensure!(lb.token() > la.token(), "tokens {} then {}", la.token(), lb.token());
        Ok(())
    }
    .await;
    stop_all(&[a, b]).await;
    result?;
    ensure!(seen.first().is_some_and(|h| h.is_none()), "observe's first item is {:?}, expected none", seen.first());
    ensure!(seen.last().is_some_and(|h| h.is_none()), "observe's last item is not none: {:?}", seen.last());
    let tenures = rec.tenures();
    let mut max: Option<FencingToken> = None;
    for h in seen.iter().flatten() {
        ensure!(
            tenures.iter().any(|t| t.instance_id == h.instance_id && t.token == h.token),
            "observe named {} with token {}, which never led with that token (tenures: {tenures:?})",
            h.participant_id,
            h.token
        );
        ensure!(max.is_none_or(|m| h.token >= m), "observe went back from token {max:?} to {}", h.token);
        max = Some(h.token);
    }
    rec.check()
}

/// Reads `holders` into `seen` until an item satisfies `pred`.
async fn next_holder(
    holders: &mut futures::stream::BoxStream<'static, leader_core::Result<Option<LeaderInfo>>>,
    seen: &mut Vec<Option<LeaderInfo>>,
    limit: std::time::Duration,
    what: &str,
    pred: impl Fn(&Option<LeaderInfo>) -> bool,
) -> Res<()> {
    crate::within(limit, what, async {
        while let Some(item) = holders.next().await {
            let item = item.map_err(|e| ScenarioFailure::from(e).context("observe"))?;
            seen.push(item.clone());
            if pred(&item) {
                return Ok(());
            }
        }
        fail!("the observe stream ended")
    })
    .await?
}

/// `set_metadata` (etcd Proclaim): the leader's new metadata is what followers read through
/// `current()` and a fresh `observe`, with the token unchanged; the initial metadata is published
/// with the acquisition.
pub async fn metadata_visible_to_followers(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "metadata_visible_to_followers").await?;
    let md = |v: &str| Metadata::from([("role".to_owned(), v.to_owned()), ("host".to_owned(), "h1".to_owned())]);
    let options = ctx.options.clone().with_metadata(md("v1"));
    let a = ctx.election_on(ctx.store().await?, &ctx.name, "a", options)?;
    let reader = ctx.store().await?;
    let result = async {
        let la = lead_within(&a, ctx.start_bound()).await?;
        let h = call(ctx.margin(), "current()", reader.current(&ctx.name)).await?;
        ensure!(
            h.as_ref().is_some_and(|h| h.metadata == md("v1")),
            "followers see {:?}, expected the initial metadata",
            h.map(|h| h.metadata)
        );
        a.set_metadata(md("v2")).await?;
        let h = call(ctx.margin(), "current()", reader.current(&ctx.name)).await?;
        let Some(h) = h else { fail!("nobody holds the lease after set_metadata") };
        ensure!(h.metadata == md("v2"), "after set_metadata followers see {:?}", h.metadata);
        ensure!(h.token == la.token() && h.instance_id == a.instance_id(), "set_metadata changed the tenure: {h:?}");
        ensure!(la.info().metadata == md("v2"), "the leader's own Leadership::info() has {:?}", la.info().metadata);
        let mut holders = observe(reader.clone(), ctx.name.clone(), ctx.options.retry_interval);
        let first = crate::within(ctx.margin(), "observe's first item", holders.next()).await?;
        match first {
            Some(Ok(Some(h))) => ensure!(h.metadata == md("v2"), "observe shows metadata {:?}", h.metadata),
            other => fail!("observe's first item is {other:?}, expected the leader"),
        }
        ensure!(a.is_leader(), "the leader lost its lease over set_metadata");
        Ok(())
    }
    .await;
    a.stop().await?;
    result
}
