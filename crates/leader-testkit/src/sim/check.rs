//! The checkers over a whole run, reading what `world.rs` recorded.

use std::sync::Arc;
use std::time::Duration;

use leader_core::{ChangeKind, ChangeReason, FencingToken, LeadershipChange};
use tokio::time::Instant;

use super::record::{lock, same, Entry};
use super::schedule::secs;
use super::world::{Incarnation, Shared};
use super::SimCounts;
use crate::WorkSpan;

/// The granularity of tokio's timers.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// One tenure as its holder's change log shows it.
#[derive(Debug, Clone)]
struct Tenure {
    who: String,
    instance: String,
    token: FencingToken,
    from: Instant,
    /// `None`: never ended.
    to: Option<Instant>,
    reason: Option<ChangeReason>,
}

pub(crate) async fn check(world: &Arc<Shared>, heal: Instant, end: Instant, counts: &mut SimCounts) {
    let all: Vec<Arc<Incarnation>> = lock(&world.all).clone();
    let origin = world.origin;
    let t = |i: Instant| secs(i.saturating_duration_since(origin));

    // Work: no two participants' work at once, and no work past its grace.
    let spans = world.work.spans();
    counts.work_spans += spans.len() as u64;
    if let Err(e) = crate::check_work(&spans) {
        let detail = overlap_detail(&spans, origin);
        world.violation("work", format!("{e}{detail}"));
    }

    // Tenures and events, per participant; and no participant hammers the store.
    let calls_bound = world.config.calls_per_lease_bound();
    let lease = world.config.options.lease_duration;
    let mut tenures = Vec::new();
    for inc in &all {
        let (busiest, from) = inc.grants.busiest(lease);
        counts.busiest_calls_per_lease = counts.busiest_calls_per_lease.max(busiest as u64);
        if busiest as u64 > calls_bound {
            world.violation(
                "calls",
                format!(
                    "{} made {busiest} store calls within one lease from {} (the bound is {calls_bound})",
                    inc.id,
                    from.map_or("?".to_owned(), t)
                ),
            );
        }
        let entries = inc.log.entries();
        let crashed = inc.crashed_at();
        let mine = tenures_of(world, inc, &entries, crashed, end);
        check_work_within_grace(world, inc, &spans, &mine);
        tenures.extend(mine);
        check_subscribers(world, inc, &entries, crashed, counts);
    }
    counts.tenures += tenures.len() as u64;
    tenures.sort_by_key(|t| (t.from, t.token));

    // Mutual exclusion of tenures, and tokens that grow.
    'pairs: for (i, a) in tenures.iter().enumerate() {
        for b in &tenures[i + 1..] {
            if a.instance == b.instance {
                continue;
            }
            let a_to = a.to.unwrap_or(end);
            if b.from < a_to && a.from < b.to.unwrap_or(end) {
                world.violation(
                    "tenures",
                    format!(
                        "two leaders at once: {} (token {}, {}..{}) and {} (token {}, {}..{})",
                        a.who,
                        a.token,
                        t(a.from),
                        a.to.map_or("open".to_owned(), t),
                        b.who,
                        b.token,
                        t(b.from),
                        b.to.map_or("open".to_owned(), t)
                    ),
                );
                break 'pairs;
            }
        }
    }
    for (i, a) in tenures.iter().enumerate() {
        if let Some(b) = tenures[i + 1..].iter().find(|b| b.from > a.from && b.token <= a.token) {
            world.violation(
                "tokens",
                format!(
                    "fencing token did not grow: {} led with token {} at {}, then {} with token {} at {}",
                    a.who,
                    a.token,
                    t(a.from),
                    b.who,
                    b.token,
                    t(b.from)
                ),
            );
            break;
        }
    }

    // Liveness: after the last fault healed, no stretch without a leader longer than the bound.
    let live = all.iter().any(|i| lock(&i.ended).is_none());
    if live {
        counts.liveness_windows += 1;
        let bound = world.config.recovery_bound();
        let mut covered: Vec<(Instant, Instant)> =
            tenures.iter().map(|t| (t.from, t.to.unwrap_or(end))).filter(|(_, to)| *to > heal).collect();
        covered.sort();
        let mut cursor = heal;
        let mut longest = Duration::ZERO;
        let mut longest_at = heal;
        for (from, to) in covered.into_iter().chain([(end, end)]) {
            if from > cursor {
                let gap = from.min(end) - cursor;
                if gap > longest {
                    longest = gap;
                    longest_at = cursor;
                }
            }
            cursor = cursor.max(to);
        }
        counts.longest_gap = counts.longest_gap.max(longest);
        if longest > bound {
            world.violation(
                "liveness",
                format!(
                    "no leader for {} from {} (the last fault healed at {}; the bound is {})",
                    secs(longest),
                    t(longest_at),
                    t(heal),
                    secs(bound)
                ),
            );
        }
    }

    // After every participant stopped, nobody holds the lease.
    match world.provider.store().await {
        Ok(store) => match store.current(&world.election).await {
            Ok(Some(holder)) => world.violation(
                "store",
                format!(
                    "after every participant stopped, the store still shows {} (token {}) as the holder",
                    holder.participant_id, holder.token
                ),
            ),
            Ok(None) => {}
            Err(e) => world.violation("store", format!("reading the holder at the end failed: {e}")),
        },
        Err(e) => world.violation("store", format!("opening a handle at the end failed: {e}")),
    }
}

