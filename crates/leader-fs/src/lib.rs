#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(not(unix))]
compile_error!("leader-fs needs a Unix system (flock, FIFOs, hard links); the `leader` facade leaves it out elsewhere");

mod clock;
mod dir;
mod fifo;
mod lockfile;
mod reaper;
mod state;
mod store;
mod waiter;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leader_core::{async_trait, validate_election_name, Capabilities, LeaseStore, RawFloor, Result};

pub use store::FsStore;

/// The clock this build records and judges lease expiry on: `"boottime"` (Linux), `"uptime_raw"`
/// (Apple systems) or `"monotonic"` (the BSDs, and Linux built with `--cfg leader_fs_portable`).
/// See "Clocks" in the crate docs.
pub const CLOCK: &str = clock::CLOCK;

/// URL schemes this crate answers in `leader::connect`: `file:///absolute/path`.
pub const SCHEMES: &[&str] = &["file"];

/// What [`FsStore`] can do (see the crate docs for why each is so).
pub const CAPABILITIES: Capabilities = Capabilities {
    // A waiter thread per watched election polls the holder's FIFO: the kernel wakes it when the
    // holder releases or dies.
    push_notifications: true,
    // The waiter also wakes at the holder's expiry (its poll is bounded by it) and notifies then.
    pushes_expiry: true,
    // Every participant judges the record's expiry on this host's clock: a holder that stops
    // renewing loses its lease at expiry even while its process (stopped, stuck) holds its lock.
    server_side_expiry: true,
    // The token counter is the name of the newest claim file (its directory entry is fsynced,
    // never reused): it survives restarts of every participant and of the machine.
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

/// `leader-bench` entry point: the store and its raw floor, the exclusive create a claim is (write
/// a small file, `link(2)` it to a new name, fsync the directory), then the clean-up.
///
/// # Errors
/// See [`FsStore::from_url`].
pub async fn connect_with_floor(url: &str) -> Result<(Arc<dyn LeaseStore>, Arc<dyn RawFloor>)> {
    let store = FsStore::from_url(url)?;
    let floor = FsFloor { dir: store.dir().to_owned() };
    Ok((Arc::new(store), Arc::new(floor)))
}

/// The raw primitive of [`FsStore`]'s claim.
struct FsFloor {
    dir: PathBuf,
}

static FLOOR_SEQ: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl RawFloor for FsFloor {
    fn describe(&self) -> String {
        "write a small file + link(2) to a new name + fsync(dir) (the exclusive create of a claim), then unlink"
            .to_owned()
    }

    async fn raw_acquire(&self, election: &str, _instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        let seq = FLOOR_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".floor.{election}.{}.{seq}", std::process::id()));
        let name = self.dir.join(format!(".floor.{election}.{}.{seq}.claim", std::process::id()));
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<()> {
                std::fs::write(&tmp, b"{}\n").map_err(|e| state::io_error("cannot write", &tmp, e))?;
                std::fs::hard_link(&tmp, &name).map_err(|e| state::io_error("cannot link", &name, e))?;
                state::sync_dir(&dir)
            };
            let result = run();
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&name);
            result
        })
        .await
        .map_err(|e| leader_core::Error::backend("leader-fs floor thread failed").with_source(e))?
    }
}

/// Test hooks: points inside the store's critical sections where a test may stop its process, to
/// show that nobody waits for a process stopped there. Not part of the API.
#[doc(hidden)]
pub mod hooks {
    use std::sync::OnceLock;

    /// A point inside a critical section.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Point {
        /// An acquire has linked its claim (the new tenure exists, locked) and has not yet checked
        /// the previous holder again or returned.
        Claimed,
        /// A renew (or metadata change) has written the holder's record and has not yet looked
        /// for a newer claim.
        Rewritten,
    }

    static HOOK: OnceLock<fn(Point)> = OnceLock::new();

    /// Installs `hook` for this process (once); false if one is installed already.
    pub fn install(hook: fn(Point)) -> bool {
        HOOK.set(hook).is_ok()
    }

    pub(crate) fn at(point: Point) {
        if let Some(hook) = HOOK.get() {
            hook(point);
        }
    }
}
