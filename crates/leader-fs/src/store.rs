//! [`FsStore`]: the [`LeaseStore`] over a directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::stream::BoxStream;
use leader_core::{
    async_trait, validate_election_name, validate_prefix, Acquire, AcquireRequest, Capabilities, ElectionOptions,
    Error, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata, Result,
};

use crate::clock::{self, judge, HostTime, Liveness};
use crate::lockfile::{self, Guard};
use crate::reaper::Reaper;
use crate::state::{self, io_error, Durability, Holder, Paths, StateFile, FORMAT, STATE_SUFFIX};
use crate::waiter::Waiter;

/// A lease store over one directory of one machine: `<election>.lease` (state, JSON, replaced
/// atomically), `<election>.lock` (held with `flock` by the leader for its whole tenure) and
/// `<election>.guard` (a short exclusive section) per election. See the crate docs for the
/// protocol and its guarantees.
///
/// Cheap to clone; clones share one handle (its tenures, waiter threads and reaper). Dropping the
/// last clone closes its lock files, which releases any lease it still held, as a crash would.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    boot_id: String,
    pub(crate) slots: Arc<Slots>,
    waiters: Mutex<HashMap<String, Waiter>>,
    reaper: Reaper,
}

/// The tenures this handle holds, one slot per election it has touched.
#[derive(Default)]
pub(crate) struct Slots {
    map: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
}

#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) tenure: Option<Tenure>,
}