/// The tenures in one participant's change log, checking the log's own rules on the way
/// (guarantee 8: `Subscribed` first, `Acquired`/`Lost` alternate, `Lost` names its tenure).
fn tenures_of(
    world: &Shared,
    inc: &Incarnation,
    entries: &[Entry],
    crashed: Option<Instant>,
    end: Instant,
) -> Vec<Tenure> {
    let mut out: Vec<Tenure> = Vec::new();
    let mut open: Option<usize> = None;
    let who = &inc.id;
    let bad = |what: String| world.violation("events", format!("{who}: {what}"));
    for (i, e) in entries.iter().enumerate() {
        if crashed.is_some_and(|c| e.at > c) {
            break;
        }
        let c = &e.change;
        if (i == 0) != (c.reason == ChangeReason::Subscribed) {
            bad(format!("change {i} has reason {:?}", c.reason));
        }
        if c.missed > 0 {
            bad(format!("the checker's own subscriber missed {} changes (harness too slow?)", c.missed));
        }
        match c.kind {
            ChangeKind::Acquired => {
                let Some(token) = c.token() else {
                    bad("Acquired without the lease".to_owned());
                    continue;
                };
                if !c.is_leader {
                    bad(format!("Acquired (token {token}) with is_leader false"));
                }
                if let Some(o) = open {
                    bad(format!("Acquired token {token} while its tenure with token {} is open", out[o].token));
                }
                if let Some(last) = out.last() {
                    if token <= last.token {
                        bad(format!("Acquired token {token} after its own tenure with token {}", last.token));
                    }
                }
                open = Some(out.len());
                out.push(Tenure {
                    who: who.clone(),
                    instance: inc.instance.clone(),
                    token,
                    from: e.at,
                    to: None,
                    reason: None,
                });
            }
            ChangeKind::Lost => {
                if c.is_leader {
                    bad("Lost with is_leader true".to_owned());
                }
                match open.take() {
                    Some(o) => {
                        if let Some(prev) = c.previous.as_ref().filter(|p| p.instance_id == inc.instance) {
                            if prev.token != out[o].token {
                                bad(format!(
                                    "Lost names token {} but the tenure has token {}",
                                    prev.token, out[o].token
                                ));
                            }
                        }
                        out[o].to = Some(e.at);
                        out[o].reason = Some(c.reason);
                    }
                    None if i == 0 => {}
                    None => bad(format!("Lost ({:?}) without a tenure", c.reason)),
                }
            }
            ChangeKind::LeaderChanged => {
                if c.is_leader {
                    bad("LeaderChanged with is_leader true".to_owned());
                }
                if i > 0 && open.is_some() {
                    bad("LeaderChanged while it leads".to_owned());
                }
                if c.current.as_ref().is_some_and(|h| h.instance_id == inc.instance) {
                    bad("told by LeaderChanged that its own tenure leads".to_owned());
                }
            }
        }
    }
    if let Some(o) = open {
        match crashed {
            Some(c) => out[o].to = Some(c),
            None => {
                let _ = end;
                bad(format!("tenure with token {} never ended (no Lost after stop())", out[o].token));
            }
        }
    }
    out
}

