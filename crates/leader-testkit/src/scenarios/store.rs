//! The store-level contract every provider implements: guarded release and renew, token growth,
//! idempotent acquire, list, withdraw, input validation.

use std::sync::Arc;
use std::time::Duration;

use leader_core::{Acquire, ElectionOptions, ErrorKind, FencingToken, Lease, LeaseStore, Metadata};
use tokio::time::Instant;

use super::{call, instance_id, lead_within, sleep_until, Ctx, Res};
use crate::{ensure, fail, fmt_duration, Provider, ScenarioFailure, ScenarioResult};

/// One store-level acquire that must succeed.
async fn acquire(ctx: &Ctx, store: &Arc<dyn LeaseStore>, participant: &str, instance: &str) -> Res<Lease> {
    let req = ctx.request(participant, instance);
    match call(ctx.margin(), "try_acquire", store.try_acquire(&req)).await? {
        Acquire::Acquired(lease) => {
            ensure!(
                lease.instance_id == instance && lease.election == ctx.name,
                "try_acquire returned a lease of another instance or election: {lease:?}"
            );
            Ok(lease)
        }
        Acquire::Held(holder) => fail!("{participant} could not acquire a free lease; held by {holder:?}"),
        Acquire::Refused(r) => fail!("{participant} could not acquire a free lease; the store refused: {r:?}"),
    }
}

/// Retries a store-level acquire until it succeeds (the previous holder's lease has to expire),
/// within the crash bound plus margin.
async fn acquire_after_expiry(ctx: &Ctx, store: &Arc<dyn LeaseStore>, participant: &str, instance: &str) -> Res<Lease> {
    let req = ctx.request(participant, instance);
    let start = Instant::now();
    let limit = ctx.takeover_bound();
    loop {
        match call(ctx.margin(), "try_acquire", store.try_acquire(&req)).await? {
            Acquire::Acquired(lease) => return Ok(lease),
            Acquire::Held(_) | Acquire::Refused(_) if start.elapsed() < limit => {
                tokio::time::sleep(ctx.options.retry_interval).await
            }
            Acquire::Refused(r) => fail!("the store still refuses to elect after {}: {r:?}", fmt_duration(limit)),
            Acquire::Held(holder) => fail!(
                "an unrenewed lease did not expire within {} (crash bound + margin); still held by {:?}",
                fmt_duration(limit),
                holder.map(|h| h.participant_id)
            ),
        }
    }
}

/// (b) 8, guarantees 1-2: A acquires and stops renewing (its handle is dropped); once its lease
/// expired B acquires. A's late `release`, `renew` and `update_metadata` with its old lease (from a
/// new handle) change nothing: they answer
/// `false`/`None` and B still holds, with a greater token, and can renew.
pub async fn late_release_cannot_touch_successor(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "late_release_cannot_touch_successor").await?;
    let sb = ctx.store().await?;
    // A's handle is dropped after the acquire (on session stores the session would otherwise keep
    // the lease alive); A comes back later on a new handle with its old lease.
    let la = acquire(&ctx, &ctx.store().await?, "a", &instance_id()).await?;
    let lb = acquire_after_expiry(&ctx, &sb, "b", &instance_id()).await?;
    let sa = ctx.store().await?;
    ensure!(lb.token > la.token, "successor token {} is not greater than {}", lb.token, la.token);
    let released = call(ctx.margin(), "late release", sa.release(&la)).await?;
    ensure!(!released, "a late release of an expired lease answered true");
    let renewed = call(ctx.margin(), "late renew", sa.renew(&la, ctx.lease())).await?;
    ensure!(renewed.is_none(), "a late renew of an expired lease answered Some: {renewed:?}");
    let md = Metadata::from([("late".to_owned(), "yes".to_owned())]);
    let updated = call(ctx.margin(), "late update_metadata", sa.update_metadata(&la, &md)).await?;
    ensure!(updated.is_none(), "a late update_metadata of an expired lease answered Some: {updated:?}");
    let holder = call(ctx.margin(), "current()", sb.current(&ctx.name)).await?;
    match holder {
        Some(h) if h.same_tenure(&lb) => {
            ensure!(!h.metadata.contains_key("late"), "the late update_metadata changed the successor's metadata")
        }
        other => fail!("after A's late calls the successor no longer holds; current() = {other:?}"),
    }
    let renewed = call(ctx.margin(), "successor renew", sb.renew(&lb, ctx.lease())).await?;
    ensure!(renewed.as_ref().is_some_and(|r| r.token == lb.token), "the successor cannot renew: {renewed:?}");
    ensure!(call(ctx.margin(), "successor release", sb.release(&lb)).await?, "the successor's release answered false");
    Ok(())
}

