//! The cluster's endpoints: one `etcd-client` client per endpoint (made on first use), and every
//! call sent to the *current* one, which changes when it fails.
//!
//! Why not one client over all endpoints: `etcd-client` balances over its endpoints with tonic's
//! power-of-two-choices balancer, and tonic's reconnecting connection reports itself ready even
//! while its server refuses connections (the error is given to the next call instead). A stopped
//! member then looks like the least loaded endpoint and takes a large share of the calls, which
//! all fail: seen here as failed renews while one member of three was down. With a current
//! endpoint, the first failure moves every later call to the next member.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions, Error as EtcdError};
use tokio::sync::OnceCell;
use tonic::Code;

pub(crate) struct Endpoints {
    urls: Vec<String>,
    options: ConnectOptions,
    clients: Vec<OnceCell<Client>>,
    current: AtomicUsize,
}

/// One call on endpoint `index`. Dropped before it finished (the caller's `operation_timeout`
/// ran out), it counts against the endpoint as a failure does: a member that does not answer
/// (a black-holed network) never returns an error in time.
struct Attempt<'a> {
    endpoints: &'a Endpoints,
    index: usize,
    finished: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.endpoints.failed(self.index);
        }
    }
}

impl Endpoints {
    pub(crate) fn new(urls: Vec<String>, options: ConnectOptions) -> Self {
        let clients = urls.iter().map(|_| OnceCell::new()).collect();
        Endpoints { urls, options, clients, current: AtomicUsize::new(0) }
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The current endpoint's client (connecting it if this is its first use: with credentials,
    /// that authenticates).
    pub(crate) async fn current_client(&self) -> Result<Client, EtcdError> {
        self.client(self.current.load(Ordering::Relaxed) % self.urls.len()).await
    }

    async fn client(&self, index: usize) -> Result<Client, EtcdError> {
        self.clients[index]
            .get_or_try_init(|| Client::connect([self.urls[index].as_str()], Some(self.options.clone())))
            .await
            .cloned()
    }

    /// Endpoint `index` failed: the next one becomes current (unless another call moved on
    /// already).
    fn failed(&self, index: usize) {
        let n = self.urls.len();
        if n > 1 {
            let _ = self.current.compare_exchange(index, (index + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Runs `f` with the current endpoint's client. When the endpoint is in trouble (cannot be
    /// reached, has no leader, timed out) the next one becomes current; when the request surely
    /// was not applied (no connection could be made, or the member refused it for want of a
    /// leader) it is sent again at once to the next endpoint, up to once per endpoint.
    pub(crate) async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let n = self.urls.len();
        let mut tries = 0;
        loop {
            let index = self.current.load(Ordering::Relaxed) % n;
            let mut attempt = Attempt { endpoints: self, index, finished: false };
            let result = match self.client(index).await {
                Ok(client) => f(client).await,
                Err(e) => Err(e),
            };
            attempt.finished = true;
            match result {
                Err(e) if endpoint_trouble(&e) => {
                    self.failed(index);
                    tries += 1;
                    if tries < n && not_applied(&e) {
                        tracing::debug!(endpoint = %self.urls[index], error = %e, "leader-etcd: trying the next endpoint");
                        continue;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }
}

/// The endpoint itself is the problem (as opposed to an answer about the request).
pub(crate) fn endpoint_trouble(e: &EtcdError) -> bool {
    match e {
        EtcdError::GRpcStatus(s) => matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown),
        EtcdError::TransportError(_) | EtcdError::IoError(_) | EtcdError::WatchError(_) => true,
        _ => false,
    }
}

/// The request cannot have been applied: no connection was made, or the member refused it
/// because it has no leader (`require_leader`).
fn not_applied(e: &EtcdError) -> bool {
    match e {
        EtcdError::GRpcStatus(s) if s.code() == Code::Unavailable => {
            let m = s.message();
            m.contains("connect") || m.contains("no leader")
        }
        EtcdError::TransportError(_) => true,
        _ => false,
    }
}
