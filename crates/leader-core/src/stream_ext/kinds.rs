use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::{ChangeKinds, LeadershipChange};

pin_project! {
    /// Stream of [`kinds`](crate::LeadershipStreamExt::kinds).
    #[must_use = "streams do nothing unless polled"]
    pub struct Kinds<S> {
        #[pin]
        stream: S,
        kinds: ChangeKinds,
    }
}

impl<S> Kinds<S> {
    pub(super) fn new(stream: S, kinds: ChangeKinds) -> Self {
        Kinds { stream, kinds }
    }

    /// The inner stream.
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
                Some(c) if !this.kinds.contains(c.kind) => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}
