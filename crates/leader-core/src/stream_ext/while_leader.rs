use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::Stream;
use pin_project_lite::pin_project;

use super::{tenure_of, Tenure};
use crate::LeadershipChange;

/// Where a [`WhileLeader`] is.
#[derive(Debug)]
enum State {
    /// Skipping changes until one with `is_leader`; holds the `missed` count of those skipped.
    Waiting(u64),
    /// Yielding the changes of this tenure.
    Leading(Tenure),
    /// The tenure (or the input) ended.
    Done,
}

pin_project! {
    /// Stream of [`while_leader`](crate::LeadershipStreamExt::while_leader).
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct WhileLeader<S> {
        #[pin]
        stream: S,
        state: State,
    }
}

impl<S> WhileLeader<S> {
    pub(super) fn new(stream: S) -> Self {
        WhileLeader { stream, state: State::Waiting(0) }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably; changes taken from it directly are not looked at.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, pinned, mutably; changes taken from it directly are not looked at.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().stream
    }

    /// The inner stream: after this stream ended, the changes after the one that ended the tenure
    /// (that one was taken from it and is not given back).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for WhileLeader<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        loop {
            if matches!(this.state, State::Done) {
                return Poll::Ready(None);
            }
            let Some(mut change) = futures::ready!(this.stream.as_mut().poll_next(cx)) else {
                *this.state = State::Done;
                return Poll::Ready(None);
            };
            match this.state {
                State::Waiting(carry) if change.is_leader => {
                    change.missed += *carry;
                    *this.state = State::Leading(tenure_of(&change));
                    return Poll::Ready(Some(change));
                }
                State::Waiting(carry) => *carry += change.missed,
                State::Leading(tenure) if change.is_leader && *tenure == tenure_of(&change) => {
                    return Poll::Ready(Some(change));
                }
                State::Leading(_) | State::Done => {
                    *this.state = State::Done;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.state {
            State::Done => (0, Some(0)),
            _ => (0, self.stream.size_hint().1),
        }
    }
}

impl<S: Stream<Item = LeadershipChange>> FusedStream for WhileLeader<S> {
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
