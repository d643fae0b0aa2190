//! Graceful shutdown: stop and release on Ctrl-C / SIGTERM, so a deploy hands leadership over at
//! once instead of after the lease.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::{Election, Result};

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM: what a service manager or an orchestrator
/// sends on shutdown. If the handlers cannot be installed it never completes.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

impl Election {
    /// Stops and releases this election when `signal` completes (e.g. [`shutdown_signal`]), in a
    /// task of its own; await the handle to know the release is done. The task holds the election
    /// weakly: it does not keep it alive, and does nothing if the election is gone by then.
    ///
    /// ```no_run
    /// # async fn demo(election: leader_core::Election) -> leader_core::Result<()> {
    /// election.start().await?;
    /// let done = election.stop_on(leader_core::shutdown_signal());
    /// // ... serve ...
    /// done.await.ok();
    /// # Ok(()) }
    /// ```
    pub fn stop_on<F>(&self, signal: F) -> JoinHandle<Result<()>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let election = self.downgrade();
        tokio::spawn(async move {
            signal.await;
            let Some(election) = election.upgrade() else { return Ok(()) };
            tracing::info!(election = %election.election_name(), "shutting down: releasing leadership");
            election.stop().await
        })
    }
}
