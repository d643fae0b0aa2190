//! Each combinator on synthetic streams: every sequence (up to length 4) of the kinds a `changes()`
//! stream can carry, with and without `missed`, checked against the rules of `LeadershipStreamExt`
//! as properties and against a small model of each combinator; then a few single cases, and one
//! real election for `while_leader` and `is_snapshot`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::executor::block_on;
use futures::stream::{self, FusedStream};
use futures::{Stream, StreamExt};
use leader_core::{
    ChangeKind, ChangeKinds, ChangeReason, Debounce, DistinctUntilChanged, Election, ElectionOptions, FencingToken,
    Kinds, LeadershipChange, LeadershipStreamExt, Lease, TakeUntilLeader, WhileLeader,
};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Synthetic streams

/// Another participant, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    X,
    Y,
    Nobody,
}

/// One item of a synthetic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    /// The subscription snapshot while this participant leads (a new tenure).
    SnapAcquired,
    /// The subscription snapshot while X leads.
    SnapChanged,
    /// A live `Acquired` (a new tenure, with a fresh token).
    Acquired,
    /// An `Acquired` repeating the last tenure (same holder and token): not something the core
    /// sends, but a combinator must not take it for a new tenure.
    AcquiredAgain,
    /// A live `Lost` naming the last tenure.
    Lost,
    /// A live `LeaderChanged` to another holder (or none).
    Changed(Holder),
}

const ALPHABET: [Sym; 8] = [
    Sym::SnapAcquired,
    Sym::SnapChanged,
    Sym::Acquired,
    Sym::AcquiredAgain,
    Sym::Lost,
    Sym::Changed(Holder::X),
    Sym::Changed(Holder::Y),
    Sym::Changed(Holder::Nobody),
];

fn lease(instance: &str, token: u64) -> Lease {
    Lease {
        election: "e".into(),
        participant_id: instance.into(),
        instance_id: instance.into(),
        token: FencingToken::new(token),
        acquired_at: None,
        expires_at: None,
        expires_in: None,
        metadata: Default::default(),
        handle: Default::default(),
    }
}

fn holder_lease(h: Holder) -> Option<Lease> {
    match h {
        Holder::X => Some(lease("x", 1)),
        Holder::Y => Some(lease("y", 2)),
        Holder::Nobody => None,
    }
}

/// Each item's `at` is `UNIX_EPOCH + index` seconds: its id, to follow it through a combinator.
fn id(change: &LeadershipChange) -> u64 {
    change.at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX)
}

/// How `missed` is set on a synthetic stream.
#[derive(Debug, Clone, Copy)]
enum Missed {
    /// Never.
    None,
    /// Item `i` has `2^i` (sums tell which items contributed).
    Every,
    /// Item `i` has `2^i` for odd `i` only.
    Odd,
}

const MISSED: [Missed; 3] = [Missed::None, Missed::Every, Missed::Odd];

/// The changes for `syms`, as the core would build them for participant "me" (tokens from 10 up).
fn build(syms: &[Sym], missed: Missed) -> Vec<LeadershipChange> {
    let mut token = 10;
    let mut tenure: Option<Lease> = None;
    let mut holder: Option<Lease> = None;
    let mut out = Vec::new();
    for (i, sym) in syms.iter().enumerate() {
        let (kind, is_leader, current, previous, reason) = match *sym {
            Sym::SnapAcquired | Sym::Acquired => {
                token += 1;
                let me = lease("me", token);
                tenure = Some(me.clone());
                let snapshot = *sym == Sym::SnapAcquired;
                let previous = if snapshot { None } else { holder.clone() };
                let reason = if snapshot { ChangeReason::Subscribed } else { ChangeReason::Elected };
                (ChangeKind::Acquired, true, Some(me), previous, reason)
            }
            Sym::AcquiredAgain => {
                let me = tenure.clone().unwrap_or_else(|| lease("me", token));
                (ChangeKind::Acquired, true, Some(me), holder.clone(), ChangeReason::Elected)
            }
            Sym::Lost => (ChangeKind::Lost, false, None, tenure.clone(), ChangeReason::Expired),
            Sym::SnapChanged => {
                (ChangeKind::LeaderChanged, false, holder_lease(Holder::X), None, ChangeReason::Subscribed)
            }
            Sym::Changed(h) => {
                (ChangeKind::LeaderChanged, false, holder_lease(h), holder.clone(), ChangeReason::Observed)
            }
        };
        holder = current.clone();
        let missed = match missed {
            Missed::None => 0,
            Missed::Every => 1 << i,
            Missed::Odd if i % 2 == 1 => 1 << i,
            Missed::Odd => 0,
        };
        out.push(LeadershipChange {
            kind,
            is_leader,
            current,
            previous,
            reason,
            missed,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64),
        });
    }
    out
}

