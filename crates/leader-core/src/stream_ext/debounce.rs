use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FusedStream;
use futures::{Future, Stream};
use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};

use crate::{ChangeKind, LeadershipChange};

pin_project! {
    /// Stream of [`debounce`](crate::LeadershipStreamExt::debounce).
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Debounce<S> {
        #[pin]
        stream: S,
        // Created on first use, so that building the stream needs no runtime.
        timer: Option<Pin<Box<Sleep>>>,
        quiet: Duration,
        // The merged run of live `LeaderChanged` held back until `timer` fires.
        pending: Option<LeadershipChange>,
        // A change that flushed `pending`: yielded right after it.
        queued: Option<LeadershipChange>,
        upstream_done: bool,
    }
}

impl<S> Debounce<S> {
    pub(super) fn new(stream: S, quiet: Duration) -> Self {
        Debounce { stream, timer: None, quiet, pending: None, queued: None, upstream_done: false }
    }

    /// The quiet period.
    pub fn quiet(&self) -> Duration {
        self.quiet
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably; changes taken from it directly bypass the held-back one.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, pinned, mutably; changes taken from it directly bypass the held-back one.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().stream
    }

    /// The inner stream. A change held back (a `LeaderChanged` waiting for quiet, or the change
    /// that flushed it and was not yet yielded) is dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Whether `change` may merge into a run: a live `LeaderChanged` (not the subscription snapshot).
fn merges(change: &LeadershipChange) -> bool {
    change.kind == ChangeKind::LeaderChanged && !change.is_snapshot()
}

impl<S: Stream<Item = LeadershipChange>> Stream for Debounce<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        if let Some(change) = this.queued.take() {
            return Poll::Ready(Some(change));
        }
        while !*this.upstream_done {
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(mut change)) if merges(&change) => {
                    if let Some(replaced) = this.pending.take() {
                        // The run reads as one change from the holder before it; only overflow
                        // upstream counts as missed.
                        change.previous = replaced.previous;
                        change.missed += replaced.missed;
                    }
                    *this.pending = Some(change);
                    let at = Instant::now() + *this.quiet;
                    match this.timer.as_mut() {
                        Some(t) => t.as_mut().reset(at),
                        None => *this.timer = Some(Box::pin(sleep(*this.quiet))),
                    }
                }
                Poll::Ready(Some(change)) => {
                    return Poll::Ready(Some(match this.pending.take() {
                        Some(run) => {
                            *this.queued = Some(change);
                            run
                        }
                        None => change,
                    }));
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        if *this.upstream_done {
            return Poll::Ready(this.pending.take());
        }
        if this.pending.is_some() && this.timer.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(this.pending.take());
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let held = usize::from(self.pending.is_some()) + usize::from(self.queued.is_some());
        if self.upstream_done {
            return (held, Some(held));
        }
        let upper = self.stream.size_hint().1.and_then(|n| n.checked_add(held));
        (held, upper)
    }
}

impl<S: Stream<Item = LeadershipChange>> FusedStream for Debounce<S> {
    fn is_terminated(&self) -> bool {
        self.upstream_done && self.pending.is_none() && self.queued.is_none()
    }
}
