//! The conformance suite on `FsStore`: each run gets a provider over its own temporary directory,
//! and every participant its own `FsStore` handle on it (its own lock-file descriptions, as a
//! separate process would have). No server needed: it always runs.
//!
//! Every scenario runs. Two of them (`crash_takeover`, `fresh_fleet_after_crash`) also check that
//! nobody leads before the crashed leader's lease could have expired, which assumes a store that
//! cannot tell a dead holder from a silent one. This store can: the kernel frees a dead holder's
//! `flock` at once, and that is the point of it (takeover in milliseconds, see `tests/process.rs`).
//! Those two are run as-is and must pass or fail only on that check; `crash_takeover_without_overlap`
//! checks what that check would otherwise have stood in for: no overlap of tenures.
//!
//! When the suite gains a capability for stores that detect holder death, replace all this with
//! `leader_testkit::conformance_tests!(make_provider);`.

use std::sync::Arc;
use std::time::Duration;

use leader_core::{Election, ElectionOptions, LeaseStore, Result};
use leader_fs::FsStore;
use leader_testkit::{Provider, ScenarioResult, TenureRecorder};

struct FsProvider {
    dir: tempfile::TempDir,
}

#[leader_core::async_trait]
impl Provider for FsProvider {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(FsStore::open(self.dir.path())?))
    }

    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(2))
    }
}

async fn make_provider() -> Option<Arc<dyn Provider>> {
    let dir = tempfile::Builder::new().prefix("leader-fs-conformance-").tempdir().ok()?;
    Some(Arc::new(FsProvider { dir }))
}

/// The scenarios whose "not before the old lease expired" check this store deliberately beats.
const EARLY_TAKEOVER: &[&str] = &["crash_takeover", "fresh_fleet_after_crash"];

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        /// Every other scenario, through the suite's own harness (run concurrently).
        mod suite {
            $(
                #[test]
                fn $name() {
                    leader_testkit::harness::run_test(module_path!(), stringify!($name), super::make_provider);
                }
            )*
        }

        const SUITE: &[&str] = &[$(stringify!($name)),*];
    };
}

suite!(
    concurrent_start,
    incumbent_stability,
    restart_after_stop,
    graceful_release_takeover,
    release_hands_over,
    shared_participant_id,
    run_as_leader_exclusive,
    late_release_cannot_touch_successor,
    tokens_strictly_increase,
    idempotent_acquire,
    list_elections,
    withdraw_leaves_no_candidate,
    invalid_input_rejected,
    crash_during_release,
    store_unavailable_steps_down,
    store_unavailable_at_startup,
    paused_leader_is_fenced,
    partitioned_leader_recampaigns,
    slow_store_below_timeout,
    slow_store_above_timeout,
    ambiguous_renew,
    ambiguous_acquire,
    cancelled_try_acquire_leaks_nothing,
    deadline_counts_from_send,
    events_alternate,
    overflow_reports_missed,
    slow_consumer_never_delays_renewals,
    observe_follows_holder,
    metadata_visible_to_followers,
    elections_share_one_handle,
    herd_bounded_store_ops,
    zombie_leader_health,
);

#[test]
fn every_scenario_of_the_suite_runs_here() {
    let mut here: Vec<&str> = SUITE.iter().chain(EARLY_TAKEOVER).copied().collect();
    let mut all: Vec<&str> = leader_testkit::SCENARIOS.iter().map(|s| s.name).collect();
    here.sort_unstable();
    all.sort_unstable();
    assert_eq!(here, all, "the suite's scenarios changed: update tests/conformance.rs");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs a crash scenario; it must pass, or fail only because the takeover came before the dead
/// leader's lease could have expired (which this store does on purpose).
fn early_takeover_allowed(name: &str, result: ScenarioResult) {
    match result {
        Ok(()) => {}
        Err(f) if f.message().contains("before the") && f.message().contains("could have expired") => {
            eprintln!("{name}: takeover before the dead leader's lease ran out, as the kernel freed its lock: {f}");
        }
        Err(f) => panic!("{name} failed: {f}"),
    }
}

mod early_takeover {
    use super::*;

    #[test]
    fn crash_takeover() {
        runtime().block_on(async {
            let p = make_provider().await.expect("provider");
            early_takeover_allowed("crash_takeover", leader_testkit::scenarios::crash_takeover(p).await);
        });
    }

    #[test]
    fn fresh_fleet_after_crash() {
        runtime().block_on(async {
            let p = make_provider().await.expect("provider");
            early_takeover_allowed(
                "fresh_fleet_after_crash",
                leader_testkit::scenarios::fresh_fleet_after_crash(p).await,
            );
        });
    }

    /// What `crash_takeover` checks after its early-takeover check: the follower leads within the
    /// crash bound and no two tenures overlap.
    #[test]
    fn crash_takeover_without_overlap() {
        runtime().block_on(async {
            let p = make_provider().await.expect("provider");
            let opts = p.options();
            let rec = TenureRecorder::new();
            let sa = p.store().await.expect("store");
            let a = Election::new(sa.clone(), "crash-overlap", "a", opts.clone()).expect("a");
            let b = Election::new(p.store().await.expect("store"), "crash-overlap", "b", opts.clone()).expect("b");
            rec.track(&a);
            rec.track(&b);
            a.start().await.expect("start a");
            tokio::time::timeout(Duration::from_secs(5), a.wait_for_leadership()).await.expect("a leads").expect("a");
            b.start().await.expect("start b");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!b.is_leader());
            drop((a, sa));
            let bound = p.store().await.expect("store").capabilities().crash_bound(&opts);
            tokio::time::timeout(bound, b.wait_for_leadership())
                .await
                .expect("b leads within the crash bound")
                .expect("b");
            rec.check().expect("no overlapping tenures");
            b.stop().await.expect("stop");
        });
    }
}
