//! The randomised simulation (`leader_testkit::sim`) on the memory store under tokio's paused
//! clock: 1 000 seeded fault schedules, each checked over the whole run.
//!
//! `LEADER_SIM_SEED=N` replays one seed (printing its schedule and trace); `LEADER_SIM_SEEDS`,
//! `LEADER_SIM_BASE` (a number, or `random`) and `LEADER_SIM_THREADS` choose other seeds.

use std::sync::Arc;
use std::time::Duration;

use leader_testkit::sim::{self, Replay, SimConfig};
use leader_testkit::{MemoryProvider, Provider};

fn memory(_seed: u64) -> Arc<dyn Provider> {
    Arc::new(MemoryProvider::with_options(SimConfig::paused().options))
}

const REPLAY: Replay = Replay { package: "leader-testkit", binary: "sim", test: "sim_memory" };

#[test]
fn sim_memory() {
    let mut config = SimConfig::paused();
    config.trace = sim::replaying();
    let seeds = sim::seeds_from_env(1000);
    let summary = sim::run_seeds(&seeds, sim::threads(), Duration::from_secs(120), &REPLAY, |seed| {
        let report = sim::run_paused_attempts(&memory, &config, seed);
        if config.trace && report.passed() {
            eprintln!("seed {seed} passed; schedule:\n{}trace:", report.schedule);
            for line in &report.trace {
                eprintln!("  {line}");
            }
        }
        report
    });
    summary.print("memory", &REPLAY);
    assert!(
        summary.failures.is_empty(),
        "{} of {} seeds failed (replay commands above)",
        summary.failures.len(),
        summary.seeds
    );
}

/// The same seed twice gives the same schedule and the same verdict (and, built with
/// `--cfg tokio_unstable`, the same run task for task: the same counts and trace), for passing
/// seeds and for a seed that fails (a deliberately broken driver).
#[test]
fn sim_memory_replays_exactly() {
    let mut config = SimConfig::paused();
    config.trace = true;
    let broken = SimConfig { broken_handover: true, ..config.clone() };
    let cases = [(1u64, &config), (7, &config), (42, &config), (1234, &config), (2, &broken), (4, &broken)];
    let (mut failing, mut faults) = (0, 0);
    for (seed, config) in cases {
        let first = sim::run_paused(&memory, config, seed);
        let second = sim::run_paused(&memory, config, seed);
        faults += first.counts.total_faults() + second.counts.total_faults();
        assert_eq!(first.schedule, second.schedule, "seed {seed}: two schedules");
        if sim::exact_replay() {
            assert_eq!(first.verdict(), second.verdict(), "seed {seed}: two verdicts");
            assert_eq!(first.counts, second.counts, "seed {seed}: two sets of counts");
            assert_eq!(first.trace, second.trace, "seed {seed}: two traces");
        } else {
            // tokio's own choices are not seeded: the same verdict, the same checker catching it.
            assert_eq!(first.passed(), second.passed(), "seed {seed}: {:?} / {:?}", first.verdict(), second.verdict());
            for r in [&first, &second] {
                assert!(r.passed() || r.violations.iter().any(|v| v.check == "work"), "seed {seed}: {:?}", r.verdict());
            }
        }
        assert!(!first.trace.is_empty());
        failing += usize::from(!first.passed());
        assert_eq!(first.passed(), !config.broken_handover, "seed {seed}: {:?}", first.verdict());
    }
    assert_eq!(failing, 2);
    eprintln!("{} seeds, {faults} faults", cases.len() * 2);
}
