//! Uncontended acquire latency of `RedisStore` next to its raw acquire script (the floor),
//! `rslock` 0.10's lock, and two references on the store's own connection: `SET NX PX` (what
//! `rslock` sends) and `EVALSHA` of a script that only returns 1 (what any script round trip
//! costs). All interleaved in one run on one server (issue 7's comparison).
//!
//! `cargo run --release -p leader-redis --example vs_rslock -- redis://127.0.0.1:56379`
//! (or with `LEADER_TEST_REDIS_URL` set). Only the acquire/lock call is timed; each is undone
//! (release/unlock/DEL) untimed before the next, so every sample is a fresh, uncontended acquire.

use std::time::{Duration, Instant};

use fred::interfaces::{KeysInterface, LuaInterface};
use fred::types::{Expiration, SetOptions};
use leader_core::{Acquire, AcquireRequest, LeaseStore};
use leader_redis::{fred, RedisStore};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn request(election: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.into(),
        participant_id: "bench".into(),
        instance_id: "bench-instance".into(),
        ttl: Duration::from_secs(10),
        metadata: Default::default(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LEADER_TEST_REDIS_URL").ok())
        .ok_or("give a redis:// URL or set LEADER_TEST_REDIS_URL")?;
    // A throwaway server: no restart quarantine, and a key prefix of our own.
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = RedisStore::connect(&format!("{url}{sep}quarantine=0s&key_prefix=vs-rslock")).await?;
    let floor = store.raw_floor();
    let client = store.client().clone();
    let return_1: String = client.script_load("return 1").await?;
    let rslock = rslock::LockManager::new(vec![url.clone()]);
    let (ours, raw) = (request("vs-rslock"), request("vs-rslock-floor"));
    let (warmup, n) = (200, 3000);
    let names =
        ["leader-redis try_acquire", "raw acquire script", "EVALSHA 'return 1'", "SET NX PX", "rslock 0.10 lock"];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); names.len()];
    for i in 0..warmup + n {
        let mut round = Vec::with_capacity(names.len());

        let t = Instant::now();
        let acquired = store.try_acquire(&ours).await?;
        round.push(t.elapsed());
        let Acquire::Acquired(lease) = acquired else { return Err("the lease was held".into()) };
        store.release(&lease).await?;

        let t = Instant::now();
        floor.raw_acquire(&raw.election, &raw.instance_id).await?;
        round.push(t.elapsed());
        // Untimed: the same instance's acquire returns the lease (same token), then free it.
        if let Acquire::Acquired(lease) = store.try_acquire(&raw).await? {
            store.release(&lease).await?;
        }

        let t = Instant::now();
        let _: i64 = client.evalsha(return_1.as_str(), Vec::<String>::new(), Vec::<String>::new()).await?;
        round.push(t.elapsed());

        let t = Instant::now();
        let _: Option<String> =
            client.set("vs-rslock:set", "v", Some(Expiration::PX(10_000)), Some(SetOptions::NX), false).await?;
        round.push(t.elapsed());
        let _: i64 = client.del("vs-rslock:set").await?;

        let t = Instant::now();
        let lock =
            rslock.lock("vs-rslock-resource", Duration::from_secs(10)).await.map_err(|e| format!("rslock: {e:?}"))?;
        round.push(t.elapsed());
        rslock.unlock(&lock).await;

        if i >= warmup {
            samples.iter_mut().zip(round).for_each(|(s, d)| s.push(d));
        }
    }
    println!("uncontended acquire on {url}, {n} samples each, interleaved (µs)");
    println!("{:<26} {:>8} {:>8} {:>8} {:>10}", "", "p50", "p90", "p99", "/ rslock");
    let p50: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort();
            pct(v, 0.5)
        })
        .collect();
    let rslock_p50 = p50[names.len() - 1];
    for (name, v) in names.iter().zip(&samples) {
        let p = pct(v, 0.5);
        println!("{name:<26} {p:>8.1} {:>8.1} {:>8.1} {:>9.2}x", pct(v, 0.9), pct(v, 0.99), p / rslock_p50);
    }
    println!("p50 ratio: {:.2}x the raw script, {:.2}x rslock", p50[0] / p50[1], p50[0] / rslock_p50);
    Ok(())
}
