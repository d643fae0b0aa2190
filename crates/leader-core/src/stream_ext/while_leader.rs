use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::LeadershipChange;

pin_project! {
    /// Stream of [`while_leader`](crate::LeadershipStreamExt::while_leader).
    #[must_use = "streams do nothing unless polled"]
    pub struct WhileLeader<S> {
        #[pin]
        stream: S,
        done: bool,
    }
}

impl<S> WhileLeader<S> {
    pub(super) fn new(stream: S) -> Self {
        WhileLeader { stream, done: false }
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for WhileLeader<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match futures::ready!(this.stream.poll_next(cx)) {
            Some(c) if c.is_leader => Poll::Ready(Some(c)),
            _ => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
    }
}