/// Guarantee 3 for work: work under a tenure is gone by the end of its grace (at once when the
/// store said the lease is gone).
fn check_work_within_grace(world: &Shared, inc: &Incarnation, spans: &[WorkSpan], tenures: &[Tenure]) {
    let o = &world.config.options;
    for span in spans.iter().filter(|s| s.participant == inc.id) {
        let Some(tenure) = tenures.iter().find(|t| t.token == span.token) else {
            world.violation("work", format!("{}: work ran under token {} it never acquired", inc.id, span.token));
            continue;
        };
        let (Some(ended), Some(reason)) = (tenure.to, tenure.reason) else { continue };
        let grace = if reason == ChangeReason::Expired { Duration::ZERO } else { o.work_grace() };
        // tokio's timers fire on whole milliseconds: a deadline is met up to 1 ms late.
        let limit = ended + grace + TIMER_RESOLUTION + world.config.slack;
        let stopped = span.ended.unwrap_or_else(Instant::now);
        if span.started + world.config.slack < tenure.from {
            world.violation("work", format!("{}: work under token {} started before its tenure", inc.id, span.token));
        }
        if stopped > limit {
            world.violation(
                "work",
                format!(
                    "{}: work under token {} ran {} after its tenure ended ({:?}); its grace is {}",
                    inc.id,
                    span.token,
                    secs(stopped - ended),
                    reason,
                    secs(grace)
                ),
            );
        }
    }
}

/// Guarantee 8 per subscriber: each stream is the participant's changes from its subscription
/// to the end of its run, in order, every change delivered or, where the buffer overflowed,
/// counted in the next delivered change's `missed`.
fn check_subscribers(
    world: &Shared,
    inc: &Incarnation,
    entries: &[Entry],
    crashed: Option<Instant>,
    counts: &mut SimCounts,
) {
    let run_ends = inc.log.run_ends();
    for (n, log) in inc.subscribers.iter().enumerate() {
        let subs = lock(log).clone();
        for (k, sub) in subs.iter().enumerate() {
            let who = format!("{} subscriber {n} (stream {k})", inc.id);
            let end = run_ends.get(sub.run).copied().unwrap_or(entries.len()).max(sub.start).min(entries.len());
            let window = &entries[sub.start.min(entries.len())..end];
            let Some(first) = sub.items.first() else { continue };
            if first.change.reason != ChangeReason::Subscribed {
                world.violation("events", format!("{who}: first item is {:?}, not Subscribed", first.change.reason));
            }
            let leading = entries[..sub.start.min(entries.len())]
                .iter()
                .rev()
                .find(|e| e.change.kind != ChangeKind::LeaderChanged)
                .is_some_and(|e| e.change.kind == ChangeKind::Acquired);
            if first.change.is_leader != leading {
                world.violation(
                    "events",
                    format!(
                        "{who}: the Subscribed item says is_leader {} but it was {leading}",
                        first.change.is_leader
                    ),
                );
            }
            let mut pos = 0;
            let mut broken = false;
            let mut summarised = false;
            let mut believes_leading = first.change.is_leader;
            for (n_item, item) in sub.items.iter().enumerate().skip(1) {
                counts.changes_checked += 1;
                let found = (pos..window.len()).find(|&j| same(&item.change, &window[j].change));
                let last = n_item + 1 == sub.items.len();
                let j = match found {
                    Some(j) => j,
                    // A stream that overflowed just before its end says so in one last change of
                    // its own (guarantee 8): it covers everything it did not deliver.
                    None if last && sub.ended && is_end_summary(&item.change) => {
                        let skipped = &window[pos..];
                        let losts = skipped.iter().filter(|e| e.change.kind == ChangeKind::Lost).count() as u64;
                        counts.losts_to_subscribers += losts;
                        counts.losts_covered_by_missed += losts;
                        if believes_leading && item.change.kind != ChangeKind::Lost {
                            world.violation(
                                "events",
                                format!("{who}: its last change said it leads, and the stream ended with a {:?}, not a Lost", item.change.kind),
                            );
                        }
                        if skipped.len() as u64 > item.change.missed {
                            world.violation(
                                "events",
                                format!(
                                    "{who}: {} changes skipped but the last change says missed {}",
                                    skipped.len(),
                                    item.change.missed
                                ),
                            );
                        }
                        summarised = true;
                        break;
                    }
                    None => {
                        world.violation(
                            "events",
                            format!(
                                "{who}: delivered {:?} ({:?}) that its participant did not emit at that point",
                                item.change.kind, item.change.reason
                            ),
                        );
                        broken = true;
                        break;
                    }
                };
                believes_leading = item.change.is_leader;
                let skipped = &window[pos..j];
                let losts = skipped.iter().filter(|e| e.change.kind == ChangeKind::Lost).count() as u64;
                if !skipped.is_empty() {
                    if item.change.missed == 0 {
                        world.violation(
                            "events",
                            format!(
                                "{who}: {} changes ({}) were never delivered, and the next one ({:?}) says missed 0",
                                skipped.len(),
                                describe(skipped),
                                item.change.kind
                            ),
                        );
                    } else if skipped.len() as u64 > item.change.missed {
                        world.violation(
                            "events",
                            format!("{who}: {} changes skipped but missed says {}", skipped.len(), item.change.missed),
                        );
                    }
                    counts.losts_to_subscribers += losts;
                    counts.losts_covered_by_missed += losts;
                }
                if item.change.kind == ChangeKind::Lost {
                    counts.losts_to_subscribers += 1;
                    counts.losts_delivered += 1;
                }
                pos = j + 1;
            }
            if broken || summarised || crashed.is_some() || sub.abandoned {
                continue;
            }
            if sub.ended && !sub.gone_at_end && sub.stops_begun_at_end <= sub.stops_done_at_start {
                world.violation(
                    "events",
                    format!("{who}: the stream ended, but no stop() began after it was taken and the election was not dropped"),
                );
            }
            // A stop()'s Lost is the last change of its run: the stream ends after it.
            if let Some(k) = sub
                .items
                .iter()
                .position(|i| i.change.kind == ChangeKind::Lost && i.change.reason == ChangeReason::Stopped)
            {
                if let Some(next) = sub.items[k + 1..].iter().find(|i| !is_end_summary(&i.change)) {
                    world.violation(
                        "events",
                        format!(
                            "{who}: delivered {:?} ({:?}) after its participant's Lost (Stopped), which ends a stream's run",
                            next.change.kind, next.change.reason
                        ),
                    );
                }
            }
            if sub.ended && believes_leading {
                world.violation(
                    "events",
                    format!("{who}: the stream ended while its last change said its participant leads (no Lost before the end)"),
                );
            }
            let tail = &window[pos.min(window.len())..];
            if !tail.is_empty() {
                let losts = tail.iter().filter(|e| e.change.kind == ChangeKind::Lost).count() as u64;
                counts.losts_to_subscribers += losts;
                world.violation(
                    "events",
                    format!(
                        "{who}: {} changes ({}) were never delivered{}",
                        tail.len(),
                        describe(tail),
                        if sub.ended { " before the stream ended, and nothing said any was missed" } else { "" }
                    ),
                );
            }
        }
    }
}

