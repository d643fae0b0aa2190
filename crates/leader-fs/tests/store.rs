//! Store-level tests of `FsStore` against the `LeaseStore` trait, in one process: every
//! participant opens its own store handle (its own lock-file descriptions), as separate processes
//! would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use leader_core::{Acquire, AcquireRequest, ErrorKind, FencingToken, Lease, LeaseStore, Metadata, Renewal, Result};
use leader_fs::FsStore;

fn req(election: &str, who: &str, ttl: Duration) -> AcquireRequest {
    AcquireRequest {
        election: election.into(),
        participant_id: who.into(),
        instance_id: format!("{who}-{}", uuid::Uuid::new_v4()),
        ttl,
        metadata: Metadata::from([("who".into(), who.into())]),
    }
}

fn acquired(a: Acquire) -> Lease {
    match a {
        Acquire::Acquired(l) => l,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

fn held(a: Acquire) -> Option<Lease> {
    match a {
        Acquire::Held(h) => h,
        other => panic!("expected Held, got {other:?}"),
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

const TTL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn acquire_hold_renew_release_and_tokens_grow() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let ra = req("jobs", "a", TTL);
    let rb = req("jobs", "b", TTL);

    let la = acquired(a.try_acquire(&ra).await?);
    assert_eq!(la.token, FencingToken::new(1));
    assert_eq!(la.participant_id, "a");
    assert!(la.expires_in.is_some_and(|d| d <= TTL && d > TTL - Duration::from_millis(500)), "{la:?}");

    // Another handle (another open file description) is refused and told who leads.
    let h = held(b.try_acquire(&rb).await?).expect("holder named");
    assert_eq!((h.participant_id.as_str(), h.token), ("a", la.token));
    assert_eq!(h.metadata.get("who").map(String::as_str), Some("a"));

    // Idempotent per instance: same token, fresh TTL.
    let again = acquired(a.try_acquire(&ra).await?);
    assert_eq!(again.token, la.token);

    // Renew, update_metadata: only our own tenure.
    assert!(a.renew(&la, TTL).await?.is_some());
    let mut fake = la.clone();
    fake.instance_id = rb.instance_id.clone();
    assert!(a.renew(&fake, TTL).await?.is_none());
    assert!(b.renew(&la, TTL).await?.is_none(), "another handle does not hold our lock");
    assert!(!b.release(&la).await?);
    let meta = Metadata::from([("v".into(), "2".into())]);
    let updated = a.update_metadata(&la, &meta).await?.expect("ours");
    assert_eq!(updated.metadata, meta);
    assert_eq!(b.current("jobs").await?.map(|l| l.metadata), Some(meta));

    // Release hands over; the token keeps growing.
    assert!(a.release(&la).await?);
    assert!(!a.release(&la).await?, "released twice");
    assert!(a.renew(&la, TTL).await?.is_none());
    assert!(b.current("jobs").await?.is_none());
    let lb = acquired(b.try_acquire(&rb).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    assert!(b.release(&lb).await?);

    // Tokens survive every handle: a new store on the same directory continues the count.
    drop((a, b));
    let c = FsStore::open(dir.path())?;
    let lc = acquired(c.try_acquire(&req("jobs", "c", TTL)).await?);
    assert_eq!(lc.token, FencingToken::new(3));
    Ok(())
}

#[tokio::test]
async fn a_release_is_recorded_and_the_claim_keeps_the_counter() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let la = acquired(a.try_acquire(&req("keep", "a", TTL)).await?);
    a.release(&la).await?;
    let text = std::fs::read_to_string(dir.path().join("keep/1.lease")).expect("latest record");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["token"], 1);
    assert!(json["holder"].is_null(), "{text}");
    // The claim names the first holder for good; the next tenure is claim 2, and claim 1 goes.
    let claim: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("keep/1")).expect("claim")).expect("json");
    assert_eq!(claim["holder"]["participant_id"], "a");
    let lb = acquired(a.try_acquire(&req("keep", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("keep"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["2", "2.fifo"], "earlier tenures are removed, and no temporary file is left");
    Ok(())
}

#[tokio::test]
async fn several_participants_of_one_handle_exclude_each_other() -> Result<()> {
    let dir = tempdir();
    let s = FsStore::open(dir.path())?;
    let la = acquired(s.try_acquire(&req("shared", "a", TTL)).await?);
    let h = held(s.try_acquire(&req("shared", "b", TTL)).await?).expect("holder");
    assert_eq!(h.token, la.token);
    assert!(s.release(&la).await?);
    let lb = acquired(s.try_acquire(&req("shared", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    Ok(())
}

#[tokio::test]
async fn dropping_a_handle_frees_its_lease_like_a_crash() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let la = acquired(a.try_acquire(&req("crash", "a", TTL)).await?);
    let mut watch = b.watch("crash", None).expect("fs pushes");
    assert!(held(b.try_acquire(&req("crash", "b", TTL)).await?).is_some());
    let start = Instant::now();
    drop(a);
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("pushed within 2 s").expect("item");
    let lb = acquired(b.try_acquire(&req("crash", "b", TTL)).await?);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(lb.token > la.token);
    Ok(())
}

#[tokio::test]
async fn release_wakes_a_watcher_at_once() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let la = acquired(a.try_acquire(&req("push", "a", TTL)).await?);
    let mut watch = b.watch("push", None).expect("fs pushes");
    // Let the waiter reach its kernel wait.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    a.release(&la).await?;
    tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("pushed").expect("item");
    let waited = start.elapsed();
    acquired(b.try_acquire(&req("push", "b", TTL)).await?);
    eprintln!("release -> watch item in {waited:?}");
    Ok(())
}

#[tokio::test]
async fn an_unrenewed_lease_is_reaped_at_its_ttl_and_pushed() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let ttl = Duration::from_millis(600);
    let start = Instant::now();
    let la = acquired(a.try_acquire(&req("reap", "a", ttl)).await?);
    let mut watch = b.watch("reap", None).expect("fs pushes");
    assert!(held(b.try_acquire(&req("reap", "b", TTL)).await?).is_some());
    tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("pushed").expect("item");
    assert!(start.elapsed() >= ttl, "never before the TTL: {:?}", start.elapsed());
    assert!(a.renew(&la, ttl).await?.is_none(), "the reaped lease is no longer ours");
    let lb = acquired(b.try_acquire(&req("reap", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    Ok(())
}

#[tokio::test]
async fn renewing_keeps_the_lease_past_its_first_ttl() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let ttl = Duration::from_secs(1);
    let mut la = acquired(a.try_acquire(&req("renew", "a", ttl)).await?);
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        la = a.renew(&la, ttl).await?.expect("still ours");
    }
    assert!(held(b.try_acquire(&req("renew", "b", TTL)).await?).is_some());
    Ok(())
}

#[tokio::test]
async fn current_and_list() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    assert!(a.current("nothing").await?.is_none());
    assert!(a.list("").await?.is_empty());
    let l1 = acquired(a.try_acquire(&req("app.one", "a", TTL)).await?);
    let l2 = acquired(b.try_acquire(&req("app.two", "b", TTL)).await?);
    let l3 = acquired(a.try_acquire(&req("other", "a", TTL)).await?);
    a.release(&l3).await?;
    let listed: Vec<_> = b.list("app.").await?.into_iter().map(|l| (l.election, l.token)).collect();
    assert_eq!(listed, vec![("app.one".to_owned(), l1.token), ("app.two".to_owned(), l2.token)]);
    assert_eq!(b.list("").await?.len(), 2);
    assert_eq!(b.current("app.one").await?.map(|l| l.participant_id), Some("a".into()));
    assert_eq!(a.list("bad/prefix").await.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
    assert_eq!(a.current("../x").await.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
    drop(a); // its holder is gone; the state file still names it until cleanup
    assert!(b.current("app.one").await?.is_none());
    assert_eq!(b.list("app.").await?.len(), 1);
    assert_eq!(b.cleanup_expired_leases().await?, 1);
    Ok(())
}

/// Writes a claim file by hand.
fn write_claim(dir: &std::path::Path, election: &str, token: u64, body: &str) {
    std::fs::create_dir_all(dir.join(election)).expect("mkdir");
    std::fs::write(dir.join(election).join(token.to_string()), body).expect("write claim");
}

/// Holds an exclusive `flock` on a claim, as its (stopped) holder would; unlocks on drop.
struct HeldLock(std::fs::File);

impl HeldLock {
    fn on(path: std::path::PathBuf) -> HeldLock {
        let file = std::fs::OpenOptions::new().read(true).open(path).expect("open claim");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("lock");
        HeldLock(file)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Unlock explicitly: closing alone is late if another test thread forks meanwhile (the
        // child shares the descriptor until it execs).
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

#[tokio::test]
async fn a_lease_from_a_previous_boot_is_dead_even_under_a_held_lock() -> Result<()> {
    let dir = tempdir();
    // A holder recorded by another boot, whose expiry looks far in the future of this boot.
    let body = r#"{"format":2,"election":"boot","token":41,"holder":{"participant_id":"old","instance_id":"old-1",
        "acquired_at":"2020-01-01T00:00:00Z","renewed_at":"2020-01-01T00:00:00Z","metadata":{},"clock":"CLOCK",
        "boot_id":"00000000-0000-0000-0000-000000000000","expires_ns":18446744073709551615,"ttl_ms":3000,"pid":1}}"#;
    write_claim(dir.path(), "boot", 41, &body.replace("CLOCK", leader_fs::CLOCK));
    let s = FsStore::open(dir.path())?;
    assert!(s.current("boot").await?.is_none());
    // Even while something holds its lock, the old record does not hold the election.
    let lock = HeldLock::on(dir.path().join("boot/41"));
    assert!(s.current("boot").await?.is_none());
    let l = acquired(s.try_acquire(&req("boot", "new", TTL)).await?);
    assert_eq!(l.token, FencingToken::new(42), "the counter goes on");
    drop(lock);
    Ok(())
}

#[tokio::test]
async fn an_expired_holder_that_still_holds_its_lock_loses_to_a_follower() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let ttl = Duration::from_millis(800);
    let la = acquired(a.try_acquire(&req("stuck", "a", ttl)).await?);
    // `a` vanishes but its lock stays held, as by a stopped process: only the record's expiry can
    // end the tenure now.
    drop(a);
    let _lock = HeldLock::on(dir.path().join("stuck/1"));
    let mut watch = b.watch("stuck", None).expect("fs pushes");
    let h = held(b.try_acquire(&req("stuck", "b", TTL)).await?).expect("holder named");
    assert_eq!(h.token, la.token);
    let left = h.expires_in.expect("time left");
    assert!(left <= ttl, "{left:?}");
    let start = Instant::now();
    // The waiter wakes at the expiry (no release, no death: nothing else would wake it).
    tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("pushed at expiry").expect("item");
    let woke = start.elapsed();
    assert!(woke + Duration::from_millis(20) >= left, "woken at {woke:?}, before the expiry in {left:?}");
    let lb = acquired(b.try_acquire(&req("stuck", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    assert_eq!(b.current("stuck").await?.map(|l| l.token), Some(lb.token));
    Ok(())
}

#[tokio::test]
async fn a_corrupt_record_never_resets_the_counter() -> Result<()> {
    let dir = tempdir();
    let s = FsStore::open(dir.path())?;
    for (i, body) in ["", "{\"format\":2,\"election\":\"bad\",\"tok", "not json", "{\"format\":9}"].iter().enumerate() {
        let election = format!("bad{i}");
        write_claim(dir.path(), &election, 5, body);
        // Nobody holds its lock: the tenure is over whatever the record says.
        assert!(s.current(&election).await?.is_none());
        let l = acquired(s.try_acquire(&req(&election, "a", TTL)).await?);
        assert_eq!(l.token, FencingToken::new(6), "the counter is the claim's name, not its content");
    }
    // Under a held lock a corrupt record names nobody and cannot be judged: held, and `current`
    // says why it cannot answer.
    write_claim(dir.path(), "locked", 3, "garbage");
    let _lock = HeldLock::on(dir.path().join("locked/3"));
    assert!(held(s.try_acquire(&req("locked", "a", TTL)).await?).is_none());
    let err = s.current("locked").await.expect_err("corrupt");
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.to_string().contains("locked/3"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_damaged_record_under_a_live_holder_is_repaired_by_it_and_never_makes_two_leaders() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let la = acquired(a.try_acquire(&req("torn", "a", TTL)).await?);
    let la = a.renew(&la, TTL).await?.expect("ours"); // now torn/1.lease exists
    let latest = dir.path().join("torn/1.lease");
    for damage in [Some(""), Some("{\"format\":2,"), None] {
        match damage {
            Some(body) => std::fs::write(&latest, body).expect("damage"),
            None => std::fs::remove_file(&latest).expect("rm"),
        }
        // The follower cannot take it (the lock is held); it cannot say who holds a corrupt
        // record, and falls back on the claim when the latest record is gone.
        let h = held(b.try_acquire(&req("torn", "b", TTL)).await?);
        assert_eq!(h.map(|h| h.token), damage.is_none().then_some(la.token));
        // The holder's renew writes its record back.
        let renewed = a.renew(&la, TTL).await?.expect("still ours");
        assert_eq!(renewed.token, la.token);
        assert_eq!(b.current("torn").await?.map(|l| l.token), Some(la.token));
    }
    a.release(&la).await?;
    let lb = acquired(b.try_acquire(&req("torn", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(2));
    Ok(())
}

#[tokio::test]
async fn break_lease_makes_the_holder_give_up() -> Result<()> {
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    assert!(!b.break_lease("broken").await?, "nothing to break");
    let la = acquired(a.try_acquire(&req("broken", "a", TTL)).await?);
    assert!(b.break_lease("broken").await?);
    // Until the holder notices, it may still act: nobody else may lead yet.
    assert_eq!(b.current("broken").await?.map(|l| l.token), Some(la.token));
    assert!(held(b.try_acquire(&req("broken", "b", TTL)).await?).is_some_and(|h| h.token == la.token));
    assert!(a.renew(&la, TTL).await?.is_none(), "not ours any more");
    // Told "not ours", its election steps down; its lock is kept until its TTL, because that
    // election may not have read the answer yet.
    assert!(held(b.try_acquire(&req("broken", "b", TTL)).await?).is_some_and(|h| h.token == la.token));
    assert!(a.update_metadata(&la, &Metadata::new()).await?.is_none());
    assert!(a.release(&la).await?, "its release lets it go at once");
    assert!(b.current("broken").await?.is_none());
    let lb = acquired(b.try_acquire(&req("broken", "b", TTL)).await?);
    assert_eq!(lb.token, FencingToken::new(3), "the void claim used token 2");
    assert_eq!(b.break_lease("bad/name").await.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));

    // Without a release, the reaper lets go at the TTL, and the followers are pushed.
    let ttl = Duration::from_millis(800);
    let start = Instant::now();
    let la = acquired(a.try_acquire(&req("broken2", "a", ttl)).await?);
    assert!(b.break_lease("broken2").await?);
    assert!(a.renew(&la, ttl).await?.is_none());
    let mut watch = b.watch("broken2", None).expect("fs pushes");
    tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("pushed").expect("item");
    let lb = acquired(b.try_acquire(&req("broken2", "b", TTL)).await?);
    assert!(start.elapsed() >= ttl, "not before the TTL of its last successful acquire: {:?}", start.elapsed());
    assert_eq!(lb.token, FencingToken::new(3));
    Ok(())
}

#[tokio::test]
async fn bad_directories_are_clear_errors() {
    let dir = tempdir();
    let missing_parent = dir.path().join("no/such/dir");
    let err = FsStore::open(&missing_parent).expect_err("parent missing");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("no/such"), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let err = FsStore::open(&file).expect_err("a file, not a directory");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("a-file"), "{err}");

    // Created when only the last component is missing.
    let fresh = dir.path().join("fresh");
    let url = format!("file://{}", fresh.display());
    let store = leader_fs::connect(&url).await.expect("created");
    assert!(fresh.is_dir());
    assert!(store.capabilities().durable_tokens);

    for bad in ["file://elsewhere/x", "file:///tmp/x?y=1", "memory://x"] {
        let err = leader_fs::connect(bad).await.err().map(|e| e.kind());
        assert_eq!(err, Some(ErrorKind::InvalidArgument), "{bad}");
    }
    // An election directory's name taken by a file: a clear error naming it.
    std::fs::write(dir.path().join("fresh").join("taken"), b"x").expect("write");
    let s = FsStore::open(&fresh).expect("open");
    let err = s.try_acquire(&req("taken", "a", TTL)).await.expect_err("not a directory");
    assert!(err.to_string().contains("taken"), "{err}");
    // A path under sysfs cannot be created (EPERM even for root): a clear Unavailable.
    let err = FsStore::open("/sys/leader-fs-test").expect_err("sysfs");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("/sys/leader-fs-test"), "{err}");
}

/// Unmounts on drop.
struct BindMount(std::path::PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_read_only_directory_is_a_clear_error() {
    // Root ignores permission bits, so make the directory read-only the way that binds root too:
    // a read-only bind mount. Where mounting is not allowed, say so and test the rest.
    let dir = tempdir();
    let src = dir.path().join("src");
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(src.join("leases")).expect("mkdir");
    std::fs::create_dir_all(&ro).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(&src)
        .arg(&ro)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "a_read_only_directory_is_a_clear_error: cannot bind-mount here (not root?); only the checks above ran"
        );
        return;
    }
    let _unmount = BindMount(ro.clone());
    let err = FsStore::open(ro.join("leases")).expect_err("read-only");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("ro/leases") && err.to_string().contains("not writable"), "{err}");
    let err = FsStore::open(ro.join("new")).expect_err("cannot create");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("ro/new"), "{err}");
}

#[tokio::test]
async fn watch_streams_end_when_the_store_is_dropped() -> Result<()> {
    let dir = tempdir();
    let s = FsStore::open(dir.path())?;
    let mut w = s.watch("gone", None).expect("fs pushes");
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    // Nobody holds the lock, so the waiter is backing off on its condvar and stops at once
    // (it may first deliver a "still free" reminder).
    let end = tokio::time::timeout(Duration::from_secs(3), async { while w.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "stream ended");
    Ok(())
}

#[tokio::test]
async fn many_contenders_one_leader_at_a_time() -> Result<()> {
    let dir = tempdir();
    let leaders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = FsStore::open(dir.path())?;
        let (leaders, max_seen) = (leaders.clone(), max_seen.clone());
        tasks.push(tokio::spawn(async move {
            let r = req("race", &format!("p{i}"), TTL);
            let mut tokens = Vec::new();
            for _ in 0..30 {
                if let Acquire::Acquired(l) = store.try_acquire(&r).await? {
                    let n = leaders.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    max_seen.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    leaders.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    tokens.push(l.token);
                    store.release(&l).await?;
                }
                tokio::task::yield_now().await;
            }
            Ok::<_, leader_core::Error>(tokens)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task")?);
    }
    assert_eq!(max_seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "every acquisition got its own token");
    assert!(!all.is_empty());
    Ok(())
}

/// Issue 22: `renew_batch` and `release_batch` answer every lease on its own, as `renew` and
/// `release` would, in one blocking pass. Of 50 leases of one handle, some are broken by an
/// operator, released, or released and taken by another handle, and one is presented with another
/// instance id.
#[tokio::test]
async fn batches_answer_each_lease_as_its_single_call_would() -> Result<()> {
    const N: usize = 50;
    // Long enough that nothing in the test can expire, however slow the machine.
    const LONG: Duration = Duration::from_secs(60);
    let dir = tempdir();
    let a = FsStore::open(dir.path())?;
    let b = FsStore::open(dir.path())?;
    let mut leases = Vec::new();
    for i in 0..N {
        leases.push(acquired(a.try_acquire(&req(&format!("batch-{i}"), "a", LONG)).await?));
    }
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Fate {
        Ours,
        Broken,
        Released,
        Taken,
        Impostor,
    }
    let fate = |i: usize| match i % 10 {
        _ if i == 9 => Fate::Impostor,
        3 => Fate::Broken,
        5 => Fate::Released,
        7 => Fate::Taken,
        _ => Fate::Ours,
    };
    let mut taken = Vec::new();
    for (i, lease) in leases.iter_mut().enumerate() {
        match fate(i) {
            Fate::Ours => {}
            Fate::Broken => assert!(b.break_lease(&lease.election).await?),
            Fate::Released => assert!(a.release(lease).await?),
            Fate::Taken => {
                assert!(a.release(lease).await?);
                taken.push(acquired(b.try_acquire(&req(&lease.election, "b", LONG)).await?));
            }
            Fate::Impostor => lease.instance_id = format!("impostor-{}", uuid::Uuid::new_v4()),
        }
    }
    let batch: Vec<Renewal> = leases.iter().map(|l| Renewal { lease: l.clone(), ttl: LONG }).collect();
    let answers = a.renew_batch(&batch).await;
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        match (fate(i), answer?) {
            (Fate::Ours, Some(renewed)) => {
                assert_eq!((renewed.election.as_str(), renewed.token), (lease.election.as_str(), lease.token));
                assert_eq!(renewed.instance_id, lease.instance_id);
            }
            (Fate::Ours, None) => panic!("lease {i} is ours but the batch said no"),
            (_, None) => {}
            (f, Some(l)) => panic!("lease {i} ({f:?}) is not ours but the batch renewed it: {l:?}"),
        }
    }
    // The other handle's tenures were not touched.
    for l in &taken {
        assert_eq!(
            b.current(&l.election).await?.map(|h| (h.instance_id, h.token)),
            Some((l.instance_id.clone(), l.token))
        );
    }

    // Release: ours, and the broken ones (lost to a void claim, their locks kept until released),
    // are let go; the released, taken and impostor leases are not ours.
    let answers = a.release_batch(&leases).await;
    assert_eq!(answers.len(), N);
    for (i, (answer, lease)) in answers.into_iter().zip(&leases).enumerate() {
        let expected = matches!(fate(i), Fate::Ours | Fate::Broken);
        assert_eq!(answer?, expected, "release of lease {i} ({:?})", fate(i));
        let holder = b.current(&lease.election).await?;
        match fate(i) {
            Fate::Taken => assert_eq!(holder.map(|h| h.participant_id), Some("b".to_owned())),
            // The impostor's release changed nothing: the real holder still leads.
            Fate::Impostor => assert_eq!(holder.map(|h| h.token), Some(lease.token)),
            _ => assert!(holder.is_none(), "election {i} still held after release_batch: {holder:?}"),
        }
    }
    assert!(a.renew_batch(&[]).await.is_empty() && a.release_batch(&[]).await.is_empty());
    Ok(())
}
