//! Threads and file descriptors: 1 000 cycles of `connect` / start / stop leave none behind.
//! Alone in its binary, so that no other test's threads or descriptors are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leader_core::{Acquire, AcquireRequest, Election, ElectionOptions, LeaseStore, Metadata, Result};

const CYCLES: usize = 1000;

/// Threads of this process whose name starts with `leader-fs-` (Linux: `/proc/self/task`).
fn fs_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("leader-fs-"))
            .count(),
    )
}

/// Open descriptors of this process, by what they point to.
fn fds() -> Option<Vec<String>> {
    let dir = if std::path::Path::new("/proc/self/fd").is_dir() { "/proc/self/fd" } else { "/dev/fd" };
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            Some(std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default())
        })
        .collect();
    out.sort();
    Some(out)
}

/// Waits (bounded) until `f` returns `want`: threads and descriptors of a dropped store go when
/// its last user (an election's task) lets go of it, a moment after `stop()` returns.
async fn settles<T: PartialEq + std::fmt::Debug>(want: &T, mut f: impl FnMut() -> T) -> T {
    let start = Instant::now();
    loop {
        let got = f();
        if got == *want || start.elapsed() > Duration::from_secs(10) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `f()` once two looks 50 ms apart agree (bounded).
async fn stable<T: PartialEq>(mut f: impl FnMut() -> T) -> T {
    let mut last = f();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = f();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_start_stop_cycles_leave_no_threads_or_descriptors() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().display());
    let options = ElectionOptions::from_lease(Duration::from_secs(2));
    // A holder that stays (store-level, renewing a 5 s lease every 300 ms, so that it has no
    // waiter of its own): each cycle's follower has a waiter polling its FIFO when stopped.
    let holder_store = leader_fs::connect(&url).await?;
    let req = AcquireRequest {
        election: "held".into(),
        participant_id: "holder".into(),
        instance_id: "holder-1".into(),
        ttl: Duration::from_secs(5),
        metadata: Metadata::new(),
    };
    let Acquire::Acquired(held) = holder_store.try_acquire(&req).await? else { panic!("the holder could not acquire") };
    let renewing = {
        let (store, mut lease) = (holder_store.clone(), held.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                match store.renew(&lease, Duration::from_secs(5)).await {
                    Ok(Some(l)) => lease = l,
                    Ok(None) => return Err::<(), String>(format!("the holder's renew was refused: {lease:?}")),
                    Err(e) => eprintln!("holder renew failed (retried): {e}"),
                }
            }
        })
    };

    // Warm up once (runtime threads, lazily opened descriptors), then measure.
    let cycle = |i: usize| {
        let (url, options) = (url.clone(), options.clone());
        async move {
            let store: Arc<dyn LeaseStore> = leader_fs::connect(&url).await?;
            let leader = Election::builder(store.clone(), "free")
                .participant_id(format!("l{i}"))
                .options(options.clone())
                .build()?;
            let follower = Election::builder(store, "held").participant_id(format!("f{i}")).options(options).build()?;
            leader.start().await?;
            follower.start().await?;
            leader.wait_for_leadership().await?;
            // The follower has looked at the holder (and its waiter watches the holder's FIFO).
            let start = Instant::now();
            while follower.current_leader().is_none() && start.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(follower.current_leader().is_some(), "cycle {i}: the follower never saw the holder");
            follower.stop().await?;
            leader.stop().await?;
            Ok::<_, leader_core::Error>(())
        }
    };
    cycle(0).await?;
    // The holder's store keeps its reaper and its waiter; the warm-up cycle's store is gone once
    // two looks agree.
    let threads_before = stable(fs_threads).await;
    let fds_before = stable(fds).await;
    let start = Instant::now();
    for i in 1..=CYCLES {
        cycle(i).await?;
    }
    eprintln!(
        "{CYCLES} connect/start/stop cycles in {:?}; before: {threads_before:?} leader-fs-* threads, {:?} descriptors",
        start.elapsed(),
        fds_before.as_ref().map(Vec::len)
    );
    let threads_after = settles(&threads_before, fs_threads).await;
    let fds_after = settles(&fds_before, fds).await;
    assert!(!renewing.is_finished(), "the holder lost its lease: {:?}", renewing.await);
    renewing.abort();
    assert!(holder_store.release(&held).await?, "the holder still held its lease");
    match (threads_before, threads_after) {
        (Some(before), Some(after)) => assert_eq!(after, before, "leader-fs-* threads before and after"),
        _ => eprintln!("no /proc/self/task here: thread names not checked"),
    }
    match (fds_before, fds_after) {
        (Some(before), Some(after)) => assert_eq!(after, before, "open descriptors before and after"),
        _ => eprintln!("no descriptor listing here: descriptors not checked"),
    }
    Ok(())
}
