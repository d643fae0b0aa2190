//! `flock(2)` on claim files: how a holder shows it is alive.
//!
//! `flock` locks belong to an open file description, and the kernel drops one when the last
//! descriptor of that description closes, including when the process dies. The holder takes an
//! exclusive lock on its claim before the claim has a name (see `state.rs`), so whoever opens the
//! claim finds it locked for as long as the holder lives and has not let go. Probes take a
//! *shared* lock: they never conflict with each other, only with a live holder. POSIX `fcntl`
//! locks are not used (they are per process and dropped by closing any descriptor of the file).
//! Rust opens files with `O_CLOEXEC`, so a child started with `exec` does not inherit them.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

fn non_blocking(file: &File, op: FlockOperation) -> io::Result<bool> {
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes the exclusive lock if no other description holds a lock on the file: `Ok(true)` taken.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    non_blocking(file, FlockOperation::NonBlockingLockExclusive)
}

/// Releases the lock (closing the file would too).
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    flock(file, FlockOperation::Unlock).map_err(Into::into)
}

/// A file whose exclusive lock is ours; unlocked explicitly on drop. Closing alone would free it
/// late: a `fork` in another thread shares the open file description, and so the lock, with the
/// child until it execs.
#[derive(Debug)]
pub(crate) struct Locked(File);

impl Locked {
    /// Locks `file` exclusively; `None` if another description holds a lock on it.
    pub(crate) fn try_new(file: File) -> io::Result<Option<Locked>> {
        Ok(try_lock_exclusive(&file)?.then_some(Locked(file)))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if let Err(e) = unlock(&self.0) {
            tracing::warn!(error = %e, "leader-fs: unlock failed; closing the file releases the lock");
        }
    }
}

/// What a probe of a claim's lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Locked: its holder lives and has not let go.
    Held,
    /// Not locked: its holder released it, gave it up, or died.
    Free,
    /// The claim file does not exist (any more).
    Missing,
}

/// Probes the lock of the claim at `path` with a shared non-blocking lock, released at once.
pub(crate) fn probe(path: &Path) -> io::Result<LockState> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockState::Missing),
        Err(e) => return Err(e),
    };
    if non_blocking(&file, FlockOperation::NonBlockingLockShared)? {
        unlock(&file)?;
        Ok(LockState::Free)
    } else {
        Ok(LockState::Held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_see_an_exclusive_holder_and_not_each_other() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("leader-fs-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("1");
        assert_eq!(probe(&path)?, LockState::Missing);
        let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let held = Locked::try_new(open()?)?.expect("free file");
        assert!(Locked::try_new(open()?)?.is_none(), "flock is per open file description, even in one process");
        assert_eq!(probe(&path)?, LockState::Held);
        drop(held);
        assert_eq!(probe(&path)?, LockState::Free);
        // A probe's shared lock does not make another probe see a holder.
        let other = open()?;
        assert!(non_blocking(&other, FlockOperation::NonBlockingLockShared)?);
        assert_eq!(probe(&path)?, LockState::Free);
        unlock(&other)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
