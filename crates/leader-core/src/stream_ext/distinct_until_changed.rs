use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::Stream;
use pin_project_lite::pin_project;

use super::{tenure_of, Tenure};
use crate::{ChangeKind, LeadershipChange};

pin_project! {
    /// Stream of [`distinct_until_changed`](crate::LeadershipStreamExt::distinct_until_changed).
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct DistinctUntilChanged<S> {
        #[pin]
        stream: S,
        // Kind and holder of the last change yielded.
        last: Option<(ChangeKind, Tenure)>,
        // `missed` of the changes dropped since the last one yielded.
        carry: u64,
    }
}

impl<S> DistinctUntilChanged<S> {
    pub(super) fn new(stream: S) -> Self {
        DistinctUntilChanged { stream, last: None, carry: 0 }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably; changes taken from it directly are not compared.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, pinned, mutably; changes taken from it directly are not compared.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().stream
    }

    /// The inner stream. The `missed` count of changes dropped since the last one yielded is lost.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for DistinctUntilChanged<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        loop {
            let Some(mut change) = futures::ready!(this.stream.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let key = (change.kind, tenure_of(&change));
            if this.last.as_ref() == Some(&key) {
                *this.carry += change.missed;
                continue;
            }
            *this.last = Some(key);
            change.missed += std::mem::take(this.carry);
            return Poll::Ready(Some(change));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.stream.size_hint().1)
    }
}

impl<S: FusedStream<Item = LeadershipChange>> FusedStream for DistinctUntilChanged<S> {
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}
