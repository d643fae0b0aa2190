//! The wake-up channel of a tenure: a FIFO (`N.fifo`) that its holder keeps open for writing.
//!
//! A waiter opens the FIFO for reading and `poll(2)`s it: the kernel reports hang-up (or
//! end-of-file, as readable) when the last writer closes it, which happens when the holder releases
//! its tenure, gives it up, or dies. Nobody ever writes data. `poll` has a timeout and also watches
//! the waiter's control socket, so a waiter is never stuck in the kernel: it wakes at the holder's
//! expiry at the latest, and at once when its store is dropped.
//!
//! The holder opens its writer before the claim has a name, so a reader opened while the claim is
//! locked always finds a writer; a reader opened after the holder is gone may get no hang-up
//! (Linux reports none to a reader that never saw a writer), which is why a waiter probes the lock
//! after opening the FIFO.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustix::event::{poll, Nsecs, PollFd, PollFlags, Secs, Timespec};
use rustix::fs::{Mode, OFlags};

/// Creates a FIFO at `path` (readable and writable by everyone the umask lets, like other files).
pub(crate) fn create(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o666)).map_err(io::Error::from)
}

fn open(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    rustix::fs::open(path, flags | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty()).map_err(Into::into)
}

/// Opens the FIFO at `path` for writing: the holder's end. (A FIFO cannot be opened for writing
/// without blocking unless a reader exists, so a reader is opened first and closed after.)
pub(crate) fn open_writer(path: &Path) -> io::Result<OwnedFd> {
    let reader = open(path, OFlags::RDONLY)?;
    let writer = open(path, OFlags::WRONLY)?;
    drop(reader);
    Ok(writer)
}

/// Opens the FIFO at `path` for reading: a waiter's end.
pub(crate) fn open_reader(path: &Path) -> io::Result<OwnedFd> {
    open(path, OFlags::RDONLY)
}

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The FIFO hung up or became readable: its writer may be gone.
    Channel,
    /// The control socket has bytes (read and discarded).
    Control,
    /// The timeout ran out (or a signal interrupted the wait).
    Timeout,
}

/// Waits until `fifo` (if any) hangs up, `control` becomes readable, or `timeout` (`None`:
/// forever) runs out.
pub(crate) fn wait(fifo: Option<&OwnedFd>, control: &UnixStream, timeout: Option<Duration>) -> io::Result<Woken> {
    let events = PollFlags::IN;
    let mut fds = Vec::with_capacity(2);
    fds.push(PollFd::from_borrowed_fd(control.as_fd(), events));
    if let Some(f) = fifo {
        fds.push(PollFd::from_borrowed_fd(f.as_fd(), events));
    }
    #[allow(clippy::unnecessary_fallible_conversions)] // `Nsecs` is 32 bits on some systems
    let timeout = timeout.map(|t| Timespec {
        tv_sec: Secs::try_from(t.as_secs()).unwrap_or(Secs::MAX),
        tv_nsec: Nsecs::try_from(t.subsec_nanos()).unwrap_or_default(),
    });
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Woken::Timeout),
        Err(e) => return Err(e.into()),
    }
    let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
    if ready(&fds[0]) {
        drain(control);
        return Ok(Woken::Control);
    }
    if fds.get(1).is_some_and(ready) {
        return Ok(Woken::Channel);
    }
    Ok(Woken::Timeout)
}

/// Reads and discards what the (non-blocking) control socket holds.
pub(crate) fn drain(control: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!((&*control).read(&mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_reader_is_woken_when_the_writer_closes_and_not_before() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("leader-fs-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("1.fifo");
        let _ = std::fs::remove_file(&path);
        create(&path)?;
        let writer = open_writer(&path)?;
        let reader = open_reader(&path)?;
        let (control, other) = UnixStream::pair()?;
        control.set_nonblocking(true)?;
        let start = Instant::now();
        assert_eq!(wait(Some(&reader), &control, Some(Duration::from_millis(50)))?, Woken::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(45));
        std::io::Write::write_all(&mut &other, b"x")?;
        assert_eq!(wait(Some(&reader), &control, None)?, Woken::Control);
        assert_eq!(wait(Some(&reader), &control, Some(Duration::ZERO))?, Woken::Timeout, "drained");
        drop(writer);
        assert_eq!(wait(Some(&reader), &control, Some(Duration::from_secs(5)))?, Woken::Channel);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