/// The change a stream delivers last when it overflowed just before its end.
fn is_end_summary(c: &LeadershipChange) -> bool {
    c.missed > 0
        && !c.is_leader
        && c.current.is_none()
        && c.reason == ChangeReason::Stopped
        && c.kind != ChangeKind::Acquired
}

fn describe(entries: &[Entry]) -> String {
    entries.iter().map(|e| format!("{:?}/{:?}", e.change.kind, e.change.reason)).collect::<Vec<_>>().join(", ")
}

fn overlap_detail(spans: &[WorkSpan], origin: Instant) -> String {
    let t = |i: Instant| secs(i.saturating_duration_since(origin));
    let now = Instant::now();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.participant != b.participant
                && a.started < b.ended.unwrap_or(now)
                && b.started < a.ended.unwrap_or(now)
            {
                return format!(
                    " ({}: {}..{}, {}: {}..{})",
                    a.participant,
                    t(a.started),
                    a.ended.map_or("open".to_owned(), t),
                    b.participant,
                    t(b.started),
                    b.ended.map_or("open".to_owned(), t)
                );
            }
        }
    }
    String::new()
}

/// Every participant's changes and work, by time: what a failing seed prints.
pub(crate) fn trace(world: &Shared) -> Vec<String> {
    let origin = world.origin;
    let mut lines: Vec<(Instant, usize, String)> = Vec::new();
    let mut seq = 0;
    let mut push = |at: Instant, line: String| {
        lines.push((at, seq, line));
        seq += 1;
    };
    for inc in lock(&world.all).iter() {
        for e in inc.log.entries() {
            let c = &e.change;
            let holder = c.current.as_ref().map(|h| format!(" {}#{}", h.participant_id, h.token)).unwrap_or_default();
            let prev =
                c.previous.as_ref().map(|h| format!(" (was {}#{})", h.participant_id, h.token)).unwrap_or_default();
            push(e.at, format!("{} {:?}/{:?}{holder}{prev}", inc.id, c.kind, c.reason));
        }
        if let Some((at, how)) = *lock(&inc.ended) {
            push(at, format!("{} {how}", inc.id));
        }
    }
    for s in world.work.spans() {
        push(s.started, format!("{} work starts (token {})", s.participant, s.token));
        if let Some(end) = s.ended {
            push(end, format!("{} work ends (token {})", s.participant, s.token));
        }
    }
    lines.sort_by_key(|(at, seq, _)| (*at, *seq));
    lines.into_iter().map(|(at, _, l)| format!("{:>8} {l}", secs(at.saturating_duration_since(origin)))).collect()
}