/// Guarantee 2, (b) 37: tokens strictly increase across release and re-acquisition by the same
/// instance, by another instance, after an expiry (and a `list`, which may clean up), and through
/// `Election::try_acquire`/`release`.
pub async fn tokens_strictly_increase(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "tokens_strictly_increase").await?;
    let (sa, sb) = (ctx.store().await?, ctx.store().await?);
    let (ia, ib) = (instance_id(), instance_id());
    let mut seen: Vec<(&str, FencingToken)> = Vec::new();
    let mut note = |what: &'static str, t: FencingToken| -> Res<()> {
        if let Some((prev_what, prev)) = seen.last() {
            ensure!(t > *prev, "token {t} ({what}) is not greater than {prev} ({prev_what})");
        }
        seen.push((what, t));
        Ok(())
    };
    let l = acquire(&ctx, &sa, "a", &ia).await?;
    note("first acquisition", l.token)?;
    ensure!(call(ctx.margin(), "release", sa.release(&l)).await?, "release of our own lease answered false");
    let l = acquire(&ctx, &sa, "a", &ia).await?;
    note("same instance after release", l.token)?;
    ensure!(call(ctx.margin(), "release", sa.release(&l)).await?, "release answered false");
    // Another instance on a handle of its own, which is then dropped without a release: the lease
    // expires (or, on session stores, goes with the session).
    let l = acquire(&ctx, &ctx.store().await?, "c", &instance_id()).await?;
    note("another instance after release", l.token)?;
    let l = acquire_after_expiry(&ctx, &sa, "a", &instance_id()).await?;
    note("after an expiry", l.token)?;
    ensure!(call(ctx.margin(), "release", sa.release(&l)).await?, "release answered false");
    if ctx.caps.lists_elections {
        call(ctx.margin(), "list", sa.list(&ctx.name)).await?;
    }
    let l = acquire(&ctx, &sb, "b", &ib).await?;
    note("after list", l.token)?;
    ensure!(call(ctx.margin(), "release", sb.release(&l)).await?, "release answered false");
    let e = ctx.election(sa.clone(), "manual")?;
    ensure!(e.try_acquire().await?, "Election::try_acquire of a free lease answered false");
    let t =
        e.leadership().map(|l| l.token()).ok_or_else(|| ScenarioFailure::new("try_acquire true but no leadership"))?;
    note("Election::try_acquire", t)?;
    e.release().await?;
    ensure!(e.try_acquire().await?, "Election::try_acquire after release answered false");
    let t =
        e.leadership().map(|l| l.token()).ok_or_else(|| ScenarioFailure::new("try_acquire true but no leadership"))?;
    note("Election::try_acquire after release", t)?;
    e.stop().await?;
    Ok(())
}

