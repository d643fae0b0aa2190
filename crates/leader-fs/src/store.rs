//! [`FsStore`]: the [`LeaseStore`] over a directory.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::stream::BoxStream;
use leader_core::{
    async_trait, validate_election_name, validate_prefix, Acquire, AcquireRequest, Capabilities, ElectionOptions,
    Error, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata, Renewal, Result,
};

use crate::clock::{self, judge, HostTime, Liveness};
use crate::fifo;
use crate::hooks::{self, Point};
use crate::lockfile::{LockState, Locked};
use crate::reaper::Reaper;
use crate::state::{self, io_error, Current, ElectionDir, Holder, Phase, Record, Standing};
use crate::waiter::Waiter;

/// How many claims an acquire attempts when other participants keep claiming first.
const CLAIM_ATTEMPTS: usize = 4;

/// A lease store over one directory of one machine: a directory per election holding one claim
/// file per tenure (named by its fencing token, created atomically with `link(2)` and `flock`ed by
/// its holder), the holder's latest record and a FIFO that wakes followers. See the crate docs for
/// the protocol and its guarantees.
///
/// Cheap to clone; clones share one handle (its tenures, waiter threads and reaper). Dropping the
/// last clone stops and joins its threads and closes its files, which releases any lease it still
/// held, as a crash would.
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
    boot_id: Option<String>,
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
    /// Tenures lost to a void claim (see [`Inner::lose`]): their locks are kept until their due
    /// time, when the reaper drops them.
    pub(crate) lingering: Vec<Tenure>,
}

/// A lease this handle holds.
pub(crate) struct Tenure {
    edir: ElectionDir,
    token: u64,
    /// The record as last written.
    holder: Holder,
    /// The claim file, locked. Declared before `fifo`, so it is unlocked first when the tenure is
    /// dropped: a waiter woken by the FIFO finds the lock free.
    #[allow(dead_code)] // only its Drop matters
    claim: Locked,
    /// The FIFO's writing end (`None` where FIFOs cannot be made: waiters then poll).
    #[allow(dead_code)] // only its Drop matters
    fifo: Option<OwnedFd>,
    /// Monotonic instant of (start of the last acquire/renew) + ttl, when the reaper gives the
    /// tenure up. The election's local deadline is earlier (it counts from the same start, with the
    /// shorter `renew_deadline`).
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
    fn record(&self, holder: Option<Holder>) -> Record {
        Record::new(&self.edir.election, self.token, holder)
    }

    fn view(&self, now: &HostTime) -> Lease {
        view(&self.edir.election, self.token, &self.holder, now)
    }

