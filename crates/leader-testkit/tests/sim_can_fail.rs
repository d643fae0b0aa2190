//! The simulation must be able to fail: the deliberately broken stores of `suite_can_fail.rs`
//! (`leader_testkit::sim::Flaw`) and a deliberately broken driver (one that releases the lease
//! before the work under it ended) are each caught by some seed, by the checker that should.

use std::sync::Arc;
use std::time::Duration;

use leader_testkit::sim::{self, BrokenProvider, Flaw, Replay, SimConfig};
use leader_testkit::{MemoryProvider, Provider};

/// Runs `seeds` seeds of `config` against `make`, and asserts that some seed failed and that a
/// failure names one of `checks`. Prints which seeds caught it, then the summary (ending with the
/// `N seeds, M faults` line).
fn must_catch(
    test: &'static str,
    config: &SimConfig,
    seeds: u64,
    make: fn(&SimConfig) -> Arc<dyn Provider>,
    what: &str,
    checks: &[&str],
) {
    let replay = Replay { package: "leader-testkit", binary: "sim_can_fail", test };
    let seeds = if sim::replaying() { sim::seeds_from_env(1) } else { (0..seeds).collect() };
    let summary = sim::run_seeds(&seeds, sim::threads(), Duration::from_secs(120), &replay, |seed| {
        sim::run_paused(&|_| make(config), config, seed)
    });
    let by_check = summary.failures.iter().filter(|r| r.violations.iter().any(|v| checks.contains(&v.check))).count();
    let check = checks.join(" or ");
    if let Some(first) = summary.failures.first() {
        eprintln!(
            "{what}: caught by {} of {} seeds ({by_check} through the {check} checker), first seed {}",
            summary.failures.len(),
            summary.seeds,
            first.schedule.seed
        );
    }
    summary.print(test, &replay);
    assert!(!summary.failures.is_empty(), "no seed of {} caught {what}", summary.seeds);
    assert!(
        by_check > 0,
        "{} seeds caught {what}, but none through the {check} checker: {:?}",
        summary.failures.len(),
        summary.failures.iter().flat_map(|r| r.violations.iter().map(ToString::to_string)).take(5).collect::<Vec<_>>()
    );
}

/// A provider of broken stores with flaw number `F` (in the order of [`Flaw`]'s variants).
fn broken<const F: u8>(config: &SimConfig) -> Arc<dyn Provider> {
    let flaw = [Flaw::DoubleGrant, Flaw::ReusedToken, Flaw::ReleaseFreesAnother, Flaw::NeverExpires][usize::from(F)];
    Arc::new(BrokenProvider::new(flaw, config.options.clone()))
}

#[test]
fn sim_catches_a_store_that_grants_twice() {
    let test = "sim_catches_a_store_that_grants_twice";
    must_catch(test, &SimConfig::paused(), 40, broken::<0>, "a store that grants a held lease", &["tenures"]);
}

#[test]
fn sim_catches_a_store_that_reuses_tokens() {
    let test = "sim_catches_a_store_that_reuses_tokens";
    must_catch(test, &SimConfig::paused(), 40, broken::<1>, "a store that reuses tokens", &["tokens"]);
}

#[test]
fn sim_catches_a_release_that_frees_another_lease() {
    let test = "sim_catches_a_release_that_frees_another_lease";
    let what = "a release that frees another's lease";
    must_catch(test, &SimConfig::paused(), 300, broken::<2>, what, &["work", "tenures"]);
}

#[test]
fn sim_catches_leases_that_never_expire() {
    let test = "sim_catches_leases_that_never_expire";
    must_catch(test, &SimConfig::paused(), 40, broken::<3>, "leases that never expire", &["liveness"]);
}

#[test]
fn sim_catches_a_driver_that_releases_before_the_work_ended() {
    let test = "sim_catches_a_driver_that_releases_before_the_work_ended";
    let config = SimConfig { broken_handover: true, ..SimConfig::paused() };
    let memory = |c: &SimConfig| Arc::new(MemoryProvider::with_options(c.options.clone())) as Arc<dyn Provider>;
    must_catch(test, &config, 40, memory, "a driver that releases before the work ended", &["work"]);
}
