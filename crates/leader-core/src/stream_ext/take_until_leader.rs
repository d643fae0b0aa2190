use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::Stream;
use pin_project_lite::pin_project;

use crate::LeadershipChange;

pin_project! {
    /// Stream of [`take_until_leader`](crate::LeadershipStreamExt::take_until_leader).
    #[derive(Debug)]
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

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, pinned, mutably.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().stream
    }

    /// The inner stream: after this stream ended at a leading change, the changes after it.
    pub fn into_inner(self) -> S {
        self.stream
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

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (0, self.stream.size_hint().1)
        }
    }
}

impl<S: Stream<Item = LeadershipChange>> FusedStream for TakeUntilLeader<S> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
