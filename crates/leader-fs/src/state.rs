//! The state file of one election (`<election>.lease`): its JSON form, how it is read, and how it
//! is replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use leader_core::{Error, Metadata, Result};
use serde::{Deserialize, Serialize};

/// Version of the state file's format.
pub(crate) const FORMAT: u32 = 1;

/// The files of one election in the store's directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// The directory (fsynced after each rename so the rename is durable).
    pub dir: PathBuf,
    /// `<election>.lease`: the state, replaced atomically.
    pub state: PathBuf,
    /// `<election>.lease.tmp`: the next state while it is written.
    pub tmp: PathBuf,
    /// `<election>.lock`: the tenure lock, held by the leader for its whole tenure.
    pub lock: PathBuf,
    /// `<election>.guard`: the short lock around acquire attempts and lock probes.
    pub guard: PathBuf,
}

/// Suffix of state files (what `list` looks for).
pub(crate) const STATE_SUFFIX: &str = ".lease";

impl Paths {
    /// The files of `election` (a validated name: no `/`, no leading `.`) in `dir`.
    pub(crate) fn new(dir: &Path, election: &str) -> Self {
        Paths {
            dir: dir.to_owned(),
            state: dir.join(format!("{election}{STATE_SUFFIX}")),
            tmp: dir.join(format!("{election}{STATE_SUFFIX}.tmp")),
            lock: dir.join(format!("{election}.lock")),
            guard: dir.join(format!("{election}.guard")),
        }
    }
}

/// The content of `<election>.lease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateFile {
    /// [`FORMAT`].
    pub format: u32,
    /// The election (checked against the file name).
    pub election: String,
    /// The last fencing token issued in this election, held or not. Never goes down: a release
    /// keeps the file with `holder: null` and this token.
    pub token: u64,
    /// The holder as last written, or `null` after a release. A holder named here is alive only
    /// while someone holds `<election>.lock`.
    pub holder: Option<Holder>,
}

/// One holder's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    /// As the user named the participant.
    pub participant_id: String,
    /// The `Election` object's random id.
    pub instance_id: String,
    /// This tenure's fencing token.
    pub token: u64,
    /// Wall-clock time of the acquisition (informational).
    #[serde(with = "humantime_serde")]
    pub acquired_at: SystemTime,
    /// Wall-clock time of the last acquire, renew or metadata change (informational).
    #[serde(with = "humantime_serde")]
    pub renewed_at: SystemTime,
    /// Published with the lease.
    #[serde(default)]
    pub metadata: Metadata,
    /// The boot in which `expires_boottime_ns` was measured.
    pub boot_id: String,
    /// Expiry as a `CLOCK_BOOTTIME` instant of boot `boot_id`, in nanoseconds.
    pub expires_boottime_ns: u64,
    /// The lease duration asked for, in milliseconds (informational).
    pub ttl_ms: u64,
    /// Process id of the holder (informational: pids are reused and namespaced).
    pub pid: u32,
}

/// Reads the state file: `Ok(None)` if there is none (a new election).
///
/// # Errors
/// `Unavailable` when it cannot be read, `Backend` when it is not a valid state file of
/// `election` (the message names the file and says what to do).
pub(crate) fn read(paths: &Paths, election: &str) -> Result<Option<StateFile>> {
    let bytes = match fs::read(&paths.state) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read the state file", &paths.state, e)),
    };
    let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(&paths.state, &e.to_string()))?;
    if state.format != FORMAT {
        return Err(corrupt(&paths.state, &format!("format {} is not the supported {FORMAT}", state.format)));
    }
    if state.election != election {
        return Err(corrupt(&paths.state, &format!("it names election {:?}", state.election)));
    }
    if let Some(h) = &state.holder {
        if h.token > state.token {
            return Err(corrupt(&paths.state, &format!("holder token {} exceeds last token {}", h.token, state.token)));
        }
    }
    Ok(Some(state))
}

