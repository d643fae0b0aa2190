//! Push hints: an etcd watch on the election's key. Every change of the key (a new holder, a
//! metadata update, a release, a deletion by lease expiry) wakes the stream's reader, which then
//! reads the state itself.
//!
//! Each [`stream`] is one gRPC watch stream on the store's connection, driven by a task of its own
//! (so it is established even while nobody polls it) that ends when the reader drops the stream.
//! The watch starts at the key's current revision; a change between the reader's last look and
//! the moment the server created the watch would go unseen, so the stream yields one hint as soon
//! as the watch is in place. The stream ends (the reader polls and watches again later) when the
//! watch cannot be created, the connection breaks, or the server cancels the watch (a member that
//! lost its leader cancels its watches, as the client asks it to).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::endpoints::Endpoints;

/// A hint stream for `key`; `None` outside a tokio runtime (the caller polls).
/// A delete seen by the watch is recorded in `freed` (the next acquire of the key on this handle
/// then skips its read).
pub(crate) fn stream(
    endpoints: &Arc<Endpoints>,
    freed: &Arc<Mutex<HashSet<String>>>,
    key: String,
) -> Option<BoxStream<'static, ()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    // Capacity 1: hints merge while the reader is busy; one pending hint is as good as many.
    let (tx, rx) = mpsc::channel::<()>(1);
    let endpoints = endpoints.clone();
    let freed = freed.clone();
    runtime.spawn(async move {
        let run = async {
            let watched = key.as_str();
            let mut stream = endpoints.call(|c| async move { c.watch_client().watch(watched, None).await }).await?;
            while let Some(resp) = stream.message().await? {
                if resp.canceled() {
                    tracing::debug!(key = %key, reason = %resp.cancel_reason(), "leader-etcd: watch cancelled by the server");
                    break;
                }
                // `created`: the watch is in place (the owed hint); events: the key changed.
                if let Some(last) = resp.events().last() {
                    let mut freed = freed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    // A deletion's key-value is a tombstone: version 0 (a put's is 1 or more).
                    // (Not `event_type()`, which panics on a type it does not know.)
                    if last.kv().is_none_or(|kv| kv.version() == 0) {
                        // Bounded: keys nobody looked at again are forgotten now and then.
                        if freed.len() >= 4096 {
                            freed.clear();
                        }
                        freed.insert(key.clone());
                    } else {
                        freed.remove(&key);
                    }
                }
                if resp.created() || !resp.events().is_empty() {
                    let _ = tx.try_send(());
                }
            }
            Ok::<_, etcd_client::Error>(())
        };
        tokio::select! {
            result = run => if let Err(e) = result {
                tracing::debug!(error = %e, "leader-etcd: watch ended");
            },
            _ = tx.closed() => {}
        }
    });
    Some(ReceiverStream::new(rx).map(|()| ()).boxed())
}
