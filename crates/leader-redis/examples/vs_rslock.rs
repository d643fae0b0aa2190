//! Uncontended acquire latency of `RedisStore` next to its raw script (the floor) and `rslock`
//! 0.10's lock, interleaved in one run on one server (issue 7's comparison).
//!
//! `cargo run --release -p leader-redis --example vs_rslock -- redis://127.0.0.1:56379`
//! (or with `LEADER_TEST_REDIS_URL` set). Only the acquire/lock call is timed; each is undone
//! (release/unlock) untimed before the next, so every sample is uncontended.

use std::time::{Duration, Instant};

use leader_core::{Acquire, AcquireRequest};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LEADER_TEST_REDIS_URL").ok())
        .ok_or("give a redis:// URL or set LEADER_TEST_REDIS_URL")?;
    // A throwaway server: no restart quarantine, and a key prefix of our own.
    let sep = if url.contains('?') { '&' } else { '?' };
    let ours_url = format!("{url}{sep}quarantine=0s&key_prefix=vs-rslock");
    let (store, floor) = leader_redis::connect_with_floor(&ours_url).await?;
    let rslock = rslock::LockManager::new(vec![url.clone()]);
    let ttl = Duration::from_secs(10);
    let req = AcquireRequest {
        election: "vs-rslock".into(),
        participant_id: "bench".into(),
        instance_id: "bench-instance".into(),
        ttl,
        metadata: Default::default(),
    };
    let (warmup, n) = (200, 3000);
    let (mut ours, mut raw, mut theirs) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..warmup + n {
        let t = Instant::now();
        let acquired = store.try_acquire(&req).await?;
        let d_ours = t.elapsed();
        let Acquire::Acquired(lease) = acquired else { return Err("the lease was held".into()) };
        store.release(&lease).await?;

        let t = Instant::now();
        floor.raw_acquire("vs-rslock-floor", "bench-instance").await?;
        let d_raw = t.elapsed();

        let t = Instant::now();
        let lock = rslock.lock("vs-rslock-resource", ttl).await.map_err(|e| format!("rslock: {e:?}"))?;
        let d_theirs = t.elapsed();
        rslock.unlock(&lock).await;

        if i >= warmup {
            ours.push(d_ours);
            raw.push(d_raw);
            theirs.push(d_theirs);
        }
    }
    println!("uncontended acquire on {url}, {n} samples each, interleaved (µs)");
    println!("{:<26} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    let rows =
        [("leader-redis try_acquire", &mut ours), ("raw acquire script", &mut raw), ("rslock 0.10 lock", &mut theirs)];
    let mut p50 = Vec::new();
    for (name, v) in rows {
        v.sort();
        println!("{name:<26} {:>8.1} {:>8.1} {:>8.1}", pct(v, 0.5), pct(v, 0.9), pct(v, 0.99));
        p50.push(pct(v, 0.5));
    }
    println!("p50 ratio: {:.2}x the raw script, {:.2}x rslock", p50[0] / p50[1], p50[0] / p50[2]);
    Ok(())
}
