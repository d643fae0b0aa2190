//! The conformance suite on `FsStore`: each run gets a provider over its own temporary directory,
//! and every participant its own `FsStore` handle on it (its own lock-file descriptions, as a
//! separate process would have). No server needed: it always runs.
//!
//! The kernel frees a dead holder's `flock` at once (takeover in milliseconds, see
//! `tests/process.rs`), so the provider says `frees_lease_when_holder_exits`: the crash scenarios
//! then skip only their "not before the old lease expired" check, and still check the crash bound
//! and that no tenures overlap.
//!
//! `break_lease` uses [`FsStore::break_lease`]: a void claim with the next token, so the holder's
//! next renew is refused (it sees a newer claim) and the next acquire gets a greater token.

use std::sync::Arc;
use std::time::Duration;

use leader_core::{ElectionOptions, LeaseStore, Result};
use leader_fs::FsStore;
use leader_testkit::Provider;

struct FsProvider {
    dir: tempfile::TempDir,
}

#[leader_core::async_trait]
impl Provider for FsProvider {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(FsStore::open(self.dir.path())?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(2))
    }

    fn frees_lease_when_holder_exits(&self) -> bool {
        true
    }

    async fn break_lease(&self, election: &str) -> Option<Result<()>> {
        let store = match FsStore::open(self.dir.path()) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        Some(store.break_lease(election).await.map(|_| ()))
    }
}

async fn make_provider() -> Option<Arc<dyn Provider>> {
    let dir = tempfile::Builder::new().prefix("leader-fs-conformance-").tempdir().ok()?;
    Some(Arc::new(FsProvider { dir }))
}

leader_testkit::conformance_tests!(make_provider);