/// Whether `err` (from [`read`]) says the file is corrupt rather than unreadable.
pub(crate) fn is_corrupt(err: &Error) -> bool {
    err.kind() == leader_core::ErrorKind::Backend
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::backend(format!(
        "state file {} is corrupt ({what}); it holds the election's fencing-token counter, so leader-fs will not \
         guess: restore it, or delete it to start the counter again at 1 (only if no consumer of the tokens \
         remembers higher ones)",
        path.display()
    ))
}

/// How durable a [`write`] must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A new token: the rename itself must survive a power loss (the directory is fsynced), or the
    /// counter could go back after a crash of the machine.
    NewToken,
    /// Same token (renew, metadata, release): losing the rename to a power loss leaves the previous
    /// record with the same token, which is harmless; the directory fsync is skipped.
    SameToken,
}

/// Replaces the state file atomically: write `<election>.lease.tmp`, fsync it, rename it over the
/// state file, and for [`Durability::NewToken`] fsync the directory. A reader sees the old content
/// or the new, never a mix or a torn file, also after a power loss.
///
/// Only the holder of the tenure lock calls this, so there is one writer at a time.
pub(crate) fn write(paths: &Paths, state: &StateFile, durability: Durability) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::backend(format!("cannot encode the state of {:?}: {e}", state.election)))?;
    let step = |what: &str, path: &Path, r: io::Result<()>| r.map_err(|e| io_error(what, path, e));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&paths.tmp)
        .map_err(|e| io_error("cannot create", &paths.tmp, e))?;
    step("cannot write", &paths.tmp, file.write_all(&bytes).and_then(|()| file.write_all(b"\n")))?;
    step("cannot fsync", &paths.tmp, file.sync_all())?;
    drop(file);
    step("cannot rename into place", &paths.state, fs::rename(&paths.tmp, &paths.state))?;
    if durability == Durability::SameToken {
        return Ok(());
    }
    step("cannot fsync the directory", &paths.dir, File::open(&paths.dir).and_then(|d| d.sync_all()))
}

/// An I/O error on `path`: `Unavailable` (the directory is the store).
pub(crate) fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::unavailable(format!("{what} {}: {e}", path.display())).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateFile {
        StateFile {
            format: FORMAT,
            election: "jobs".into(),
            token: 7,
            holder: Some(Holder {
                participant_id: "a".into(),
                instance_id: "i".into(),
                token: 7,
                acquired_at: SystemTime::UNIX_EPOCH,
                renewed_at: SystemTime::UNIX_EPOCH,
                metadata: Metadata::from([("k".into(), "v".into())]),
                boot_id: "b".into(),
                expires_boottime_ns: 42,
                ttl_ms: 3000,
                pid: 1,
            }),
        }
    }

    #[test]
    fn round_trip_and_refusals() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("leader-fs-state-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| io_error("mkdir", &dir, e))?;
        let paths = Paths::new(&dir, "jobs");
        let _ = fs::remove_file(&paths.state);
        assert_eq!(read(&paths, "jobs")?, None);
        write(&paths, &sample(), Durability::NewToken)?;
        assert_eq!(read(&paths, "jobs")?, Some(sample()));
        assert!(!paths.tmp.exists(), "the temp file was renamed");
        assert!(is_corrupt(&read(&paths, "other").expect_err("should fail")));
        fs::write(&paths.state, b"{\"format\":1,\"elec").map_err(|e| io_error("w", &paths.state, e))?;
        let err = read(&paths, "jobs").expect_err("should fail");
        assert!(is_corrupt(&err));
        assert!(err.to_string().contains(&paths.state.display().to_string()), "{err}");
        let mut bad = sample();
        bad.token = 3;
        write(&paths, &bad, Durability::SameToken)?;
        assert!(is_corrupt(&read(&paths, "jobs").expect_err("should fail")));
        fs::remove_dir_all(&dir).map_err(|e| io_error("rm", &dir, e))?;
        Ok(())
    }
}