/// A lease this handle holds: the open lock file (locked), the record as last written, and when
/// the reaper gives it up if it is not renewed.
pub(crate) struct Tenure {
    election: String,
    /// Held for the tenure; unlocked when the tenure is dropped.
    #[allow(dead_code)] // only its Drop matters
    file: lockfile::Locked,
    paths: Paths,
    holder: Holder,
    /// Monotonic (`CLOCK_MONOTONIC`) instant of (start of the last acquire/renew) + ttl. The
    /// election's local deadline is on the same clock and earlier, so the reaper never frees a
    /// lock before its holder has stepped down locally, suspend or not.
    pub(crate) due: Instant,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slots {
    pub(crate) fn all(&self) -> Vec<Arc<Mutex<Slot>>> {
        lock(&self.map).values().cloned().collect()
    }

    fn get_or_create(&self, election: &str) -> Arc<Mutex<Slot>> {
        lock(&self.map).entry(election.to_owned()).or_default().clone()
    }

    fn get(&self, election: &str) -> Option<Arc<Mutex<Slot>>> {
        lock(&self.map).get(election).cloned()
    }
}

impl Tenure {
    /// Ends the tenure: writes `holder: null` (keeping the token), then unlocks. If the write
    /// fails the file still names us while the lock is free, which every reader takes for a dead
    /// holder: the lease is released either way.
    pub(crate) fn release(self, why: &str) {
        let state =
            StateFile { format: FORMAT, election: self.election.clone(), token: self.holder.token, holder: None };
        if let Err(e) = state::write(&self.paths, &state, Durability::SameToken) {
            tracing::warn!(error = %e, "leader-fs: cannot record the release; the free lock releases it anyway");
        }
        // Dropping `self` unlocks `self.file`.
        tracing::debug!(election = %state.election, token = self.holder.token, why, "leader-fs lease released");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reaper.stop();
        for w in lock(&self.waiters).values() {
            w.stop();
        }
        // Close our lock files now rather than when a thread lets go of the slots: as after a
        // crash, the state still names us and the free lock tells everyone we are gone.
        for slot in self.slots.all() {
            lock(&slot).tenure.take();
        }
    }
}

/// The lease as followers see it, from a holder record read at `now`.
fn view(election: &str, h: &Holder, now: &HostTime) -> Lease {
    let (expires_in, expires_at) = match judge(&h.boot_id, h.expires_boottime_ns, now) {
        Liveness::Live(left) => (Some(left), Some(SystemTime::now() + left)),
        // Held past its expiry (a stopped process): nobody can say when it will let go.
        Liveness::Overdue(by) => (None, SystemTime::now().checked_sub(by)),
        Liveness::OtherBoot => (None, None),
    };
    Lease {
        election: election.to_owned(),
        participant_id: h.participant_id.clone(),
        instance_id: h.instance_id.clone(),
        token: FencingToken::new(h.token),
        acquired_at: Some(h.acquired_at),
        expires_at,
        expires_in,
        metadata: h.metadata.clone(),
        handle: Default::default(),
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl FsStore {
    /// Opens the store in `dir`, creating the directory if its parent exists.
    ///
    /// # Errors
    /// `InvalidArgument` if `dir` is not a directory, its parent does not exist, or it is on a
    /// network file system (NFS, SMB: this store is for one host); `Unavailable` if it cannot be
    /// created or written (read-only file system, permissions); `Unsupported` off Linux.
    pub fn open(dir: impl AsRef<Path>) -> Result<FsStore> {
        let dir = crate::dir::prepare(dir.as_ref())?;
        let boot_id = clock::boot_id()?;
        let slots = Arc::new(Slots::default());
        let reaper = Reaper::new(slots.clone());
        Ok(FsStore { inner: Arc::new(Inner { dir, boot_id, slots, waiters: Mutex::new(HashMap::new()), reaper }) })
    }

    /// Opens `file:///absolute/path` (see [`FsStore::open`]).
    ///
    /// # Errors
    /// `InvalidArgument` for a URL that is not `file:///...` or has a query, a fragment or a host
    /// other than `localhost`; otherwise as [`FsStore::open`].
    pub fn from_url(url: &str) -> Result<FsStore> {
        FsStore::open(crate::dir::path_from_url(url)?)
    }

    /// The directory this store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Clears the holder of every election whose holder is gone (its lock is free) or written in
    /// a previous boot, keeping the token counter; returns how many. Never needed for correctness
    /// (an acquire treats such a holder as gone), only for tidy state files and `cat`.
    ///
    /// # Errors
    /// `Unavailable` when the directory cannot be read.
    pub async fn cleanup_expired_leases(&self) -> Result<usize> {
        self.blocking(|inner| inner.cleanup()).await
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        // Short file operations (one read, one atomic write, a non-blocking flock): tokio's own
        // file I/O runs on the blocking pool the same way. A dropped future lets the operation
        // finish; a lease it granted is recognised by the same instance's next acquire, or
        // given up by the reaper after its TTL.
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend("leader-fs worker thread failed").with_source(e))?
    }
}

impl Inner {
    fn paths(&self, election: &str) -> Paths {
        Paths::new(&self.dir, election)
    }

    fn now(&self) -> HostTime {
        HostTime::now(&self.boot_id)
    }

    fn acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        let paths = self.paths(&req.election);
        let slot = self.slots.get_or_create(&req.election);
        let mut slot = lock(&slot);
        let started = Instant::now();
        let now = self.now();
        if let Some(t) = slot.tenure.as_mut() {
            if t.holder.instance_id != req.instance_id {
                // Another participant of this same handle leads.
                return Ok(Acquire::Held(Some(view(&req.election, &t.holder, &now))));
            }
            // Already ours: same token, fresh TTL (a retried or manual-mode acquire).
            let mut holder = t.holder.clone();
            holder.renewed_at = SystemTime::now();
            holder.expires_boottime_ns = now.after(req.ttl);
            holder.ttl_ms = ttl_ms(req.ttl);
            holder.metadata = req.metadata.clone();
            let state = StateFile {
                format: FORMAT,
                election: req.election.clone(),
                token: holder.token,
                holder: Some(holder.clone()),
            };
            state::write(&paths, &state, Durability::SameToken)?;
            t.holder = holder;
            t.due = started + req.ttl;
            self.reaper.kick();
            return Ok(Acquire::Acquired(view(&req.election, &t.holder, &now)));
        }

        let guard = Guard::acquire(&paths.guard)?;
        let file = lockfile::open(&paths.lock)?;
        let Some(file) = lockfile::try_take(file).map_err(|e| io_error("cannot lock", &paths.lock, e))? else {
            // Held: by a leader (its record is in the state file) or, for an instant, by a waiter
            // thread that was just woken (then the record is a dead holder's or null).
            let holder = match state::read(&paths, &req.election) {
                Ok(s) => s.and_then(|s| s.holder),
                Err(e) => {
                    tracing::warn!(error = %e, "leader-fs: the lock is held but the state is unreadable");
                    None
                }
            };
            drop(guard);
            let info = holder
                .filter(|h| judge(&h.boot_id, h.expires_boottime_ns, &now) != Liveness::OtherBoot)
                .map(|h| view(&req.election, &h, &now));
            return Ok(Acquire::Held(info));
        };
        // The lock is ours, so nobody else leads: a holder still named in the file is gone.
        // On any error below `file` is dropped, which unlocks.
        let previous = state::read(&paths, &req.election)?;
        let last = previous.as_ref().map_or(0, |s| s.token);
        if let Some(gone) = previous.as_ref().and_then(|s| s.holder.as_ref()) {
            tracing::info!(
                election = %req.election, participant = %gone.participant_id, token = gone.token,
                "leader-fs: previous holder left without releasing (its lock was free); taking over"
            );
        }
        let token = last
            .checked_add(1)
            .ok_or_else(|| Error::backend(format!("fencing token of {:?} would overflow", req.election)))?;
        let wall = SystemTime::now();
        let holder = Holder {
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            token,
            acquired_at: wall,
            renewed_at: wall,
            metadata: req.metadata.clone(),
            boot_id: self.boot_id.clone(),
            expires_boottime_ns: now.after(req.ttl),
            ttl_ms: ttl_ms(req.ttl),
            pid: std::process::id(),
        };
        let state = StateFile { format: FORMAT, election: req.election.clone(), token, holder: Some(holder.clone()) };
        state::write(&paths, &state, Durability::NewToken)?;
        drop(guard);
        let lease = view(&req.election, &holder, &now);
        slot.tenure = Some(Tenure { election: req.election.clone(), file, paths, holder, due: started + req.ttl });
        drop(slot);
        self.reaper.kick();
        Ok(Acquire::Acquired(lease))
    }

    /// Runs `change` on our tenure of `lease` if it is still ours; writes the changed record.
    /// `Ok(None)`: not ours (any more).
    fn change_own(
        &self,
        lease: &Lease,
        change: impl FnOnce(&mut Holder, &HostTime),
        ttl: Option<Duration>,
    ) -> Result<Option<Lease>> {
        let Some(slot) = self.slots.get(&lease.election) else { return Ok(None) };
        let mut slot = lock(&slot);
        let started = Instant::now();
        let ours = slot
            .tenure
            .as_ref()
            .is_some_and(|t| t.holder.instance_id == lease.instance_id && t.holder.token == lease.token.get());
        if !ours {
            return Ok(None);
        }
        let Some(t) = slot.tenure.as_mut() else { return Ok(None) };
        // We hold the lock, so nobody else may have written. Check anyway: a file rewritten by
        // hand (or from another host over a network mount) means this tenure cannot be trusted.
        let durability = match state::read(&t.paths, &lease.election) {
            Ok(Some(s))
                if s.token == t.holder.token
                    && s.holder.as_ref().is_some_and(|h| h.instance_id == t.holder.instance_id) =>
            {
                Durability::SameToken
            }
            Ok(Some(s)) => {
                tracing::error!(
                    election = %lease.election, token = t.holder.token, file_token = s.token,
                    "leader-fs: the state file no longer names this holder although it holds the lock; giving the lease up"
                );
                // Unlock without overwriting what is there.
                drop(slot.tenure.take());
                return Ok(None);
            }
            Ok(None) | Err(_) => {
                // Deleted or corrupted under us: we hold the lock, so our token is the last one
                // issued; write our record back.
                tracing::warn!(election = %lease.election, path = %t.paths.state.display(), "leader-fs: state file missing or corrupt; the holder rewrites it");
                // The rewritten file carries the counter again: make its rename durable.
                Durability::NewToken
            }
        };
        let now = self.now();
        let mut holder = t.holder.clone();
        holder.renewed_at = SystemTime::now();
        change(&mut holder, &now);
        let state = StateFile {
            format: FORMAT,
            election: lease.election.clone(),
            token: holder.token,
            holder: Some(holder.clone()),
        };
        state::write(&t.paths, &state, durability)?;
        t.holder = holder;
        if let Some(ttl) = ttl {
            t.due = started + ttl;
            self.reaper.kick();
        }
        Ok(Some(view(&lease.election, &t.holder, &now)))
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        let Some(slot) = self.slots.get(&lease.election) else { return Ok(false) };
        let mut slot = lock(&slot);
        let ours = slot
            .tenure
            .as_ref()
            .is_some_and(|t| t.holder.instance_id == lease.instance_id && t.holder.token == lease.token.get());
        if !ours {
            return Ok(false);
        }
        if let Some(t) = slot.tenure.take() {
            t.release("released");
        }
        Ok(true)
    }

    /// The live holder of `election`, if any.
    fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let now = self.now();
        if let Some(slot) = self.slots.get(election) {
            if let Some(t) = lock(&slot).tenure.as_ref() {
                return Ok(Some(view(election, &t.holder, &now)));
            }
        }
        let paths = self.paths(election);
        // Fast path: no holder recorded, no need to look at the lock.
        let recorded = state::read(&paths, election)?.and_then(|s| s.holder);
        if recorded.is_none() {
            return Ok(None);
        }
        // Someone is recorded: alive only if the lock is held. Probe under the guard (so no
        // acquirer sees the probe), then read the record that goes with the lock's holder.
        let _guard = Guard::acquire(&paths.guard)?;
        let file = match std::fs::OpenOptions::new().read(true).open(&paths.lock) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot open the lock file", &paths.lock, e)),
        };
        if let Some(_probe) = lockfile::try_take(file).map_err(|e| io_error("cannot probe", &paths.lock, e))? {
            return Ok(None); // free: the recorded holder is gone (`_probe` unlocks on return)
        }
        let holder = state::read(&paths, election)?.and_then(|s| s.holder);
        Ok(holder
            .filter(|h| judge(&h.boot_id, h.expires_boottime_ns, &now) != Liveness::OtherBoot)
            .map(|h| view(election, &h, &now)))
    }

    fn elections(&self, prefix: &str) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().and_then(|n| n.strip_suffix(STATE_SUFFIX)) else { continue };
            if name.starts_with(prefix) && validate_election_name(name).is_ok() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let mut out = Vec::new();
        for name in self.elections(prefix)? {
            match self.current(&name) {
                Ok(Some(h)) => out.push(h),
                Ok(None) => {}
                // One corrupt file should not hide the others; its error shows on that election.
                Err(e) if state::is_corrupt(&e) => {
                    tracing::warn!(error = %e, "leader-fs: list skips a corrupt state file")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn cleanup(&self) -> Result<usize> {
        let mut cleared = 0;
        for name in self.elections("")? {
            let paths = self.paths(&name);
            let _guard = Guard::acquire(&paths.guard)?;
            let file = lockfile::open(&paths.lock)?;
            let Some(_probe) = lockfile::try_take(file).map_err(|e| io_error("cannot probe", &paths.lock, e))? else {
                continue; // a live holder
            };
            let Ok(Some(mut s)) = state::read(&paths, &name) else { continue };
            if s.holder.take().is_some() {
                state::write(&paths, &s, Durability::SameToken)?;
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    fn watch(&self, election: &str) -> Option<BoxStream<'static, ()>> {
        validate_election_name(election).ok()?;
        let mut waiters = lock(&self.waiters);
        if let Some(w) = waiters.get(election).filter(|w| w.is_running()) {
            return Some(w.subscribe());
        }
        match Waiter::spawn(self.paths(election)) {
            Ok(w) => {
                let stream = w.subscribe();
                waiters.insert(election.to_owned(), w);
                Some(stream)
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader-fs: cannot start a waiter thread; followers poll");
                None
            }
        }
    }
}

#[async_trait]
impl LeaseStore for FsStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let req = req.clone();
        self.blocking(move |inner| inner.acquire(&req)).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let lease = lease.clone();
        self.blocking(move |inner| {
            inner.change_own(
                &lease,
                |h, now| {
                    h.expires_boottime_ns = now.after(ttl);
                    h.ttl_ms = ttl_ms(ttl);
                },
                Some(ttl),
            )
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.blocking(move |inner| inner.release(&lease)).await
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let (lease, metadata) = (lease.clone(), metadata.clone());
        self.blocking(move |inner| inner.change_own(&lease, |h, _| h.metadata = metadata, None)).await
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        let election = election.to_owned();
        self.blocking(move |inner| inner.current(&election)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.list(&prefix)).await
    }

    fn watch(&self, election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.watch(election)
    }

    fn capabilities(&self) -> Capabilities {
        crate::CAPABILITIES
    }

    fn check_options(&self, _options: &ElectionOptions) -> Result<()> {
        // Any lease the core accepts: expiry is measured on this host, in nanoseconds.
        Ok(())
    }
}