    /// Ends the tenure: records `holder: null`, then unlocks and closes the FIFO (waking the
    /// waiters). If the write fails, the free lock releases the lease anyway. Nothing is written
    /// for a tenure a newer claim has superseded.
    pub(crate) fn release(self, why: &str) {
        match state::superseded(&self.edir, self.token) {
            Ok(false) => {
                let path = self.edir.latest(self.token);
                if let Err(e) = state::replace(&self.edir, self.token, &path, &self.record(None)) {
                    tracing::warn!(error = %e, "leader-fs: cannot record the release; the free lock releases it anyway");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "leader-fs: cannot list the election; releasing without a record"),
        }
        tracing::debug!(election = %self.edir.election, token = self.token, why, "leader-fs lease released");
    }

    /// Ends a tenure that turned out not to be ours any more: nothing is written.
    fn give_up(self, why: &str) {
        tracing::info!(election = %self.edir.election, token = self.token, why, "leader-fs lease lost");
    }

    /// Rewrites this tenure's record with `change` applied, then checks that no newer claim
    /// exists. `Ok(false)`: superseded (the tenure is lost; the caller gives it up).
    ///
    /// The order (write, then look for a newer claim) pairs with a claimant's (claim, then read
    /// this record again; see `Inner::acquire`): of a renew and a takeover that race, at least one
    /// sees the other.
    fn rewrite(&mut self, now: &HostTime, change: impl FnOnce(&mut Holder, &HostTime)) -> Result<bool> {
        if !self.edir.claim(self.token).exists() {
            return Ok(false); // removed after a newer claim
        }
        let mut holder = self.holder.clone();
        holder.renewed_at = SystemTime::now();
        change(&mut holder, now);
        let path = self.edir.latest(self.token);
        state::replace(&self.edir, self.token, &path, &self.record(Some(holder.clone())))?;
        hooks::at(Point::Rewritten);
        if state::superseded(&self.edir, self.token)? {
            return Ok(false);
        }
        self.holder = holder;
        Ok(true)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reaper.stop();
        for w in lock(&self.waiters).values() {
            w.stop();
        }
        // Close our files now rather than when a thread lets go of the slots: as after a crash,
        // the record still names us and the free lock tells everyone we are gone.
        for slot in self.slots.all() {
            let mut slot = lock(&slot);
            slot.tenure.take();
            slot.lingering.clear();
        }
    }
}

/// The lease as followers see it, from a holder record read at `now`.
fn view(election: &str, token: u64, h: &Holder, now: &HostTime) -> Lease {
    let (expires_in, expires_at) = match judge(&h.expiry(), now) {
        Liveness::Live(left) => (Some(left), Some(SystemTime::now() + left)),
        Liveness::Overdue(by) => (None, SystemTime::now().checked_sub(by)),
        Liveness::OtherBoot | Liveness::OtherClock => (None, None),
    };
    Lease {
        election: election.to_owned(),
        participant_id: h.participant_id.clone(),
        instance_id: h.instance_id.clone(),
        token: FencingToken::new(token),
        acquired_at: Some(h.acquired_at),
        expires_at,
        expires_in,
        metadata: h.metadata.clone(),
        handle: Default::default(),
    }
}

/// The holder of a live tenure as followers see it (`None`: its record cannot be read).
fn held_view(election: &str, c: &Current, now: &HostTime) -> Option<Lease> {
    match &c.standing {
        Standing::Holder(h) => Some(view(election, c.token, h, now)),
        Standing::Released | Standing::Unknown(_) => None,
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
    /// network file system (NFS, SMB: this store is for one host) or one without hard links;
    /// `Unavailable` if it cannot be created or written (read-only file system, permissions);
    /// `Unsupported` on Linux without `/proc` (the boot id).
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

    /// Marks the lease of every election whose holder is gone (its lock is free: released without
    /// a record, crashed, or from a previous boot) as released, and removes the files of earlier
    /// tenures; returns how many holders it cleared. Never needed for correctness (an acquire
    /// treats such a holder as gone and removes old files itself), only for tidy directories.
    ///
    /// # Errors
    /// `Unavailable` when the directory cannot be read.
    pub async fn cleanup_expired_leases(&self) -> Result<usize> {
        self.blocking(|inner| inner.cleanup()).await
    }

    /// An operator's tool: ends the current tenure of `election` behind its holder's back by
    /// recording a void claim with the next token. The holder's next renew is refused (it steps
    /// down then, or at its local deadline if that comes first); until then nobody else may lead
    /// (the void claim is looked through), and afterwards the next acquire gets a greater token.
    /// Returns whether there was a tenure to end (false when the lease is free).
    ///
    /// # Errors
    /// `InvalidArgument` for an invalid election name; `Unavailable` on I/O errors.
    pub async fn break_lease(&self, election: &str) -> Result<bool> {
        let election = election.to_owned();
        self.blocking(move |inner| inner.break_lease(&election)).await
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        // Short file operations (a directory listing, one read, one atomic write, non-blocking
        // flocks; no sleeps, no lock waits): tokio's own file I/O runs on the blocking pool the
        // same way. A dropped future lets the operation finish; a lease it granted is recognised
        // by the same instance's next acquire, or given up by the reaper after its TTL.
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend("leader-fs worker thread failed").with_source(e))?
    }
}

/// Whether the "cannot make FIFOs here" warning was logged already.
static FIFO_WARNED: AtomicBool = AtomicBool::new(false);

impl Inner {
    fn edir(&self, election: &str) -> ElectionDir {
        ElectionDir::new(&self.dir, election)
    }

    fn now(&self) -> HostTime {
        HostTime::now(&self.boot_id)
    }

