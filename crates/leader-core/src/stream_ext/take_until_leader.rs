use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::LeadershipChange;

pin_project! {
    /// Stream of [`take_until_leader`](crate::LeadershipStreamExt::take_until_leader).
    #[must_use = "streams do nothing unless polled"]
    pub struct TakeUntilLeader<S> {
        #[pin]
        stream: S,
        done: bool,
    }
}

impl<S> TakeUntilLeader<S> {
    pub(super) fn new(stream: S) -> Self {
        TakeUntilLeader { stream, done: false }
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for TakeUntilLeader<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let item = futures::ready!(this.stream.poll_next(cx));
        *this.done = item.as_ref().is_none_or(|c| c.is_leader);
        Poll::Ready(item)
    }
}
