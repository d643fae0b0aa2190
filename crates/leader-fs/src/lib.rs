#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod clock;
mod dir;
mod lockfile;
mod reaper;
mod state;
mod store;
mod waiter;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use leader_core::{async_trait, validate_election_name, Capabilities, LeaseStore, RawFloor, Result};

pub use store::FsStore;

/// URL schemes this crate answers in `leader::connect`: `file:///absolute/path`.
pub const SCHEMES: &[&str] = &["file"];

/// What [`FsStore`] can do (see the crate docs for why each is so).
pub const CAPABILITIES: Capabilities = Capabilities {
    // A waiter thread per watched election blocks in flock: the kernel wakes it on release/death.
    push_notifications: true,
    // A lease becomes takeable only when its lock is freed (release, process death, or the
    // holder's reaper at its TTL), and each of those wakes the waiters.
    pushes_expiry: true,
    // Expiry is enforced by the holder's own process (its reaper), not by an independent party:
    // a stopped (SIGSTOP) holder keeps its lease until it resumes.
    server_side_expiry: false,
    // The token counter lives in the state file (fsynced, never reset): it survives restarts of
    // every participant and of the machine.
    durable_tokens: true,
    cross_host: false,
    survives_store_failover: false,
    lists_elections: true,
    reap_multiplier: 1,
};

/// `leader::connect` entry point: opens a `file:///absolute/path` URL.
///
/// # Errors
/// See [`FsStore::from_url`].
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(Arc::new(FsStore::from_url(url)?))
}

/// `leader-bench` entry point: the store and its raw floor, one non-blocking `flock` on the
/// election's lock file plus the unlock (the syscall pair every acquire is built on).
///
/// # Errors
/// See [`FsStore::from_url`].
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = FsStore::from_url(url)?;
    let floor = FsFloor { dir: store.dir().to_owned(), files: Mutex::new(HashMap::new()) };
    Ok((Arc::new(store), Arc::new(floor)))
}

/// The raw primitive of [`FsStore`]'s acquire: try-lock and unlock of `<election>.lock`.
struct FsFloor {
    dir: PathBuf,
    /// One open lock file per election, as a store keeps its tenure's file open.
    files: Mutex<HashMap<String, Arc<File>>>,
}

#[async_trait]
impl RawFloor for FsFloor {
    fn describe(&self) -> String {
        "flock(LOCK_EX|LOCK_NB) + flock(LOCK_UN) on <election>.lock (one syscall pair)".to_owned()
    }

    async fn raw_acquire(&self, election: &str, _instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        let file = {
            let mut files = store::lock(&self.files);
            match files.get(election) {
                Some(f) => f.clone(),
                None => {
                    let paths = state::Paths::new(&self.dir, election);
                    let f = Arc::new(lockfile::open(&paths.lock)?);
                    files.insert(election.to_owned(), f.clone());
                    f
                }
            }
        };
        let path = || self.dir.join(format!("{election}.lock"));
        if lockfile::try_lock(&file).map_err(|e| state::io_error("cannot lock", &path(), e))? {
            lockfile::unlock(&file).map_err(|e| state::io_error("cannot unlock", &path(), e))?;
        }
        Ok(())
    }
}