    fn holder(&self, req: &AcquireRequest, now: &HostTime) -> Holder {
        let wall = SystemTime::now();
        Holder {
            participant_id: req.participant_id.clone(),
            instance_id: req.instance_id.clone(),
            acquired_at: wall,
            renewed_at: wall,
            metadata: req.metadata.clone(),
            clock: clock::CLOCK.to_owned(),
            boot_id: self.boot_id.clone(),
            expires_ns: now.after(req.ttl),
            ttl_ms: ttl_ms(req.ttl),
            pid: std::process::id(),
        }
    }

    fn acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        let edir = self.edir(&req.election);
        let slot = self.slots.get_or_create(&req.election);
        let mut slot = lock(&slot);
        let started = Instant::now();
        if let Some(t) = slot.tenure.as_mut() {
            let now = self.now();
            if t.holder.instance_id != req.instance_id {
                // Another participant of this same handle leads.
                return Ok(Acquire::Held(Some(t.view(&now))));
            }
            // Already ours: same token, fresh TTL (a retried or manual-mode acquire).
            let (ttl, metadata) = (req.ttl, req.metadata.clone());
            let ours = t.rewrite(&now, |h, now| {
                h.expires_ns = now.after(ttl);
                h.ttl_ms = ttl_ms(ttl);
                h.metadata = metadata;
            })?;
            if ours {
                t.due = started + req.ttl;
                self.reaper.kick();
                return Ok(Acquire::Acquired(t.view(&now)));
            }
            if let Some(t) = slot.tenure.take() {
                self.lose(&mut slot, t);
            }
        }

        edir.ensure()?;
        for _ in 0..CLAIM_ATTEMPTS {
            // The clock is read after the record: an expiry is never judged against a reading
            // older than its write (see `clock::judge`).
            let current = state::current(&edir)?;
            let now = self.now();
            let (last, overdue) = match current {
                None => (0, None),
                Some(c) => match c.phase(&now) {
                    Phase::Live(_) => return Ok(Acquire::Held(held_view(&req.election, &c, &now))),
                    // Released, or its holder is gone (its lock is free): nobody else can act.
                    Phase::Free => (c.last, None),
                    // Expired while its holder still holds the lock (stopped, stuck): take over,
                    // then make sure it did not renew meanwhile.
                    Phase::Expired => (c.last, Some(c.token)),
                },
            };
            let token = last
                .checked_add(1)
                .ok_or_else(|| Error::backend(format!("fencing token of {:?} would overflow", req.election)))?;
            let Some(mut tenure) = self.claim(&edir, token, self.holder(req, &now))? else {
                continue; // another participant claimed `token` first: look again
            };
            hooks::at(Point::Claimed);
            if let Some(previous) = overdue {
                tenure = match self.confirm_takeover(tenure, previous)? {
                    Ok(t) => t,
                    Err(held) => return Ok(held),
                };
            }
            if state::superseded(&edir, token)? {
                // Claimed over while we were claiming (this process was stopped for a lease).
                tenure.give_up("a newer claim exists");
                continue;
            }
            edir.collect_garbage(token);
            tenure.due = started + req.ttl;
            let lease = tenure.view(&self.now());
            slot.tenure = Some(tenure);
            drop(slot);
            self.reaper.kick();
            return Ok(Acquire::Acquired(lease));
        }
        // Others kept claiming first: report whoever holds now.
        let current = state::current(&edir)?;
        let now = self.now();
        Ok(Acquire::Held(current.and_then(|c| held_view(&req.election, &c, &now))))
    }

    /// After claiming over an expired holder that still held its lock: reads its record again. If
    /// it renewed between our look and our claim, it may believe it leads (its renew was written
    /// before it could see our claim), so we must not: our claim is voided (recorded as released)
    /// and its holder is reported. Its own next renew sees our claim and fails, so the election
    /// goes on with the next token. Otherwise the takeover stands.
    fn confirm_takeover(&self, tenure: Tenure, previous: u64) -> Result<std::result::Result<Tenure, Acquire>> {
        let state::Tenure::Found(c) = state::tenure(&tenure.edir, previous)? else { return Ok(Ok(tenure)) };
        let now = self.now();
        if !matches!(c.phase(&now), Phase::Live(_)) {
            tracing::info!(
                election = %tenure.edir.election, token = tenure.token, previous,
                "leader-fs: took over an expired lease whose holder still holds its lock (stopped or stuck)"
            );
            return Ok(Ok(tenure));
        }
        tracing::info!(
            election = %tenure.edir.election, token = tenure.token, previous,
            "leader-fs: the expired holder renewed during the takeover; the claim is voided"
        );
        let path = tenure.edir.latest(tenure.token);
        let voided =
            state::replace(&tenure.edir, tenure.token, &path, &Record::void(&tenure.edir.election, tenure.token));
        let held = held_view(&tenure.edir.election, &c, &now);
        tenure.give_up("voided");
        voided?;
        Ok(Err(Acquire::Held(held)))
    }

