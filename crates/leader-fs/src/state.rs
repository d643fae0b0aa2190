//! The files of one election (a directory `<root>/<election>/`), their records, and how the current
//! tenure is read from them.
//!
//! Tenure `N` (its fencing token) is the set of files
//! - `N`: the **claim**, created by `link(2)` of a complete record (so it appears whole or not at
//!   all, and only one process can create it), and `flock`ed by its holder from before it had a
//!   name until the tenure ends;
//! - `N.lease`: the holder's latest record (renew, metadata, release), replaced by `rename(2)`;
//! - `N.fifo`: a FIFO the holder keeps open for writing, so that waiters polling it for reading are
//!   woken by the kernel when the holder closes it (release, or death of its process).
//!
//! The current tenure is the highest `N` present. Temporary files are `.N.<pid>.<seq>.<what>`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use leader_core::{Error, Metadata, Result};
use serde::{Deserialize, Serialize};

use crate::clock::{judge, Expiry, HostTime};
use crate::lockfile::{self, LockState};

/// Version of the record format.
pub(crate) const FORMAT: u32 = 2;

/// How many times a read of the current tenure starts again when the files change under it
/// (a newer claim removed the tenure it was reading) before it gives up.
const RESOLVE_ATTEMPTS: usize = 8;

/// The directory of one election.
#[derive(Debug, Clone)]
pub(crate) struct ElectionDir {
    /// The store's directory.
    pub root: PathBuf,
    /// `<root>/<election>`.
    pub dir: PathBuf,
    /// The election's name.
    pub election: String,
}

/// What a file of an election directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `N`
    Claim,
    /// `N.lease`
    Latest,
    /// `N.fifo`
    Fifo,
    /// `.N.*`
    Temp,
}

/// Parses a file name of an election directory.
pub(crate) fn parse_name(name: &str) -> Option<(FileKind, u64)> {
    let token = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten();
    if let Some(rest) = name.strip_prefix('.') {
        let (n, _) = rest.split_once('.')?;
        return Some((FileKind::Temp, token(n)?));
    }
    match name.split_once('.') {
        None => Some((FileKind::Claim, token(name)?)),
        Some((n, "lease")) => Some((FileKind::Latest, token(n)?)),
        Some((n, "fifo")) => Some((FileKind::Fifo, token(n)?)),
        Some(_) => None,
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ElectionDir {
    /// The directory of `election` (a validated name: no `/`, no leading `.`) under `root`.
    pub(crate) fn new(root: &Path, election: &str) -> Self {
        ElectionDir { root: root.to_owned(), dir: root.join(election), election: election.to_owned() }
    }

    pub(crate) fn claim(&self, token: u64) -> PathBuf {
        self.dir.join(token.to_string())
    }

    pub(crate) fn latest(&self, token: u64) -> PathBuf {
        self.dir.join(format!("{token}.lease"))
    }

    pub(crate) fn fifo(&self, token: u64) -> PathBuf {
        self.dir.join(format!("{token}.fifo"))
    }

    /// A fresh temporary name for tenure `token`.
    pub(crate) fn temp(&self, token: u64, what: &str) -> PathBuf {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".{token}.{}.{seq}.{what}", std::process::id()))
    }

    /// Creates the directory if it is missing (and makes its name durable).
    pub(crate) fn ensure(&self) -> Result<()> {
        match fs::create_dir(&self.dir) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if self.dir.is_dir() {
                    Ok(())
                } else {
                    Err(Error::backend(format!(
                        "{} exists but is not a directory; leader-fs keeps election {:?} there: move it away",
                        self.dir.display(),
                        self.election
                    )))
                }
            }
            Err(e) => Err(io_error("cannot create the election directory", &self.dir, e)),
        }
    }

    /// The files of the directory: (kind, token, name). Empty if the directory does not exist.
    pub(crate) fn files(&self) -> Result<Vec<(FileKind, u64, String)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("cannot list", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((kind, token)) = parse_name(name) {
                out.push((kind, token, name.to_owned()));
            }
        }
        Ok(out)
    }

    /// The highest claimed token (the election's token counter), if any.
    pub(crate) fn max_claim(&self) -> Result<Option<u64>> {
        Ok(self.files()?.into_iter().filter(|(k, _, _)| *k == FileKind::Claim).map(|(_, t, _)| t).max())
    }

    /// Removes the files of every tenure before `current` (and stale temporary files). Best
    /// effort: a file that cannot be removed now is removed by a later claim.
    pub(crate) fn collect_garbage(&self, current: u64) {
        let Ok(files) = self.files() else { return };
        for (_, token, name) in files {
            if token < current {
                let _ = fs::remove_file(self.dir.join(name));
            }
        }
    }
}