/// Provider notes (ambiguous acquire), (b) 14 at store level: a repeated acquire by the same
/// instance returns the same token with a fresh TTL (the lease outlives its first TTL); another
/// instance with the same participant id is refused.
pub async fn idempotent_acquire(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "idempotent_acquire").await?;
    let (sa, sb) = (ctx.store().await?, ctx.store().await?);
    let ia = instance_id();
    let t0 = Instant::now();
    let l1 = acquire(&ctx, &sa, "same", &ia).await?;
    let l2 = acquire(&ctx, &sa, "same", &ia).await?;
    ensure!(
        l2.token == l1.token,
        "a repeated acquire by the same instance changed the token {} -> {}",
        l1.token,
        l2.token
    );
    match call(ctx.margin(), "try_acquire by another instance", sb.try_acquire(&ctx.request("same", &instance_id())))
        .await?
    {
        Acquire::Held(Some(h)) => {
            ensure!(h.instance_id == ia, "Held names instance {}, not the holder {ia}", h.instance_id)
        }
        Acquire::Held(None) => {}
        Acquire::Acquired(l) => fail!("another instance with the same participant id acquired a held lease: {l:?}"),
        Acquire::Refused(r) => fail!("the store refused an acquire while a lease is held: {r:?}"),
    }
    // Refresh half-way, then look after the first TTL would have run out.
    sleep_until(t0 + ctx.lease() / 2).await;
    let l3 = acquire(&ctx, &sa, "same", &ia).await?;
    ensure!(l3.token == l1.token, "the refreshing acquire changed the token {} -> {}", l1.token, l3.token);
    sleep_until(t0 + ctx.lease() + ctx.lease() / 4).await;
    let holder = call(ctx.margin(), "current()", sb.current(&ctx.name)).await?;
    ensure!(
        holder.as_ref().is_some_and(|h| h.same_tenure(&l1)),
        "the refreshed lease did not outlive its first TTL (no fresh TTL); current() = {holder:?}"
    );
    ensure!(call(ctx.margin(), "release", sa.release(&l3)).await?, "release answered false");
    Ok(())
}

/// `list` (capability `lists_elections`): exactly the held elections under a prefix, sorted;
/// released ones disappear; an invalid prefix is `InvalidArgument`. Without the capability `list`
/// answers `Unsupported`.
pub async fn list_elections(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "list_elections").await?;
    let store = ctx.store().await?;
    if !ctx.caps.lists_elections {
        return match store.list(&ctx.name).await {
            Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
            other => fail!("lists_elections is false, so list() must answer Unsupported; it answered {other:?}"),
        };
    }
    let names = [format!("{}.a", ctx.name), format!("{}.b", ctx.name), format!("{}.c", ctx.name)];
    let mut held = Vec::new();
    for name in [&names[0], &names[2]] {
        let mut req = ctx.request("lister", &instance_id());
        req.election = name.clone();
        match call(ctx.margin(), "try_acquire", store.try_acquire(&req)).await? {
            Acquire::Acquired(l) => held.push(l),
            Acquire::Held(h) => fail!("a fresh election {name} is held by {h:?}"),
            Acquire::Refused(r) => fail!("a fresh election {name} was refused: {r:?}"),
        }
    }
    let listed = call(ctx.margin(), "list", store.list(&ctx.name)).await?;
    let got: Vec<_> = listed.iter().map(|l| (l.election.clone(), l.token)).collect();
    let want: Vec<_> = held.iter().map(|l| (l.election.clone(), l.token)).collect();
    ensure!(got == want, "list({:?}) = {got:?}, expected {want:?} (held elections, sorted)", ctx.name);
    let none = call(ctx.margin(), "list", store.list(&names[1])).await?;
    ensure!(none.is_empty(), "list of a prefix with no held election returned {none:?}");
    ensure!(call(ctx.margin(), "release", store.release(&held[0])).await?, "release answered false");
    let listed = call(ctx.margin(), "list", store.list(&ctx.name)).await?;
    let got: Vec<_> = listed.iter().map(|l| l.election.clone()).collect();
    ensure!(got == [names[2].clone()], "after a release list() = {got:?}, expected [{:?}]", names[2]);
    match store.list("a/b").await {
        Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
        other => fail!("list(\"a/b\") must be InvalidArgument, got {other:?}"),
    }
    ensure!(call(ctx.margin(), "release", store.release(&held[1])).await?, "release answered false");
    Ok(())
}

