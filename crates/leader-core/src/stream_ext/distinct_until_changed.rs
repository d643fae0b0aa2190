use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::{ChangeKind, FencingToken, LeadershipChange};

type Key = (ChangeKind, Option<(String, FencingToken)>);

pin_project! {
    /// Stream of [`distinct_until_changed`](crate::LeadershipStreamExt::distinct_until_changed).
    #[must_use = "streams do nothing unless polled"]
    pub struct DistinctUntilChanged<S> {
        #[pin]
        stream: S,
        last: Option<Key>,
    }
}

impl<S> DistinctUntilChanged<S> {
    pub(super) fn new(stream: S) -> Self {
        DistinctUntilChanged { stream, last: None }
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for DistinctUntilChanged<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        loop {
            let Some(change) = futures::ready!(this.stream.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let key = (change.kind, change.current.as_ref().map(|l| (l.instance_id.clone(), l.token)));
            if this.last.as_ref() != Some(&key) {
                *this.last = Some(key);
                return Poll::Ready(Some(change));
            }
        }
    }
}