/// The content of a claim (`N`) or of a latest record (`N.lease`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The election (checked against the directory).
    pub election: String,
    /// The tenure's fencing token (checked against the file name).
    pub token: u64,
    /// The holder, or `null` once released.
    pub holder: Option<Holder>,
    /// A void tenure never led (a takeover that found the old holder had renewed, or a claim made
    /// by `break_lease`): readers look through it at the tenure below.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
}

impl Record {
    /// A record of tenure `token` of `election`.
    pub(crate) fn new(election: &str, token: u64, holder: Option<Holder>) -> Record {
        Record { format: FORMAT, election: election.to_owned(), token, holder, void: false }
    }

    /// A void record of tenure `token` of `election`.
    pub(crate) fn void(election: &str, token: u64) -> Record {
        Record { void: true, ..Record::new(election, token, None) }
    }
}

/// One holder's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    /// As the user named the participant.
    pub participant_id: String,
    /// The `Election` object's random id.
    pub instance_id: String,
    /// Wall-clock time of the acquisition (informational).
    #[serde(with = "humantime_serde")]
    pub acquired_at: SystemTime,
    /// Wall-clock time of the last acquire, renew or metadata change (informational).
    #[serde(with = "humantime_serde")]
    pub renewed_at: SystemTime,
    /// Published with the lease.
    #[serde(default)]
    pub metadata: Metadata,
    /// The clock `expires_ns` is on (see `clock.rs`).
    pub clock: String,
    /// The boot in which `expires_ns` was measured, where the clock has one.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Expiry: (clock when the acquire or renew was written) + ttl, in nanoseconds of `clock`.
    pub expires_ns: u64,
    /// The lease duration asked for, in milliseconds.
    pub ttl_ms: u64,
    /// Process id of the holder (informational: pids are reused and namespaced).
    pub pid: u32,
}

impl Holder {
    pub(crate) fn expiry(&self) -> Expiry<'_> {
        Expiry {
            clock: &self.clock,
            boot_id: self.boot_id.as_deref(),
            ns: self.expires_ns,
            ttl: Duration::from_millis(self.ttl_ms),
        }
    }
}

/// Reads a record file: `Ok(None)` if it does not exist.
///
/// # Errors
/// `Unavailable` when it cannot be read, `Backend` when it is not a valid record of
/// (`election`, `token`).
pub(crate) fn read(path: &Path, election: &str, token: u64) -> Result<Option<Record>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read", path, e)),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, &e.to_string()))?;
    if record.format != FORMAT {
        return Err(corrupt(path, &format!("format {} is not the supported {FORMAT}", record.format)));
    }
    if record.election != election || record.token != token {
        return Err(corrupt(path, &format!("it names election {:?}, token {}", record.election, record.token)));
    }
    Ok(Some(record))
}

/// Whether `err` (from [`read`]) says the file is corrupt rather than unreadable.
pub(crate) fn is_corrupt(err: &Error) -> bool {
    err.kind() == leader_core::ErrorKind::Backend
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::backend(format!(
        "record {} is corrupt ({what}); leader-fs writes its files atomically, so something else changed it",
        path.display()
    ))
}

