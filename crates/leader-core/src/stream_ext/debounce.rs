use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Future, Stream};
use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};

use crate::LeadershipChange;

pin_project! {
    /// Stream of [`debounce`](crate::LeadershipStreamExt::debounce).
    #[must_use = "streams do nothing unless polled"]
    pub struct Debounce<S> {
        #[pin]
        stream: S,
        // Created on first use, so that building the stream needs no runtime.
        timer: Option<Pin<Box<Sleep>>>,
        quiet: Duration,
        pending: Option<LeadershipChange>,
        upstream_done: bool,
    }
}

impl<S> Debounce<S> {
    pub(super) fn new(stream: S, quiet: Duration) -> Self {
        Debounce { stream, timer: None, quiet, pending: None, upstream_done: false }
    }
}

impl<S: Stream<Item = LeadershipChange>> Stream for Debounce<S> {
    type Item = LeadershipChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeadershipChange>> {
        let mut this = self.project();
        while !*this.upstream_done {
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(mut change)) => {
                    if let Some(replaced) = this.pending.take() {
                        change.missed += replaced.missed + 1;
                    }
                    *this.pending = Some(change);
                    let at = Instant::now() + *this.quiet;
                    match this.timer.as_mut() {
                        Some(t) => t.as_mut().reset(at),
                        None => *this.timer = Some(Box::pin(sleep(*this.quiet))),
                    }
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
}
