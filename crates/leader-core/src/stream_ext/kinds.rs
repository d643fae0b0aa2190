use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::Stream;
use pin_project_lite::pin_project;

use crate::{ChangeKinds, LeadershipChange};

pin_project! {
    /// Stream of [`kinds`](crate::LeadershipStreamExt::kinds).
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Kinds<S> {
        #[pin]
        stream: S,
        kinds: ChangeKinds,
        // `missed` of the changes dropped since the last one yielded.
        carry: u64,
    }
}

impl<S> Kinds<S> {
    pub(super) fn new(stream: S, kinds: ChangeKinds) -> Self {
        Kinds { stream, kinds, carry: 0 }
    }

    /// The set of kinds it passes.
    pub fn change_kinds(&self) -> ChangeKinds {
        self.kinds
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably; taking items from it directly skips this filter.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, pinned, mutably; taking items from it directly skips this filter.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().stream
    }

    /// The inner stream. The `missed` count of changes dropped since the last one yielded is lost.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for Kinds<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        loop {
            match futures::ready!(this.stream.as_mut().poll_next(cx)) {
                Some(c) if !this.kinds.matches(&c) => *this.carry += c.missed,
                Some(mut c) => {
                    c.missed += std::mem::take(this.carry);
                    return Poll::Ready(Some(c));
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.stream.size_hint().1)
    }
}

impl<S: FusedStream<Item = LeadershipChange>> FusedStream for Kinds<S> {
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}