/// Writes `record` to a new temporary file `tmp` and returns it open (not synced).
pub(crate) fn write_temp(tmp: &Path, record: &Record) -> Result<File> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::backend(format!("cannot encode the record of {:?}: {e}", record.election)))?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| io_error("cannot create", tmp, e))?;
    if let Err(e) = file.write_all(&bytes).and_then(|()| file.write_all(b"\n")) {
        let _ = fs::remove_file(tmp);
        return Err(io_error("cannot write", tmp, e));
    }
    Ok(file)
}

/// Replaces `path` by `record` atomically (temporary file, then `rename(2)`): a reader sees the
/// old record or the new one, never a mix. Not synced: these records (renew, metadata, release)
/// matter only while their holder's process lives, and after a power loss no lock is held.
pub(crate) fn replace(dir: &ElectionDir, token: u64, path: &Path, record: &Record) -> Result<()> {
    let tmp = dir.temp(token, "tmp");
    drop(write_temp(&tmp, record)?);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("cannot rename into place", path, e)
    })
}

/// fsyncs a directory, making the names created in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("cannot fsync the directory", dir, e))
}

/// An I/O error on `path`: `Unavailable` (the directory is the store).
pub(crate) fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::unavailable(format!("{what} {}: {e}", path.display())).with_source(e)
}

/// What the record of the current tenure says.
#[derive(Debug)]
pub(crate) enum Standing {
    /// A holder.
    Holder(Holder),
    /// Released (or a void claim).
    Released,
    /// The record cannot be read (corrupt): the holder and its expiry are unknown.
    Unknown(Error),
}

/// The current tenure of an election, as read now.
#[derive(Debug)]
pub(crate) struct Current {
    /// Its token: the highest claim that is not void.
    pub token: u64,
    /// The highest claim, void or not (the token counter: the next claim is `last + 1`).
    pub last: u64,
    /// Its latest record.
    pub standing: Standing,
    /// Whether its claim is still locked by its holder.
    pub lock: LockState,
}

/// What reading one tenure found.
#[derive(Debug)]
pub(crate) enum Tenure {
    /// Its claim is gone (removed after a newer claim).
    Gone,
    /// A void tenure: look at the one below.
    Void,
    /// A tenure (`last` set to its own token).
    Found(Current),
}

/// Reads the current tenure: `Ok(None)` for an election nobody ever claimed.
///
/// Void claims are looked through (the tenure below is the current one; with none below, the
/// lease is free). Starts again when a newer claim removes the tenure being read.
pub(crate) fn current(dir: &ElectionDir) -> Result<Option<Current>> {
    'again: for _ in 0..RESOLVE_ATTEMPTS {
        let mut claims: Vec<u64> =
            dir.files()?.into_iter().filter(|(k, _, _)| *k == FileKind::Claim).map(|(_, t, _)| t).collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&last) = claims.first() else { return Ok(None) };
        for token in claims {
            match tenure(dir, token)? {
                Tenure::Gone => continue 'again,
                Tenure::Void => {}
                Tenure::Found(c) => return Ok(Some(Current { last, ..c })),
            }
        }
        return Ok(Some(Current { token: last, last, standing: Standing::Released, lock: LockState::Free }));
    }
    Err(Error::unavailable(format!(
        "the files of election {:?} in {} changed {RESOLVE_ATTEMPTS} times while being read; try again",
        dir.election,
        dir.dir.display()
    )))
}

/// Reads tenure `token`.
pub(crate) fn tenure(dir: &ElectionDir, token: u64) -> Result<Tenure> {
    let record = match read(&dir.latest(token), &dir.election, token) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => match read(&dir.claim(token), &dir.election, token) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => return Ok(Tenure::Gone),
            Err(e) if is_corrupt(&e) => Err(e),
            Err(e) => return Err(e),
        },
        Err(e) if is_corrupt(&e) => Err(e),
        Err(e) => return Err(e),
    };
    if record.as_ref().is_ok_and(|r| r.void) {
        return Ok(Tenure::Void);
    }
    let lock = lockfile::probe(&dir.claim(token)).map_err(|e| io_error("cannot probe", &dir.claim(token), e))?;
    if lock == LockState::Missing {
        return Ok(Tenure::Gone);
    }
    let standing = match record {
        Ok(Record { holder: Some(h), .. }) => Standing::Holder(h),
        Ok(Record { holder: None, .. }) => Standing::Released,
        Err(e) => Standing::Unknown(e),
    };
    Ok(Tenure::Found(Current { token, last: token, standing, lock }))
}