/// Every sequence over `alphabet` of length 0 to `max`.
fn sequences(alphabet: &[Sym], max: usize) -> Vec<Vec<Sym>> {
    let mut all = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..max {
        let mut next = Vec::new();
        for seq in &last {
            for sym in alphabet {
                let mut s: Vec<Sym> = seq.clone();
                s.push(*sym);
                next.push(s);
            }
        }
        all.extend(next.iter().cloned());
        last = next;
    }
    all
}

/// Every case: each sequence up to length 4 with each way of setting `missed` in `missed`.
fn cases_with(alphabet: &[Sym], missed: &[Missed]) -> Vec<(Vec<Sym>, Vec<LeadershipChange>)> {
    let seqs = sequences(alphabet, 4);
    seqs.iter().flat_map(|syms| missed.iter().map(|m| (syms.clone(), build(syms, *m)))).collect()
}

fn cases(alphabet: &[Sym]) -> Vec<(Vec<Sym>, Vec<LeadershipChange>)> {
    cases_with(alphabet, &MISSED)
}

/// What a test compares: id, kind, missed, and the tokens of current and previous.
type Sig = (u64, ChangeKind, u64, Option<u64>, Option<u64>);

fn sig(c: &LeadershipChange) -> Sig {
    (id(c), c.kind, c.missed, c.current.as_ref().map(|l| l.token.get()), c.previous.as_ref().map(|l| l.token.get()))
}

fn sigs(v: &[LeadershipChange]) -> Vec<Sig> {
    v.iter().map(sig).collect()
}

fn run<S: Stream<Item = LeadershipChange>>(s: S) -> Vec<LeadershipChange> {
    block_on(s.collect())
}

/// Holder instance and token: what tells two tenures (or holders) apart.
fn holder_key(c: &LeadershipChange) -> Option<(String, u64)> {
    c.current.as_ref().map(|l| (l.instance_id.clone(), l.token.get()))
}

fn total_missed(v: &[LeadershipChange]) -> u64 {
    v.iter().map(|c| c.missed).sum()
}

// ---------------------------------------------------------------------------------------------
// kinds

