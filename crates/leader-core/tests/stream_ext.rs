//! Each combinator on synthetic streams.

use std::time::{Duration, SystemTime};

use futures::{stream, StreamExt};
use leader_core::{ChangeKind, ChangeKinds, ChangeReason, FencingToken, LeadershipChange, LeadershipStreamExt, Lease};

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

fn change(kind: ChangeKind, holder: Option<(&str, u64)>) -> LeadershipChange {
    LeadershipChange {
        kind,
        is_leader: kind == ChangeKind::Acquired,
        current: holder.map(|(i, t)| lease(i, t)),
        previous: None,
        reason: ChangeReason::Observed,
        missed: 0,
        at: SystemTime::now(),
    }
}

fn sample() -> Vec<LeadershipChange> {
    vec![
        change(ChangeKind::LeaderChanged, Some(("b", 1))),
        change(ChangeKind::LeaderChanged, Some(("b", 1))),
        change(ChangeKind::Acquired, Some(("a", 2))),
        change(ChangeKind::Lost, None),
        change(ChangeKind::LeaderChanged, Some(("c", 3))),
    ]
}

fn kinds(v: &[LeadershipChange]) -> Vec<ChangeKind> {
    v.iter().map(|c| c.kind).collect()
}

#[tokio::test]
async fn kinds_filters_by_set() {
    let out: Vec<_> = stream::iter(sample()).kinds(ChangeKinds::ACQUIRED | ChangeKinds::LOST).collect().await;
    assert_eq!(kinds(&out), [ChangeKind::Acquired, ChangeKind::Lost]);
    let out: Vec<_> = stream::iter(sample()).kinds(ChangeKind::LeaderChanged).collect().await;
    assert_eq!(out.len(), 3);
    let out: Vec<_> = stream::iter(sample()).kinds([ChangeKind::Lost]).collect().await;
    assert_eq!(kinds(&out), [ChangeKind::Lost]);
}

#[tokio::test]
async fn take_until_leader_is_inclusive() {
    let out: Vec<_> = stream::iter(sample()).take_until_leader().collect().await;
    assert_eq!(kinds(&out), [ChangeKind::LeaderChanged, ChangeKind::LeaderChanged, ChangeKind::Acquired]);
}

#[tokio::test]
async fn while_leader_ends_at_the_first_non_leader_change() {
    let out: Vec<_> = stream::iter(sample().into_iter().skip(2)).while_leader().collect().await;
    assert_eq!(kinds(&out), [ChangeKind::Acquired]);
    let out: Vec<_> = stream::iter(sample()).while_leader().collect().await;
    assert!(out.is_empty(), "a follower's stream ends at once");
}

#[tokio::test]
async fn distinct_until_changed_drops_repeats() {
    let out: Vec<_> = stream::iter(sample()).distinct_until_changed().collect().await;
    assert_eq!(out.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn debounce_emits_the_latest_after_quiet() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).debounce(Duration::from_millis(100));
    tokio::pin!(out);
    for c in sample().into_iter().take(3) {
        tx.send(c).unwrap();
    }
    let first = out.next().await.unwrap();
    assert_eq!(first.kind, ChangeKind::Acquired, "only the latest of a burst");
    assert_eq!(first.missed, 2, "and it counts the ones it replaced");
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(change(ChangeKind::Lost, None)).unwrap();
    drop(tx);
    assert_eq!(out.next().await.unwrap().kind, ChangeKind::Lost);
    assert!(out.next().await.is_none());
}

#[tokio::test]
async fn on_transition_calls_the_right_callback() {
    let (mut acquired, mut lost) = (0, 0);
    stream::iter(sample()).on_transition(|_| acquired += 1, |_| lost += 1).await;
    assert_eq!((acquired, lost), (1, 1));
}

#[test]
fn combinators_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let s = stream::iter(sample()).kinds(ChangeKinds::ALL).take_until_leader().distinct_until_changed();
    is_send(&s);
    let d = stream::iter(sample()).debounce(Duration::from_millis(1)).while_leader();
    is_send(&d);
}