/// Where the current tenure stands, for followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nobody holds the lease: released, or its holder is gone (its lock is free).
    Free,
    /// Held, with this much left where known (an unreadable record or another build's clock
    /// cannot be judged: held for as long as its holder holds the lock).
    Live(Option<Duration>),
    /// The holder still holds its lock but the lease has run out (a stopped or stuck process):
    /// anyone may take it over.
    Expired,
}

impl Current {
    /// Where this tenure stands at `now`.
    pub(crate) fn phase(&self, now: &HostTime) -> Phase {
        if self.lock != LockState::Held {
            return Phase::Free;
        }
        match &self.standing {
            Standing::Released => Phase::Free,
            Standing::Unknown(_) => Phase::Live(None),
            Standing::Holder(h) => {
                let liveness = judge(&h.expiry(), now);
                if liveness.expired() {
                    Phase::Expired
                } else {
                    Phase::Live(liveness.left())
                }
            }
        }
    }
}

/// Whether a claim newer than `token` exists (tenure `token` has been superseded).
pub(crate) fn superseded(dir: &ElectionDir, token: u64) -> Result<bool> {
    Ok(dir.max_claim()?.is_some_and(|max| max > token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("12"), Some((FileKind::Claim, 12)));
        assert_eq!(parse_name("12.lease"), Some((FileKind::Latest, 12)));
        assert_eq!(parse_name("12.fifo"), Some((FileKind::Fifo, 12)));
        assert_eq!(parse_name(".12.345.0.tmp"), Some((FileKind::Temp, 12)));
        for other in ["", "x", "12.x", ".x.1", "1x", "-1", "12.lease.tmp", "99999999999999999999999"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    fn sample(token: u64) -> Record {
        Record::new(
            "jobs",
            token,
            Some(Holder {
                participant_id: "a".into(),
                instance_id: "i".into(),
                acquired_at: SystemTime::UNIX_EPOCH,
                renewed_at: SystemTime::UNIX_EPOCH,
                metadata: Metadata::from([("k".into(), "v".into())]),
                clock: "c".into(),
                boot_id: Some("b".into()),
                expires_ns: 42,
                ttl_ms: 3000,
                pid: 1,
            }),
        )
    }

    #[test]
    fn round_trip_and_refusals() -> Result<()> {
        let root = std::env::temp_dir().join(format!("leader-fs-state-{}", std::process::id()));
        fs::create_dir_all(&root).map_err(|e| io_error("mkdir", &root, e))?;
        let dir = ElectionDir::new(&root, "jobs");
        dir.ensure()?;
        dir.ensure()?;
        let path = dir.latest(7);
        assert_eq!(read(&path, "jobs", 7)?, None);
        replace(&dir, 7, &path, &sample(7))?;
        assert_eq!(read(&path, "jobs", 7)?, Some(sample(7)));
        assert!(dir.files()?.iter().all(|(k, _, _)| *k != FileKind::Temp), "the temp file was renamed");
        assert!(is_corrupt(&read(&path, "other", 7).expect_err("another election")));
        assert!(is_corrupt(&read(&path, "jobs", 8).expect_err("another token")));
        fs::write(&path, b"{\"format\":2,\"elec").map_err(|e| io_error("w", &path, e))?;
        let err = read(&path, "jobs", 7).expect_err("torn");
        assert!(is_corrupt(&err));
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        fs::remove_dir_all(&root).map_err(|e| io_error("rm", &root, e))?;
        Ok(())
    }
}