#[test]
fn kinds_passes_exactly_the_matching_changes_for_every_set_and_order() {
    let mut checked = 0;
    // Without missed, and with a distinct count on every item (16 sets: keep the count down).
    let all = cases_with(&ALPHABET, &[Missed::None, Missed::Every]);
    for bits in 0u8..16 {
        let (acq, lost, changed, snap) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        let mut set = ChangeKinds::NONE;
        for (on, flag) in [
            (acq, ChangeKinds::ACQUIRED),
            (lost, ChangeKinds::LOST),
            (changed, ChangeKinds::LEADER_CHANGED),
            (snap, ChangeKinds::SNAPSHOT),
        ] {
            if on {
                set = set | flag;
            }
        }
        let wanted = |c: &LeadershipChange| {
            let kind_in = match c.kind {
                ChangeKind::Acquired => acq,
                ChangeKind::Lost => lost,
                ChangeKind::LeaderChanged => changed,
            };
            kind_in && (c.reason != ChangeReason::Subscribed || snap)
        };
        for (syms, input) in &all {
            let out = run(stream::iter(input.clone()).kinds(set));
            // Model: the wanted changes, each carrying the `missed` of those dropped before it.
            let mut expected = Vec::new();
            let mut carry = 0;
            for c in input {
                if wanted(c) {
                    let mut c = c.clone();
                    c.missed += std::mem::take(&mut carry);
                    expected.push(c);
                } else {
                    carry += c.missed;
                }
            }
            assert_eq!(sigs(&out), sigs(&expected), "kinds({set:?}) of {syms:?}");
            // Properties: no snapshot without SNAPSHOT; `missed` only ever carries overflow.
            assert!(snap || out.iter().all(|c| !c.is_snapshot()), "{set:?} {syms:?}");
            assert!(total_missed(&out) + carry == total_missed(input), "{set:?} {syms:?}");
            if input.iter().all(|c| c.missed == 0) {
                assert!(out.iter().all(|c| c.missed == 0), "dropping is not overflow: {set:?} {syms:?}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100_000, "{checked} cases");
}

#[test]
fn kinds_snapshot_flag_combines_with_the_kind_bits() {
    let input = build(&[Sym::SnapAcquired, Sym::Lost, Sym::Acquired], Missed::None);
    let ids = |set: ChangeKinds| run(stream::iter(input.clone()).kinds(set)).iter().map(id).collect::<Vec<_>>();
    assert_eq!(ids(ChangeKinds::ACQUIRED), [2], "a live Acquired only");
    assert_eq!(ids(ChangeKinds::ACQUIRED | ChangeKinds::SNAPSHOT), [0, 2], "the Acquired snapshot too");
    assert_eq!(ids(ChangeKinds::LOST | ChangeKinds::SNAPSHOT), [1], "a snapshot of another kind: not passed");
    assert_eq!(ids(ChangeKinds::SNAPSHOT), Vec::<u64>::new(), "SNAPSHOT alone selects no kind");
    assert_eq!(ids(ChangeKinds::ALL), [1, 2], "ALL is every kind, without snapshots");
    assert_eq!(ids(ChangeKinds::ALL | ChangeKinds::SNAPSHOT), [0, 1, 2]);
    // One kind, or an array of kinds, as before.
    assert_eq!(ids(ChangeKind::Lost.into()), [1]);
    assert_eq!(ids([ChangeKind::Acquired, ChangeKind::Lost].into()), [1, 2]);
    let snap_changed = build(&[Sym::SnapChanged, Sym::Changed(Holder::Y)], Missed::None);
    let out = run(stream::iter(snap_changed).kinds(ChangeKinds::LEADER_CHANGED | ChangeKinds::SNAPSHOT));
    assert_eq!(out.iter().map(|c| c.is_snapshot()).collect::<Vec<_>>(), [true, false]);
}

// ---------------------------------------------------------------------------------------------
// take_until_leader

#[test]
fn take_until_leader_is_the_prefix_through_the_first_leading_change() {
    for (syms, input) in cases(&ALPHABET) {
        let out = run(stream::iter(input.clone()).take_until_leader());
        let end = input.iter().position(|c| c.is_leader).map_or(input.len(), |i| i + 1);
        assert_eq!(sigs(&out), sigs(&input[..end]), "{syms:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// while_leader

#[test]
fn while_leader_yields_the_first_leading_run_of_one_tenure() {
    for (syms, input) in cases(&ALPHABET) {
        let out = run(stream::iter(input.clone()).while_leader());
        // Model: from the first leading change, while the changes lead with the same tenure.
        let expected = match input.iter().position(|c| c.is_leader) {
            None => Vec::new(),
            Some(start) => {
                let tenure = holder_key(&input[start]);
                let len = input[start..].iter().take_while(|c| c.is_leader && holder_key(c) == tenure).count();
                let mut run = input[start..start + len].to_vec();
                run[0].missed += total_missed(&input[..start]);
                run
            }
        };
        assert_eq!(sigs(&out), sigs(&expected), "{syms:?}");
        // Properties: everything yielded leads, in one tenure; a follower's stream taken before it
        // leads yields that tenure; the change that ends it is not yielded.
        assert!(out.iter().all(|c| c.is_leader), "{syms:?}");
        assert!(out.windows(2).all(|w| holder_key(&w[0]) == holder_key(&w[1])), "{syms:?}");
        assert_eq!(out.is_empty(), !input.iter().any(|c| c.is_leader), "{syms:?}");
        assert!(out.iter().all(|c| c.kind != ChangeKind::Lost), "{syms:?}");
    }
}

#[test]
fn while_leader_taken_before_leading_waits_for_the_tenure() {
    let input =
        build(&[Sym::SnapChanged, Sym::Changed(Holder::Nobody), Sym::Acquired, Sym::Lost, Sym::Acquired], Missed::None);
    let out = run(stream::iter(input).while_leader());
    assert_eq!(out.iter().map(id).collect::<Vec<_>>(), [2], "the Acquired; ends at the Lost");
    // A tenure in progress at subscription counts.
    let input = build(&[Sym::SnapAcquired, Sym::AcquiredAgain, Sym::Lost], Missed::None);
    assert_eq!(run(stream::iter(input).while_leader()).iter().map(id).collect::<Vec<_>>(), [0, 1]);
}

// ---------------------------------------------------------------------------------------------
// distinct_until_changed

#[test]
fn distinct_until_changed_drops_repeats_and_carries_their_missed() {
    for (syms, input) in cases(&ALPHABET) {
        let out = run(stream::iter(input.clone()).distinct_until_changed());
        let key = |c: &LeadershipChange| (c.kind, holder_key(c));
        let mut expected: Vec<LeadershipChange> = Vec::new();
        let mut carry = 0;
        for c in &input {
            if expected.last().is_some_and(|last| key(last) == key(c)) {
                carry += c.missed;
            } else {
                let mut c = c.clone();
                c.missed += std::mem::take(&mut carry);
                expected.push(c);
            }
        }
        assert_eq!(sigs(&out), sigs(&expected), "{syms:?}");
        assert!(out.windows(2).all(|w| key(&w[0]) != key(&w[1])), "no repeat left: {syms:?}");
        assert_eq!(total_missed(&out) + carry, total_missed(&input), "only overflow is counted: {syms:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// on_transition

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Acquired(u64),
    Lost(u64),
}

fn transitions(input: Vec<LeadershipChange>) -> Vec<Call> {
    let calls = std::sync::Mutex::new(Vec::new());
    let push = |call: Call| calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    block_on(stream::iter(input).on_transition(|c| push(Call::Acquired(id(c))), |c| push(Call::Lost(id(c)))));
    calls.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn on_transition_calls_stay_paired_for_every_order() {
    for (syms, input) in cases(&ALPHABET) {
        let calls = transitions(input.clone());
        // Property: calls alternate, starting with on_acquired.
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(matches!(call, Call::Acquired(_)), i % 2 == 0, "{syms:?}: {calls:?}");
        }
        // Model: a tenure opens at a leading change of another tenure than the open one, and
        // closes at the first change that does not lead, or at another tenure's leading change.
        let mut expected = Vec::new();
        let mut open: Option<Option<(String, u64)>> = None;
        for (i, c) in input.iter().enumerate() {
            let i = i as u64;
            if c.is_leader {
                if open.as_ref() == Some(&holder_key(c)) {
                    continue;
                }
                if open.is_some() {
                    expected.push(Call::Lost(i));
                }
                expected.push(Call::Acquired(i));
                open = Some(holder_key(c));
            } else if open.take().is_some() {
                expected.push(Call::Lost(i));
            }
        }
        assert_eq!(calls, expected, "{syms:?}");
        // Properties: every on_acquired is given a leading change, the snapshot included; a Lost
        // right after a tenure's Acquired always reaches on_lost.
        for call in &calls {
            if let Call::Acquired(i) = call {
                assert!(input[*i as usize].is_leader, "{syms:?}");
            }
        }
        for w in input.windows(2) {
            if w[0].is_leader && w[1].kind == ChangeKind::Lost {
                assert!(calls.contains(&Call::Lost(id(&w[1]))), "{syms:?}: {calls:?}");
            }
        }
    }
}

#[test]
fn on_transition_handles_snapshots_and_gaps() {
    use Call::*;
    let t = |syms: &[Sym]| transitions(build(syms, Missed::None));
    assert_eq!(t(&[Sym::Lost, Sym::Acquired, Sym::Lost]), [Acquired(1), Lost(2)], "a leading Lost is ignored");
    assert_eq!(t(&[Sym::SnapAcquired, Sym::Lost]), [Acquired(0), Lost(1)], "the snapshot opens its tenure");
    assert_eq!(t(&[Sym::SnapChanged, Sym::Lost]), [], "a snapshot while following opens nothing");
    assert_eq!(t(&[Sym::Acquired, Sym::Lost, Sym::Lost]), [Acquired(0), Lost(1)], "one on_lost per tenure");
    assert_eq!(t(&[Sym::Acquired, Sym::AcquiredAgain]), [Acquired(0)], "a repeat is the same tenure");
    // An overflow hid the Lost: the next change that shows the tenure over closes it.
    assert_eq!(t(&[Sym::Acquired, Sym::Changed(Holder::Y)]), [Acquired(0), Lost(1)]);
    assert_eq!(t(&[Sym::Acquired, Sym::Acquired, Sym::Lost]), [Acquired(0), Lost(1), Acquired(1), Lost(2)]);
}

// ---------------------------------------------------------------------------------------------
// debounce

const QUIET: Duration = Duration::from_millis(100);
const GAP: Duration = Duration::from_millis(300);

/// What debounce should emit for `input`, item `i` sent at `times[i]`, the input ending at `end`:
/// (change, when).
fn debounce_model(input: &[LeadershipChange], times: &[Duration], end: Duration) -> Vec<(LeadershipChange, Duration)> {
    let mut out = Vec::new();
    let mut pending: Option<(LeadershipChange, Duration)> = None;
    let merges = |c: &LeadershipChange| c.kind == ChangeKind::LeaderChanged && !c.is_snapshot();
    let flush = |pending: &mut Option<(LeadershipChange, Duration)>, now: Duration, out: &mut Vec<_>| {
        if let Some((c, last)) = pending.take() {
            out.push((c, now.min(last + QUIET)));
        }
    };
    for (c, &t) in input.iter().zip(times) {
        if merges(c) {
            let mut c = c.clone();
            match pending.take() {
                Some((run, last)) if t - last < QUIET => {
                    c.previous = run.previous;
                    c.missed += run.missed;
                }
                Some(run) => out.push((run.0, run.1 + QUIET)),
                None => {}
            }
            pending = Some((c, t));
        } else {
            flush(&mut pending, t, &mut out);
            out.push((c.clone(), t));
        }
    }
    flush(&mut pending, end, &mut out);
    out
}

#[test]
fn debounce_passes_acquired_and_lost_at_once_and_merges_only_leader_changed_runs() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    // AcquiredAgain tells debounce nothing new: leave it out to keep the case count down.
    let alphabet: Vec<Sym> = ALPHABET.iter().copied().filter(|s| *s != Sym::AcquiredAgain).collect();
    let mut checked = 0;
    for syms in sequences(&alphabet, 4) {
        for missed in [Missed::None, Missed::Every] {
            let input = build(&syms, missed);
            // Each gap (before items 1.., and before the end) is 0 or GAP.
            for gaps in 0u32..(1 << syms.len()) {
                let gap = |i: usize| if gaps & (1 << i) != 0 { GAP } else { Duration::ZERO };
                let mut times = Vec::new();
                let mut now = Duration::ZERO;
                for i in 0..input.len() {
                    if i > 0 {
                        now += gap(i - 1);
                    }
                    times.push(now);
                }
                let end = if input.is_empty() { Duration::ZERO } else { now + gap(input.len() - 1) };
                let out = rt.block_on(debounce_run(input.clone(), times.clone(), end));
                let expected = debounce_model(&input, &times, end);
                let got: Vec<_> = out.iter().map(|(c, t)| (sig(c), *t)).collect();
                let want: Vec<_> = expected.iter().map(|(c, t)| (sig(c), *t)).collect();
                assert_eq!(got, want, "{syms:?} {missed:?} times {times:?} end {end:?}");
                // Properties: Acquired/Lost (and snapshots) unchanged, in order, on time; the
                // output keeps the input's order; merged changes are not counted as missed.
                let immediate = |c: &LeadershipChange| c.kind != ChangeKind::LeaderChanged || c.is_snapshot();
                let passed: Vec<_> = out.iter().filter(|(c, _)| immediate(c)).map(|(c, t)| (sig(c), *t)).collect();
                let sent: Vec<_> =
                    input.iter().zip(&times).filter(|(c, _)| immediate(c)).map(|(c, t)| (sig(c), *t)).collect();
                assert_eq!(passed, sent, "{syms:?} {missed:?} {times:?}");
                assert!(out.windows(2).all(|w| id(&w[0].0) < id(&w[1].0)), "{syms:?}");
                assert_eq!(total_missed(&out.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()), total_missed(&input));
                checked += 1;
            }
        }
    }
    assert!(checked > 50_000, "{checked} cases");
}

/// Sends `input[i]` at `times[i]` (from now, paused time) and ends the input at `end`; returns
/// what debounce emitted, and when.
async fn debounce_run(
    input: Vec<LeadershipChange>,
    times: Vec<Duration>,
    end: Duration,
) -> Vec<(LeadershipChange, Duration)> {
    let start = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let producer = tokio::spawn(async move {
        for (c, t) in input.into_iter().zip(times) {
            tokio::time::sleep_until(start + t).await;
            tx.send(c).unwrap_or_else(|_| panic!("the consumer is gone"));
        }
        tokio::time::sleep_until(start + end).await;
    });
    let mut out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).debounce(QUIET);
    let mut got = Vec::new();
    while let Some(c) = out.next().await {
        got.push((c, start.elapsed()));
    }
    assert!(out.is_terminated());
    producer.await.unwrap_or_else(|e| panic!("producer: {e}"));
    got
}

#[tokio::test(start_paused = true)]
async fn debounce_flushes_the_held_change_before_a_lost() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).debounce(QUIET);
    let input = build(
        &[Sym::Acquired, Sym::Changed(Holder::X), Sym::Changed(Holder::Y), Sym::Lost, Sym::Changed(Holder::X)],
        Missed::None,
    );
    let start = Instant::now();
    for c in input {
        tx.send(c).unwrap();
    }
    assert_eq!(out.next().await.map(|c| id(&c)), Some(0), "Acquired at once");
    let merged = out.next().await.unwrap();
    assert_eq!((id(&merged), merged.missed), (2, 0), "the run's last, merged items not counted");
    assert_eq!(merged.previous.as_ref().map(|l| l.instance_id.as_str()), Some("me"), "previous: before the run");
    assert_eq!(out.next().await.map(|c| id(&c)), Some(3), "then the Lost");
    assert_eq!(start.elapsed(), Duration::ZERO, "none of it waited");
    assert_eq!(out.next().await.map(|c| id(&c)), Some(4));
    assert_eq!(start.elapsed(), QUIET, "a lone LeaderChanged waits for quiet");
    drop(tx);
    assert!(out.next().await.is_none());
    assert!(out.is_terminated());
}

// ---------------------------------------------------------------------------------------------
// The combinators as types: fused, inner stream access, Send

#[test]
fn fused_where_they_can_tell() {
    let input = || build(&[Sym::Changed(Holder::X), Sym::Acquired, Sym::Lost], Missed::None);
    let mut s = stream::iter(input()).take_until_leader();
    assert!(!s.is_terminated());
    block_on(async {
        assert_eq!(s.next().await.map(|c| id(&c)), Some(0));
        assert_eq!(s.next().await.map(|c| id(&c)), Some(1));
    });
    assert!(s.is_terminated(), "ends after the leading change");
    assert!(block_on(s.next()).is_none());

    let mut s = stream::iter(input()).while_leader();
    assert!(!s.is_terminated());
    assert_eq!(block_on(s.next()).map(|c| id(&c)), Some(1));
    assert!(block_on(s.next()).is_none());
    assert!(s.is_terminated());

    let mut s = stream::iter(input()).fuse().kinds(ChangeKinds::ALL);
    assert_eq!(run(&mut s).len(), 3);
    assert!(s.is_terminated());
    let mut s = stream::iter(input()).fuse().distinct_until_changed();
    assert_eq!(run(&mut s).len(), 3);
    assert!(s.is_terminated());
}

#[test]
fn inner_streams_can_be_taken_back() {
    let input = || build(&[Sym::Changed(Holder::X), Sym::Acquired, Sym::Lost, Sym::Acquired], Missed::None);
    // take_until_leader: the rest follows the leading change.
    let mut s = stream::iter(input()).take_until_leader();
    assert_eq!(run(&mut s).len(), 2);
    assert_eq!(run(s.into_inner()).iter().map(id).collect::<Vec<_>>(), [2, 3]);
    // while_leader: the change that ended the tenure was consumed.
    let mut s = stream::iter(input()).while_leader();
    assert_eq!(run(&mut s).len(), 1);
    assert_eq!(run(s.into_inner()).iter().map(id).collect::<Vec<_>>(), [3]);
    // get_ref / get_mut / get_pin_mut reach the same stream.
    let mut s = stream::iter(input()).kinds(ChangeKinds::ACQUIRED);
    assert_eq!(s.change_kinds(), ChangeKinds::ACQUIRED);
    assert_eq!(s.get_ref().size_hint(), (4, Some(4)));
    assert_eq!(block_on(s.get_mut().next()).map(|c| id(&c)), Some(0), "unfiltered");
    let mut pinned = std::pin::pin!(s);
    assert_eq!(block_on(pinned.as_mut().get_pin_mut().next()).map(|c| id(&c)), Some(1));
    let mut s = stream::iter(input()).distinct_until_changed();
    assert_eq!(block_on(s.get_mut().next()).map(|c| id(&c)), Some(0));
    assert_eq!(s.get_ref().size_hint(), (3, Some(3)));
    assert_eq!(run(s.into_inner()).len(), 3);
    let mut s = stream::iter(input()).debounce(QUIET);
    assert_eq!(s.quiet(), QUIET);
    assert_eq!(block_on(s.get_mut().next()).map(|c| id(&c)), Some(0));
    assert_eq!(s.get_ref().size_hint(), (3, Some(3)));
    assert_eq!(run(s.into_inner()).len(), 3);
}

/// Compile-time: every combinator (and on_transition's future) is Send when its input is, and
/// Unpin when its input is.
#[allow(dead_code)]
fn combinators_are_send_and_unpin_when_the_input_is<S: Stream<Item = LeadershipChange> + Send + Unpin>(s: S) {
    fn send_unpin<T: Send + Unpin>() {}
    fn send<T: Send>(_: &T) {}
    send_unpin::<Kinds<S>>();
    send_unpin::<TakeUntilLeader<S>>();
    send_unpin::<WhileLeader<S>>();
    send_unpin::<DistinctUntilChanged<S>>();
    send_unpin::<Debounce<S>>();
    send(&s.on_transition(|_| {}, |_| {}));
}

#[test]
fn combinators_of_the_real_stream_are_send() {
    fn send<T: Send>(_: &T) {}
    let election = Election::new(Arc::new(leader_memory::MemoryStore::new()), "e", "a", options()).unwrap();
    send(&election.changes().kinds(ChangeKinds::ALL).take_until_leader().distinct_until_changed());
    send(&election.changes().debounce(QUIET).while_leader());
    send(&election.changes().on_transition(|_| {}, |_| {}));
}

// ---------------------------------------------------------------------------------------------
// A real election (memory store)

fn options() -> ElectionOptions {
    ElectionOptions::from_lease(Duration::from_secs(3))
}

#[tokio::test(start_paused = true)]
async fn while_leader_on_a_follower_yields_its_tenure_once_it_leads() {
    let store: Arc<dyn leader_core::LeaseStore> = Arc::new(leader_memory::MemoryStore::new());
    let a = Election::new(store.clone(), "jobs", "a", options()).unwrap();
    let b = Election::new(store, "jobs", "b", options()).unwrap();
    a.start().await.unwrap();
    a.wait_for_leadership().await.unwrap();
    b.start().await.unwrap();
    let mut first = b.changes();
    let snapshot = first.next().await.unwrap();
    assert!(snapshot.is_snapshot() && snapshot.kind == ChangeKind::LeaderChanged && !snapshot.is_leader);

    let tenure = tokio::spawn(b.changes().while_leader().collect::<Vec<_>>());
    a.stop().await.unwrap();
    let leadership = tokio::time::timeout(Duration::from_secs(60), b.wait_for_leadership()).await.unwrap().unwrap();
    b.stop().await.unwrap();
    let tenure = tokio::time::timeout(Duration::from_secs(60), tenure).await.unwrap().unwrap();
    assert_eq!(tenure.len(), 1, "{tenure:?}");
    assert_eq!((tenure[0].kind, tenure[0].is_snapshot()), (ChangeKind::Acquired, false));
    assert_eq!(tenure[0].token(), Some(leadership.token()));
    assert!(!first.next().await.unwrap().is_snapshot(), "only the first item is a snapshot");
}
