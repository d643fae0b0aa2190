#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod counting;
mod failure;
mod fault;
mod fenced;
#[doc(hidden)]
pub mod harness;
mod provider;
mod proxy;
pub mod scenarios;
pub mod sim;
mod tenure;
mod work;

pub use counting::OpCounter;
pub use failure::{fmt_duration, within, ScenarioFailure, ScenarioResult};
pub use fault::{FaultControl, FaultLayer, FaultStore};
pub use fenced::{FencedResource, StaleToken};
pub use harness::Scenario;
pub use provider::{provider_url, LayeredProvider, MemoryProvider, Provider};
pub use proxy::{FaultProxy, ProxyMode};
pub use tenure::{check_tenures, Tenure, TenureRecorder};
pub use work::{check_work, WorkRecorder, WorkSpan};

/// Calls `$cb!($($args)* ; name, name, ...)` with every scenario's name: the one list the test
/// macro and [`SCENARIOS`] are both built from.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_scenario_names {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
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
            batch_answers_each_lease,
            list_elections,
            withdraw_leaves_no_candidate,
            invalid_input_rejected,
            crash_takeover,
            fresh_fleet_after_crash,
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
            work_handover_on_stop,
            work_handover_on_release,
            work_handover_on_health,
            work_handover_on_deadline,
            work_dropped_when_lease_broken,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_table {
    ( ; $($name:ident),* $(,)?) => {
        /// Every scenario of the suite, in the order of the README's table.
        pub const SCENARIOS: &[$crate::Scenario] = &[
            $($crate::Scenario { name: stringify!($name), run: |p| ::std::boxed::Box::pin($crate::scenarios::$name(p)) },)*
        ];
    };
}

__with_scenario_names!(__scenario_table!());

#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_conformance_tests {
    ($make:expr ; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::harness::run_test(module_path!(), stringify!($name), || $make());
            }
        )*
    };
}

/// Stamps out one test per scenario of the suite against the provider `make_provider` gives:
/// an `async fn() -> Option<Arc<dyn Provider>>` (`None`: the provider is not configured here, and
/// every test passes after [`provider_url`] printed why).
///
/// The tests of one invocation run concurrently on a shared multi-thread tokio runtime (2 worker
/// threads; see the crate docs for why and for `LEADER_TEST_CONCURRENCY`). Invoke it once per module.
///
/// ```ignore
/// // crates/leader-postgres/tests/conformance.rs
/// use std::sync::Arc;
/// use leader_testkit::Provider;
///
/// async fn provider() -> Option<Arc<dyn Provider>> {
///     let url = leader_testkit::provider_url("postgres")?;
///     Some(Arc::new(PgProvider::new(url)))
/// }
///
/// leader_testkit::conformance_tests!(provider);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make_provider:expr) => {
        $crate::__with_scenario_names!(__stamp_conformance_tests!($make_provider));
    };
}
