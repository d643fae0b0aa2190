//! Runs the bench library on tiny N and checks that every section is there with sane values.
//! No timing thresholds: this proves the bench works, it does not judge the store.

use std::time::Duration;

use leader_bench::stats::Summary;
use leader_bench::{Config, Report};

fn sane(what: &str, s: &Summary, n: usize) {
    assert_eq!(s.n, n, "{what}: sample count");
    for (name, v) in [("p50", s.p50_ms), ("p90", s.p90_ms), ("p99", s.p99_ms), ("max", s.max_ms), ("mean", s.mean_ms)] {
        assert!(v.is_finite() && v >= 0.0, "{what}: {name} = {v}");
    }
    assert!(
        s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms && s.p99_ms <= s.max_ms,
        "{what}: percentiles out of order: {s:?}"
    );
}

fn check(report: &Report, config: &Config) {
    let l = &report.latency;
    for (what, s) in [("acquire", &l.acquire), ("renew", &l.renew), ("release", &l.release), ("floor", &l.raw_floor)] {
        sane(what, s, config.iterations);
    }
    assert!(!l.floor.is_empty());
    for r in [l.ratio_p50.acquire, l.ratio_p50.renew, l.ratio_p50.release].into_iter().flatten() {
        assert!(r.is_finite() && r > 0.0, "ratio {r}");
    }

    assert!(!report.handoff.is_empty());
    if report.capabilities.push_notifications {
        let modes: Vec<&str> = report.handoff.iter().map(|h| h.mode.as_str()).collect();
        assert_eq!(modes, ["push", "polling"]);
    }
    for h in &report.handoff {
        let n = if h.mode == "push" { config.handoffs } else { config.poll_handoffs };
        sane(&format!("handoff {}", h.mode), &h.summary, n);
        assert_eq!(h.samples_ms.len(), n);
    }

    let c = &report.crash_failover;
    sane("crash failover", &c.summary, config.crash_runs);
    assert_eq!(c.samples_ms.len(), config.crash_runs);
    assert_eq!(c.lease_ms, config.lease.as_secs_f64() * 1000.0);

    let i = &report.idle;
    assert!(i.window_ms > 0.0 && i.leases > 0.0);
    // The leader renews about every lease/3; over at least one lease it renewed at least once.
    assert!(i.leader.calls.get("renew").copied().unwrap_or(0) >= 1, "leader: {:?}", i.leader);
    for role in [&i.leader, &i.follower, &i.follower_polling] {
        assert!(role.ops_per_sec.is_finite() && role.ops_per_sec >= 0.0, "{role:?}");
        assert_eq!(role.errors, 0, "{role:?}");
    }

    let ks: Vec<usize> = report.many_elections.iter().map(|m| m.k).collect();
    assert_eq!(ks, config.election_counts());
    for m in &report.many_elections {
        assert_eq!(m.leading, m.k, "K={}: every election leads", m.k);
        assert!(m.ops_per_sec.is_finite() && m.ops_per_sec > 0.0, "K={}: {m:?}", m.k);
        sane(&format!("K={} renew", m.k), &m.renew, m.renew.n);
        // Renewals of elections sharing the handle travel in batches: fewer calls, every lease.
        assert!(
            m.renewals >= m.k as u64,
            "K={}: each election renewed at least once in a window of a lease: {m:?}",
            m.k
        );
        assert!(m.renew.n >= 1, "K={}: no renew call in the window", m.k);
        assert_eq!(m.errors, 0, "K={}: {m:?}", m.k);
    }

    let table = report.table();
    for heading in ["Uncontended latency", "Graceful handoff", "Crash failover", "Idle cost", "Many elections"] {
        assert!(table.contains(heading), "table lacks {heading:?}:\n{table}");
    }
    assert!(!table.contains("NaN") && !table.contains("inf"), "{table}");

    let json = serde_json::to_value(report).expect("the report serialises");
    for key in ["latency", "handoff", "crash_failover", "idle", "many_elections", "capabilities", "notes"] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
    let text = json.to_string();
    assert!(!text.contains("NaN") && !text.contains("null,\"p"), "{text}");
    let back: Report = serde_json::from_str(&text).expect("the JSON reads back");
    assert_eq!(back.handoff.len(), report.handoff.len());
}

fn quick(store: &str) -> Config {
    let mut c = Config::for_store(store).expect("config").quick().with_lease(Duration::from_secs(1));
    c.hold_exe = Some(env!("CARGO_BIN_EXE_leader-bench").into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_every_section_and_plot() {
    let config = quick("memory://bench-smoke");
    let report = leader_bench::run(&config).await.expect("bench on memory://bench-smoke");
    check(&report, &config);
    assert!(report.crash_failover.mode.starts_with("in-process"));
    assert!(report.notes.iter().any(|n| n.contains("in-process")));

    let dir = tempfile::tempdir().expect("temp dir");
    let png = dir.path().join("bench.png");
    leader_bench::plot::plot(&report, &png).expect("plot");
    let bytes = std::fs::read(&png).expect("the PNG was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

#[cfg(feature = "fs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_every_section_with_a_killed_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = quick(&format!("file://{}", dir.path().display()));
    let report = leader_bench::run(&config).await.expect("bench on file://");
    check(&report, &config);
    assert!(report.crash_failover.mode.starts_with("process"));
}
