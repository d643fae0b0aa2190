//! `flock(2)` on the lock files.
//!
//! `flock` locks belong to an open file description: two `open`s of one file, even in one
//! process, exclude each other, and the kernel drops the lock when the last descriptor of that
//! description closes, including when the process dies. POSIX `fcntl` locks have neither property
//! (they are per process, and closing *any* descriptor of the file drops them), so they are not
//! used. Rust opens files with `O_CLOEXEC`, so a child started with `exec` does not inherit them.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use leader_core::{Error, Result};
use rustix::fs::{flock, FlockOperation};

use crate::state::io_error;

/// Opens (creating if needed) a lock file. Lock files are never deleted: a lock on an unlinked
/// inode would exclude nobody who opens the path afterwards.
pub(crate) fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("cannot open the lock file", path, e))
}

/// Takes the exclusive lock if it is free: `Ok(true)` taken, `Ok(false)` held by another open
/// file description.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A file whose exclusive lock is ours; unlocked explicitly on drop. Closing alone would free it
/// late: a `fork` in another thread shares the open file description, and so the lock, with the
/// child until it execs.
pub(crate) struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        if let Err(e) = unlock(&self.0) {
            tracing::warn!(error = %e, "leader-fs: unlock failed; closing the file releases the lock");
        }
    }
}

/// [`try_lock`] that keeps the file with its lock: `None` when another description holds it.
pub(crate) fn try_take(file: File) -> io::Result<Option<Locked>> {
    Ok(try_lock(&file)?.then_some(Locked(file)))
}

/// Waits in the kernel until the exclusive lock is ours.
pub(crate) fn lock(file: &File) -> io::Result<()> {
    loop {
        match flock(file, FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

/// Releases the lock (closing the file would too).
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    flock(file, FlockOperation::Unlock).map_err(Into::into)
}

/// How long [`Guard::acquire`] waits for another process's critical section.
pub(crate) const GUARD_WAIT: Duration = Duration::from_secs(2);

/// The per-election guard (`<election>.guard`): a short exclusive section around every acquire
/// attempt and every probe of the tenure lock, so that a probe's momentary hold of the tenure lock
/// is never mistaken by an acquirer for a live leader. Released on drop (the file is closed).
pub(crate) struct Guard(#[allow(dead_code)] Locked); // held for its Drop

impl Guard {
    /// Takes the guard, waiting at most [`GUARD_WAIT`]. It is held for one read and one atomic
    /// write at most, so a longer wait means a process stopped inside its section (SIGSTOP): then
    /// this fails with `Unavailable` instead of blocking a thread for as long as that process sleeps.
    pub(crate) fn acquire(path: &Path) -> Result<Guard> {
        let file = open(path)?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match try_lock(&file) {
                Ok(true) => return Ok(Guard(Locked(file))),
                Ok(false) if start.elapsed() < GUARD_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Ok(false) => {
                    return Err(Error::unavailable(format!(
                        "the guard lock {} has been held by another process for more than {GUARD_WAIT:?} \
                         (a stopped or stuck process?)",
                        path.display()
                    )))
                }
                Err(e) => return Err(io_error("cannot lock", path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_opens_in_one_process_exclude_each_other() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("leader-fs-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| io_error("mkdir", &dir, e))?;
        let path = dir.join("x.lock");
        let a = open(&path)?;
        let b = open(&path)?;
        assert!(try_lock(&a).map_err(|e| io_error("lock", &path, e))?);
        assert!(!try_lock(&b).map_err(|e| io_error("lock", &path, e))?, "flock is per open file description");
        assert!(try_lock(&a).map_err(|e| io_error("lock", &path, e))?, "relocking one's own lock succeeds");
        drop(a); // closing releases
        assert!(try_lock(&b).map_err(|e| io_error("lock", &path, e))?);
        unlock(&b).map_err(|e| io_error("unlock", &path, e))?;
        let g = Guard::acquire(&dir.join("x.guard"))?;
        let start = Instant::now();
        let err = Guard::acquire(&dir.join("x.guard")).err().map(|e| e.kind());
        assert_eq!(err, Some(leader_core::ErrorKind::Unavailable));
        assert!(start.elapsed() >= GUARD_WAIT);
        drop(g);
        drop(Guard::acquire(&dir.join("x.guard"))?);
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("rm", &dir, e))?;
        Ok(())
    }
}
