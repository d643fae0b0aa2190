//! The simulation must be able to fail: the deliberately broken stores of `suite_can_fail.rs`
//! (`leader_testkit::sim::Flaw`) and a deliberately broken driver (one that releases the lease
//! before the work under it ended) are each caught by some seed, by the checker that should.

use std::sync::Arc;
use std::time::Duration;

use leader_testkit::sim::{self, BrokenProvider, Flaw, Replay, SimConfig, SimSummary};
use leader_testkit::{MemoryProvider, Provider};

/// Runs `seeds` seeds of `config` against `make` and returns the summary (printed).
fn run(test: &'static str, config: &SimConfig, seeds: u64, make: fn(&SimConfig) -> Arc<dyn Provider>) -> SimSummary {
    let replay = Replay { package: "leader-testkit", binary: "sim_can_fail", test };
    let seeds = if sim::replaying() { sim::seeds_from_env(1) } else { (0..seeds).collect() };
    let summary = sim::run_seeds(&seeds, sim::threads(), Duration::from_secs(120), &replay, |seed| {
        sim::run_paused(&|_| make(config), config, seed)
    });
    summary.print(test, &replay);
    summary
}

/// Asserts that some seed failed, and that a failure names `check`.
fn caught(summary: &SimSummary, what: &str, check: &str) {
    assert!(!summary.failures.is_empty(), "no seed of {} caught {what}", summary.seeds);
    let by_check = summary.failures.iter().filter(|r| r.violations.iter().any(|v| v.check == check)).count();
    assert!(
        by_check > 0,
        "{} seeds caught {what}, but none through the {check} checker: {:?}",
        summary.failures.len(),
        summary.failures.iter().flat_map(|r| r.violations.iter().map(ToString::to_string)).take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "{what}: caught by {} of {} seeds ({} through the {check} checker), first seed {}",
        summary.failures.len(),
        summary.seeds,
        by_check,
        summary.failures[0].schedule.seed
    );
}

fn broken(flaw: Flaw) -> impl Fn(&SimConfig) -> Arc<dyn Provider> {
    move |c: &SimConfig| Arc::new(BrokenProvider::new(flaw, c.options.clone())) as Arc<dyn Provider>
}

#[test]
fn sim_catches_a_store_that_grants_twice() {
    let config = SimConfig::paused();
    let s = run("sim_catches_a_store_that_grants_twice", &config, 40, |c| broken(Flaw::DoubleGrant)(c));
    caught(&s, "a store that grants a held lease", "tenures");
}

#[test]
fn sim_catches_a_store_that_reuses_tokens() {
    let config = SimConfig::paused();
    let s = run("sim_catches_a_store_that_reuses_tokens", &config, 40, |c| broken(Flaw::ReusedToken)(c));
    caught(&s, "a store that reuses tokens", "tokens");
}

#[test]
fn sim_catches_a_release_that_frees_another_lease() {
    let config = SimConfig::paused();
    let s =
        run("sim_catches_a_release_that_frees_another_lease", &config, 300, |c| broken(Flaw::ReleaseFreesAnother)(c));
    caught(&s, "a release that frees another's lease", "work");
}

#[test]
fn sim_catches_leases_that_never_expire() {
    let config = SimConfig::paused();
    let s = run("sim_catches_leases_that_never_expire", &config, 40, |c| broken(Flaw::NeverExpires)(c));
    caught(&s, "leases that never expire", "liveness");
}

#[test]
fn sim_catches_a_driver_that_releases_before_the_work_ended() {
    let config = SimConfig { broken_handover: true, ..SimConfig::paused() };
    let s = run("sim_catches_a_driver_that_releases_before_the_work_ended", &config, 40, |c| {
        Arc::new(MemoryProvider::with_options(c.options.clone()))
    });
    caught(&s, "a driver that releases before the work ended", "work");
}