    /// Claims tenure `token`: a complete record, locked, linked to its name `token` (which fails
    /// if another participant claimed it first: `Ok(None)`), with its FIFO renamed into place.
    fn claim(&self, edir: &ElectionDir, token: u64, holder: Holder) -> Result<Option<Tenure>> {
        let record = Record::new(&edir.election, token, Some(holder.clone()));
        let tmp = edir.temp(token, "claim");
        let file = state::write_temp(&tmp, &record)?;
        let remove = |p: &Path| {
            let _ = fs::remove_file(p);
        };
        // Locked before it has its real name: whoever opens the claim finds it locked.
        let claim = match Locked::try_new(file) {
            Ok(Some(l)) => l,
            Ok(None) => {
                remove(&tmp);
                return Err(Error::backend(format!("{} was locked by someone else while new", tmp.display())));
            }
            Err(e) => {
                remove(&tmp);
                return Err(io_error("cannot lock", &tmp, e));
            }
        };
        let fifo_tmp = edir.temp(token, "fifo");
        let fifo = match fifo::create(&fifo_tmp).and_then(|()| fifo::open_writer(&fifo_tmp)) {
            Ok(w) => Some(w),
            Err(e) => {
                remove(&fifo_tmp);
                if !FIFO_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, path = %fifo_tmp.display(), "leader-fs: cannot make a FIFO here; followers poll the lock instead of being woken");
                }
                None
            }
        };
        let linked = fs::hard_link(&tmp, edir.claim(token));
        remove(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) => {
                if fifo.is_some() {
                    remove(&fifo_tmp);
                }
                return match e.kind() {
                    io::ErrorKind::AlreadyExists => Ok(None),
                    _ => Err(io_error("cannot link the claim", &edir.claim(token), e)),
                };
            }
        }
        let fifo = fifo.and_then(|w| match fs::rename(&fifo_tmp, edir.fifo(token)) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "leader-fs: cannot rename the FIFO into place; followers poll");
                remove(&fifo_tmp);
                None
            }
        });
        let tenure = Tenure { edir: edir.clone(), token, holder, claim, fifo, due: Instant::now() };
        // The claim's name is the token counter: make it durable before anyone relies on it.
        // On error `tenure` is dropped, which unlocks: the claim is then a dead holder's.
        state::sync_dir(&edir.dir)?;
        Ok(Some(tenure))
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
        let Some(t) = slot.tenure.as_mut() else { return Ok(None) };
        if t.holder.instance_id != lease.instance_id || t.token != lease.token.get() {
            return Ok(None);
        }
        let now = self.now();
        if !t.rewrite(&now, change)? {
            if let Some(t) = slot.tenure.take() {
                self.lose(&mut slot, t);
            }
            return Ok(None);
        }
        if let Some(ttl) = ttl {
            t.due = started + ttl;
            self.reaper.kick();
        }
        Ok(Some(t.view(&now)))
    }

    /// A tenure of ours found superseded by a renew (or a refreshing acquire), which therefore
    /// answers "not ours". If a real tenure superseded it, it is given up at once. If only void
    /// claims did (a takeover called off because we renewed, or `break_lease`), we are still the
    /// current tenure to everyone else, and our election's local deadline from our last successful
    /// renew may not have passed yet when it reads the answer: we keep the lock until the
    /// tenure's due time (after that deadline), so that nobody leads before then.
    fn lose(&self, slot: &mut Slot, t: Tenure) {
        match state::current(&t.edir) {
            Ok(Some(c)) if c.token == t.token && t.due > Instant::now() => {
                tracing::info!(election = %t.edir.election, token = t.token, "leader-fs lease lost to a void claim; its lock is kept until its TTL");
                slot.lingering.push(t);
                self.reaper.kick();
            }
            _ => t.give_up("a newer claim exists"),
        }
    }

    /// Extends our tenure of `lease` by `ttl`: [`LeaseStore::renew`].
    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.change_own(
            lease,
            |h, now| {
                h.expires_ns = now.after(ttl);
                h.ttl_ms = ttl_ms(ttl);
            },
            Some(ttl),
        )
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        let Some(slot) = self.slots.get(&lease.election) else { return Ok(false) };
        let mut slot = lock(&slot);
        let lingering = |t: &Tenure| t.holder.instance_id == lease.instance_id && t.token == lease.token.get();
        if let Some(i) = slot.lingering.iter().position(lingering) {
            // Its election has stepped down already (it was told "not ours"): let it go now.
            slot.lingering.swap_remove(i).give_up("released after it was lost");
            return Ok(true);
        }
        let ours = slot
            .tenure
            .as_ref()
            .is_some_and(|t| t.holder.instance_id == lease.instance_id && t.token == lease.token.get());
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
        let edir = self.edir(election);
        let Some(c) = state::current(&edir)? else { return Ok(None) };
        let now = self.now();
        match c.phase(&now) {
            Phase::Free | Phase::Expired => Ok(None),
            Phase::Live(_) => match c.standing {
                Standing::Holder(h) => Ok(Some(view(election, c.token, &h, &now))),
                Standing::Unknown(e) => Err(e),
                Standing::Released => Ok(None),
            },
        }
    }

    fn elections(&self, prefix: &str) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.dir, e))?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
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
                // One corrupt record should not hide the others; its error shows on that election.
                Err(e) if state::is_corrupt(&e) => {
                    tracing::warn!(error = %e, "leader-fs: list skips an unreadable record")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn cleanup(&self) -> Result<usize> {
        let mut cleared = 0;
        for name in self.elections("")? {
            let edir = self.edir(&name);
            let Some(c) = state::current(&edir)? else { continue };
            edir.collect_garbage(c.token);
            if c.lock != LockState::Free || matches!(c.standing, Standing::Released) {
                continue; // a live (or stopped) holder, or nothing to clear
            }
            let record = Record::new(&name, c.token, None);
            state::replace(&edir, c.token, &edir.latest(c.token), &record)?;
            cleared += 1;
        }
        Ok(cleared)
    }

    fn break_lease(&self, election: &str) -> Result<bool> {
        validate_election_name(election)?;
        let edir = self.edir(election);
        for _ in 0..CLAIM_ATTEMPTS {
            let Some(c) = state::current(&edir)? else { return Ok(false) };
            let now = self.now();
            if c.phase(&now) == Phase::Free {
                return Ok(false);
            }
            let token = c
                .last
                .checked_add(1)
                .ok_or_else(|| Error::backend(format!("fencing token of {election:?} would overflow")))?;
            let record = Record::void(election, token);
            let tmp = edir.temp(token, "void");
            drop(state::write_temp(&tmp, &record)?);
            let linked = fs::hard_link(&tmp, edir.claim(token));
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    state::sync_dir(&edir.dir)?;
                    tracing::info!(election, token = c.token, "leader-fs: lease broken by break_lease");
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("cannot link the claim", &edir.claim(token), e)),
            }
        }
        Err(Error::unavailable(format!("election {election:?} kept changing; break_lease gave up")))
    }

    fn watch(&self, election: &str) -> Option<BoxStream<'static, ()>> {
        validate_election_name(election).ok()?;
        let mut waiters = lock(&self.waiters);
        if let Some(w) = waiters.get(election).filter(|w| w.is_running()) {
            return Some(w.subscribe());
        }
        if let Some(old) = waiters.remove(election) {
            old.stop(); // ended by itself: join it
        }
        match Waiter::spawn(self.edir(election), self.boot_id.clone()) {
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

/// The answers of a batch run in one blocking task; if the task itself failed (it panicked), every
/// lease of the batch gets that error, since none of them can be known to have been handled.
fn per_lease<T>(answers: Result<Vec<Result<T>>>, n: usize) -> Vec<Result<T>> {
    match answers {
        Ok(answers) => answers,
        Err(e) => {
            // `Error` is not `Clone`: each lease gets a copy of its kind and words.
            let message = match std::error::Error::source(&e) {
                Some(source) => format!("{}: {source}", e.message()),
                None => e.message().to_owned(),
            };
            (0..n).map(|_| Err(Error::new(e.kind(), message.clone()))).collect()
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
        self.blocking(move |inner| inner.renew(&lease, ttl)).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.blocking(move |inner| inner.release(&lease)).await
    }

    /// One pass: a single blocking task renews the leases one after another, each exactly as
    /// [`renew`](Self::renew) does (its own slot lock, write, then look for a newer claim). Each
    /// renewal is a few short file operations, so a thread per lease would cost more in hand-offs
    /// than it saves, and thousands of elections would otherwise flood the blocking pool.
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let batch = batch.to_vec();
        let n = batch.len();
        let answers = self
            .blocking(move |inner| Ok(batch.iter().map(|r| inner.renew(&r.lease, r.ttl)).collect::<Vec<_>>()))
            .await;
        per_lease(answers, n)
    }

    /// One pass, like [`renew_batch`](Self::renew_batch).
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let leases = leases.to_vec();
        let n = leases.len();
        let answers = self.blocking(move |inner| Ok(leases.iter().map(|l| inner.release(l)).collect::<Vec<_>>())).await;
        per_lease(answers, n)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(election: &str, who: &str, ttl: Duration) -> AcquireRequest {
        AcquireRequest {
            election: election.into(),
            participant_id: who.into(),
            instance_id: format!("{who}-instance"),
            ttl,
            metadata: Metadata::new(),
        }
    }

    fn temp_store(name: &str) -> FsStore {
        let dir = std::env::temp_dir().join(format!("leader-fs-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        FsStore::open(&dir).expect("store")
    }

    /// A holder that still holds its lock (as a stopped process does) but whose lease has expired.
    fn stopped_holder(inner: &Inner, edir: &ElectionDir, token: u64) -> Tenure {
        edir.ensure().expect("dir");
        let mut holder = inner.holder(&req(&edir.election, "stopped", Duration::from_millis(1)), &inner.now());
        holder.expires_ns = inner.now().ns.saturating_sub(1);
        inner.claim(edir, token, holder).expect("claim").expect("free token")
    }

    #[test]
    fn an_expired_holder_that_still_holds_its_lock_is_taken_over_with_the_next_token() {
        let store = temp_store("takeover");
        let inner = &store.inner;
        let edir = inner.edir("jobs");
        let mut old = stopped_holder(inner, &edir, 4);
        let got = inner.acquire(&req("jobs", "b", Duration::from_secs(3))).expect("acquire");
        let Acquire::Acquired(lease) = got else { panic!("expected a takeover, got {got:?}") };
        assert_eq!(lease.token, FencingToken::new(5));
        // The old holder resumes: its renew is refused, and it wrote nothing that counts.
        let now = inner.now();
        let renewed = old.rewrite(&now, |h, now| {
            h.expires_ns = now.after(Duration::from_secs(3));
            h.ttl_ms = 3000;
        });
        assert!(!renewed.expect("rewrite"));
        let c = state::current(&edir).expect("read").expect("tenure");
        assert_eq!(c.token, 5);
        assert!(matches!(c.phase(&inner.now()), Phase::Live(Some(_))));
        let _ = fs::remove_dir_all(store.dir());
    }

    fn extend(h: &mut Holder, now: &HostTime) {
        h.expires_ns = now.after(Duration::from_secs(3));
        h.ttl_ms = 3000;
    }

    /// The race of a renew and a takeover (write-then-look against claim-then-look), when the old
    /// holder's renew is written after the claimant looked and looks after the claimant claimed:
    /// its renew fails, and the claimant, seeing the renewal, voids its claim.
    #[test]
    fn a_renew_written_during_a_takeover_fails_and_voids_the_takeover() {
        let store = temp_store("race");
        let inner = &store.inner;
        let edir = inner.edir("jobs");
        let mut old = stopped_holder(inner, &edir, 1);
        let now = inner.now();
        let c = state::current(&edir).expect("read").expect("tenure");
        assert_eq!(c.phase(&now), Phase::Expired);
        let claim = inner.claim(&edir, 2, inner.holder(&req("jobs", "b", Duration::from_secs(3)), &now));
        let claim = claim.expect("claim").expect("token 2 is free");
        let renewed = old.rewrite(&inner.now(), extend);
        assert!(!renewed.expect("rewrite"), "the old holder must see the newer claim");
        let outcome = inner.confirm_takeover(claim, 1).expect("confirm");
        let Err(Acquire::Held(Some(h))) = outcome else { panic!("expected the takeover to be voided") };
        assert_eq!((h.participant_id.as_str(), h.token), ("stopped", FencingToken::new(1)));
        // The election goes on with the next token once the old holder gives up.
        old.give_up("test");
        let got = inner.acquire(&req("jobs", "c", Duration::from_secs(3))).expect("acquire");
        let Acquire::Acquired(lease) = got else { panic!("expected to acquire, got {got:?}") };
        assert_eq!(lease.token, FencingToken::new(3));
        let _ = fs::remove_dir_all(store.dir());
    }

    /// The same race when the old holder's whole renew (write, then look) happens after the
    /// claimant looked and before it claimed: the renew succeeds, so the old holder leads on. The
    /// claimant voids its claim, and nobody else may take over while the old holder leads: the
    /// void claim is looked through.
    #[test]
    fn a_renew_completed_during_a_takeover_keeps_the_old_holder_alone() {
        let store = temp_store("race2");
        let inner = &store.inner;
        let edir = inner.edir("jobs");
        let mut old = stopped_holder(inner, &edir, 1);
        let now = inner.now();
        assert_eq!(state::current(&edir).expect("read").expect("tenure").phase(&now), Phase::Expired);
        assert!(old.rewrite(&inner.now(), extend).expect("rewrite"), "no newer claim yet: renewed");
        let claim = inner.claim(&edir, 2, inner.holder(&req("jobs", "b", Duration::from_secs(3)), &now));
        let claim = claim.expect("claim").expect("token 2 is free");
        let outcome = inner.confirm_takeover(claim, 1).expect("confirm");
        assert!(matches!(outcome, Err(Acquire::Held(Some(_)))), "the takeover must be voided");
        // A third participant must not lead while the old holder does.
        let got = inner.acquire(&req("jobs", "c", Duration::from_secs(3))).expect("acquire");
        let Acquire::Held(Some(h)) = got else { panic!("expected the old holder to hold, got {got:?}") };
        assert_eq!((h.participant_id.as_str(), h.token), ("stopped", FencingToken::new(1)));
        // Its next renew sees the (void) newer claim and fails; then the election goes on.
        assert!(!old.rewrite(&inner.now(), extend).expect("rewrite"));
        old.give_up("test");
        let got = inner.acquire(&req("jobs", "c", Duration::from_secs(3))).expect("acquire");
        let Acquire::Acquired(lease) = got else { panic!("expected to acquire, got {got:?}") };
        assert_eq!(lease.token, FencingToken::new(3));
        let _ = fs::remove_dir_all(store.dir());
    }

    #[test]
    fn a_takeover_stands_when_the_old_holder_did_not_renew() {
        let store = temp_store("stands");
        let inner = &store.inner;
        let edir = inner.edir("jobs");
        let _old = stopped_holder(inner, &edir, 1);
        let now = inner.now();
        let claim = inner.claim(&edir, 2, inner.holder(&req("jobs", "b", Duration::from_secs(3)), &now));
        let claim = claim.expect("claim").expect("token 2 is free");
        assert!(inner.confirm_takeover(claim, 1).expect("confirm").is_ok());
        // A second claimant of the same token loses the link.
        let again = inner.claim(&edir, 2, inner.holder(&req("jobs", "c", Duration::from_secs(3)), &now));
        assert!(again.expect("claim").is_none());
        assert!(edir.files().expect("files").iter().all(|(k, t, _)| *k != state::FileKind::Temp || *t != 2));
        let _ = fs::remove_dir_all(store.dir());
    }
}