/// `withdraw`: never an error (also for an unknown instance); a candidate that stopped leaves no
/// trace: after the leader stops too, nobody holds the election.
pub async fn withdraw_leaves_no_candidate(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "withdraw_leaves_no_candidate").await?;
    let store = ctx.store().await?;
    call(ctx.margin(), "withdraw of an unknown instance", store.withdraw(&ctx.name, &instance_id())).await?;
    let a = ctx.participant("a").await?;
    let b = ctx.participant("b").await?;
    lead_within(&a, ctx.start_bound()).await?;
    b.start().await?;
    super::follows(&b, &a, ctx.takeover_bound()).await?;
    b.stop().await?;
    call(ctx.margin(), "withdraw again", store.withdraw(&ctx.name, b.instance_id())).await?;
    a.stop().await?;
    let check = |h: Option<Lease>| -> Res<()> {
        ensure!(h.is_none(), "after every participant stopped, current() = {h:?} (a queued candidate was left behind)");
        Ok(())
    };
    check(call(ctx.margin(), "current()", store.current(&ctx.name)).await?)?;
    // A queued node left behind would be promoted once the store notices the leader left.
    tokio::time::sleep(ctx.options.retry_interval).await;
    check(call(ctx.margin(), "current()", store.current(&ctx.name)).await?)
}

/// (b) 34, API contract: bad names, participant ids and options are `InvalidArgument` at
/// construction (the message names the value), as are bad names at the store; the provider
/// accepts its own test options.
pub async fn invalid_input_rejected(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "invalid_input_rejected").await?;
    let store = ctx.store().await?;
    call(ctx.margin(), "check_options(test options)", async { store.check_options(&ctx.options) }).await?;
    let long = "x".repeat(leader_core::MAX_ELECTION_NAME + 1);
    for name in ["", long.as_str(), "a/b", " x", "é", "-x", "a b", "a\nb"] {
        match leader_core::Election::new(store.clone(), name, "p", ctx.options.clone()) {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                if name.len() > 1 && name.len() < 32 {
                    ensure!(
                        e.to_string().contains(&format!("{name:?}")),
                        "the error for election name {name:?} does not name it: {e}"
                    );
                }
            }
            other => fail!("election name {name:?} must be InvalidArgument at construction, got {:?}", other.map(drop)),
        }
        let mut req = ctx.request("p", &instance_id());
        req.election = name.to_owned();
        match store.try_acquire(&req).await {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            other => fail!("store try_acquire of election name {name:?} must be InvalidArgument, got {other:?}"),
        }
        match store.current(name).await {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            other => fail!("store current({name:?}) must be InvalidArgument, got {other:?}"),
        }
    }
    let long_id = "p".repeat(leader_core::MAX_PARTICIPANT_ID + 1);
    for id in ["", " p", "p ", "a\u{7}b", long_id.as_str()] {
        match leader_core::Election::new(store.clone(), &ctx.name, id, ctx.options.clone()) {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            other => fail!("participant id {id:?} must be InvalidArgument, got {:?}", other.map(drop)),
        }
    }
    let base = ctx.options.clone();
    let bad: Vec<(&str, ElectionOptions)> = vec![
        ("lease_duration 0", ElectionOptions { lease_duration: Duration::ZERO, ..base.clone() }),
        ("renew_deadline >= lease", ElectionOptions { renew_deadline: base.lease_duration, ..base.clone() }),
        ("renew_interval >= renew_deadline", ElectionOptions { renew_interval: base.renew_deadline, ..base.clone() }),
        (
            "operation_timeout >= renew_interval",
            ElectionOptions { operation_timeout: base.renew_interval, ..base.clone() },
        ),
        ("retry_interval >= lease", ElectionOptions { retry_interval: base.lease_duration, ..base.clone() }),
        ("event_buffer 0", ElectionOptions { event_buffer: 0, ..base.clone() }),
        ("metadata key with a space", base.clone().with_metadata(Metadata::from([("a b".to_owned(), "v".to_owned())]))),
        (
            "metadata value too long",
            base.clone()
                .with_metadata(Metadata::from([("k".to_owned(), "v".repeat(leader_core::MAX_METADATA_VALUE + 1))])),
        ),
    ];
    for (what, options) in bad {
        match leader_core::Election::new(store.clone(), &ctx.name, "p", options) {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            other => fail!("options with {what} must be InvalidArgument at construction, got {:?}", other.map(drop)),
        }
    }
    let e = ctx.election(store, "p")?;
    match e.set_metadata(Metadata::from([("".to_owned(), "v".to_owned())])).await {
        Err(err) if err.kind() == ErrorKind::InvalidArgument => Ok(()),
        other => fail!("set_metadata with an empty key must be InvalidArgument, got {other:?}"),
    }
}

/// Issue 22, the batch contract: `renew_batch` and `release_batch` over leases of six elections on
/// one handle, two of which are no longer ours (one released, one released and then taken by
/// another instance), give each lease its own answer, exactly as `renew`/`release` would: the
/// four of ours renewed with their tokens, `None` for the other two (and the other instance still
/// holds); then `true` for ours, `false` for the others, and every election but the taken one is
/// free.
pub async fn batch_answers_each_lease(provider: Arc<dyn Provider>) -> ScenarioResult {
    let ctx = Ctx::new(provider, "batch_answers_each_lease").await?;
    let (sa, sb) = (ctx.store().await?, ctx.store().await?);
    let (ia, ib) = (instance_id(), instance_id());
    let name = |i: usize| format!("{}.{i}", ctx.name);
    let mut leases = Vec::new();
    for i in 0..6 {
        let req = leader_core::AcquireRequest { election: name(i), ..ctx.request("a", &ia) };
        match call(ctx.margin(), "try_acquire", sa.try_acquire(&req)).await? {
            Acquire::Acquired(lease) => leases.push(lease),
            other => fail!("election {i}: could not acquire a free lease: {other:?}"),
        }
    }
    // Election 1: released (not ours any more). Election 4: released, then taken by b.
    for i in [1, 4] {
        ensure!(call(ctx.margin(), "release", sa.release(&leases[i])).await?, "release {i} answered false");
    }
    let req = leader_core::AcquireRequest { election: name(4), ..ctx.request("b", &ib) };
    let taken = match call(ctx.margin(), "try_acquire", sb.try_acquire(&req)).await? {
        Acquire::Acquired(lease) => lease,
        other => fail!("b could not acquire released election 4: {other:?}"),
    };
    let theirs = |i: usize| i == 1 || i == 4;

    let batch: Vec<leader_core::Renewal> =
        leases.iter().map(|l| leader_core::Renewal { lease: l.clone(), ttl: ctx.lease() }).collect();
    let renewed = crate::within(ctx.margin() * 2, "renew_batch", sa.renew_batch(&batch)).await?;
    ensure!(renewed.len() == batch.len(), "renew_batch gave {} answers for {} leases", renewed.len(), batch.len());
    for (i, answer) in renewed.into_iter().enumerate() {
        match answer {
            Ok(Some(l)) if !theirs(i) => ensure!(
                l.token == leases[i].token && l.election == name(i) && l.instance_id == ia,
                "renew_batch answered election {i} with another tenure: {l:?}"
            ),
            Ok(None) if theirs(i) => {}
            other => fail!("renew_batch, election {i} ({}): {other:?}", if theirs(i) { "not ours" } else { "ours" }),
        }
    }
    let holder = call(ctx.margin(), "current()", sb.current(&name(4))).await?;
    ensure!(
        holder.as_ref().is_some_and(|h| h.same_tenure(&taken)),
        "after a batch with a stale lease of election 4, its holder is {holder:?}"
    );

    let released = crate::within(ctx.margin() * 2, "release_batch", sa.release_batch(&leases)).await?;
    ensure!(
        released.len() == leases.len(),
        "release_batch gave {} answers for {} leases",
        released.len(),
        leases.len()
    );
    for (i, answer) in released.into_iter().enumerate() {
        match answer {
            Ok(r) if r != theirs(i) => {}
            other => fail!("release_batch, election {i} ({}): {other:?}", if theirs(i) { "not ours" } else { "ours" }),
        }
    }
    for i in 0..6 {
        let holder = call(ctx.margin(), "current()", sb.current(&name(i))).await?;
        match (i, holder) {
            (4, Some(h)) if h.same_tenure(&taken) => {}
            (4, other) => fail!("release_batch touched b's lease of election 4: current() = {other:?}"),
            (_, None) => {}
            (_, Some(h)) => fail!("election {i} still held after release_batch: {h:?}"),
        }
    }
    ensure!(call(ctx.margin(), "release", sb.release(&taken)).await?, "b's release answered false");
    Ok(())
}
