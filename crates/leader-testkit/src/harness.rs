//! What [`conformance_tests!`](crate::conformance_tests) expands to: one `#[test]` per scenario,
//! all of one invocation run concurrently on a shared runtime.
//!
//! Why a batch: scenarios mostly wait out leases, and `cargo test` runs as many tests at once as
//! the machine has cores (2 here), so one test thread per scenario would make the suite take the
//! sum of its waits. Instead the first test of an invocation starts every selected scenario of it
//! in the background (at most `LEADER_TEST_CONCURRENCY` at once, default 8), and each test waits
//! for its own scenario's verdict. Libtest's name filters, `--exact` and `--skip` are honoured, so
//! `cargo test crash` runs only the crash scenarios.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::{Provider, ScenarioResult};

/// One scenario of the suite.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// Its function's name (the test's name).
    pub name: &'static str,
    /// Runs it.
    pub run: fn(Arc<dyn Provider>) -> BoxFuture<'static, ScenarioResult>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[derive(Clone)]
enum Verdict {
    /// With the notes the scenario printed (skip reasons, measured figures).
    Passed(Vec<String>),
    /// With why (what `provider_url` printed).
    NoProvider(String),
    Failed(String),
}

tokio::task_local! {
    static NOTES: Arc<Mutex<Vec<String>>>;
}

/// Prints a line of the scenario's report (a skip reason, a measured figure). Under the harness
/// the line is printed by the scenario's own test, so it shows with that test's output
/// (`--nocapture`); elsewhere it goes straight to stderr.
pub(crate) fn note(line: String) {
    if NOTES.try_with(|n| lock(n).push(line.clone())).is_err() {
        eprintln!("{line}");
    }
}

/// What `provider_url` printed last, for the tests of an unconfigured provider to repeat.
pub(crate) static PROVIDER_NOTE: Mutex<Option<String>> = Mutex::new(None);

#[derive(Default)]
struct Batch {
    results: Mutex<HashMap<&'static str, Verdict>>,
    done: Condvar,
    /// By when every verdict must be in (set once the provider is made). Checked on the test
    /// threads' own clock, so a stuck runtime (whose timers no longer fire) still fails the tests
    /// instead of hanging them.
    deadline: Mutex<Option<std::time::Instant>>,
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("leader-testkit")
        .build()
        .unwrap_or_else(|e| panic!("leader-testkit: cannot build the test runtime: {e}"))
});

static BATCHES: LazyLock<Mutex<HashMap<&'static str, Arc<Batch>>>> = LazyLock::new(Default::default);

/// Runs the scenario `name` of the invocation in `module` (see the module docs). Panics with the
/// scenario's failure message, so that the test fails with it.
#[doc(hidden)]
pub fn run_test<F, Fut>(module: &'static str, name: &'static str, make_provider: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Option<Arc<dyn Provider>>> + Send + 'static,
{
    let batch = {
        let mut batches = lock(&BATCHES);
        match batches.get(module) {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(Batch::default());
                batches.insert(module, b.clone());
                let selected = selected(module, name);
                RUNTIME.spawn(run_batch(b.clone(), selected, make_provider));
                b
            }
        }
    };
    let mut results = lock(&batch.results);
    loop {
        if let Some(verdict) = results.get(name).cloned() {
            drop(results);
            match verdict {
                Verdict::Passed(notes) => {
                    for line in notes {
                        eprintln!("{line}");
                    }
                    return;
                }
                Verdict::NoProvider(why) => {
                    eprintln!("{why}");
                    return;
                }
                Verdict::Failed(msg) => panic!("conformance scenario {name} failed: {msg}"),
            }
        }
        if lock(&batch.deadline).is_some_and(|d| std::time::Instant::now() > d) {
            drop(results);
            panic!(
                "conformance scenario {name} gave no verdict in time: the suite's runtime appears stuck \
                 (a task that never yields, or timers that no longer fire)"
            );
        }
        results = batch
            .done
            .wait_timeout(results, Duration::from_secs(1))
            .map(|(guard, _)| guard)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

async fn run_batch<F, Fut>(batch: Arc<Batch>, selected: Vec<Scenario>, make_provider: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Option<Arc<dyn Provider>>> + Send + 'static,
{
    let finish = |name: &'static str, verdict: Verdict| {
        lock(&batch.results).insert(name, verdict);
        batch.done.notify_all();
    };
    // A panic while making the provider (LEADER_TEST_REQUIRE without a URL) fails every test.
    let provider = match tokio::spawn(make_provider()).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let why =
                lock(&PROVIDER_NOTE).clone().unwrap_or_else(|| "leader-testkit: the provider is not configured".into());
            for s in crate::SCENARIOS {
                finish(s.name, Verdict::NoProvider(why.clone()));
            }
            return;
        }
        Err(e) => {
            let msg = panic_message(e);
            for s in crate::SCENARIOS {
                finish(s.name, Verdict::Failed(format!("making the provider failed: {msg}")));
            }
            return;
        }
    };
    let limit = scenario_limit(&provider);
    let waves = selected.len().div_ceil(concurrency()) as u32 + 1;
    *lock(&batch.deadline) = Some(std::time::Instant::now() + limit * waves + Duration::from_secs(60));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency()));
    let mut tasks = Vec::new();
    for scenario in selected {
        let provider = provider.clone();
        let permits = permits.clone();
        tasks.push((
            scenario.name,
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let notes = Arc::new(Mutex::new(Vec::new()));
                let run = NOTES.scope(notes.clone(), (scenario.run)(provider));
                match tokio::time::timeout(limit, tokio::spawn(run)).await {
                    Ok(Ok(Ok(()))) => Verdict::Passed(std::mem::take(&mut *lock(&notes))),
                    Ok(Ok(Err(failure))) => Verdict::Failed(failure.to_string()),
                    Ok(Err(join)) => Verdict::Failed(format!("panicked: {}", panic_message(join))),
                    Err(_) => Verdict::Failed(format!("did not finish within {}", crate::fmt_duration(limit))),
                }
            }),
        ));
    }
    for (name, task) in tasks {
        let verdict = task.await.unwrap_or_else(|e| Verdict::Failed(panic_message(e)));
        finish(name, verdict);
    }
}

/// Generous: a scenario waits out a handful of leases at most.
fn scenario_limit(provider: &Arc<dyn Provider>) -> Duration {
    (provider.options().lease_duration * 40).max(Duration::from_secs(120))
}

fn concurrency() -> usize {
    std::env::var("LEADER_TEST_CONCURRENCY").ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(8)
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic with a non-string payload".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// The scenarios libtest will run in this invocation: those whose test name passes the command
/// line's filters (plus the one asking, whatever the filters say).
fn selected(module: &str, asking: &str) -> Vec<Scenario> {
    let filter = Filter::from_args(std::env::args().skip(1));
    // Test names are the module path without the crate name.
    let prefix = module.split_once("::").map(|(_, rest)| format!("{rest}::")).unwrap_or_default();
    crate::SCENARIOS
        .iter()
        .filter(|s| s.name == asking || filter.accepts(&format!("{prefix}{}", s.name)))
        .copied()
        .collect()
}

#[derive(Default)]
struct Filter {
    names: Vec<String>,
    skips: Vec<String>,
    exact: bool,
}

impl Filter {
    fn from_args(args: impl Iterator<Item = String>) -> Self {
        const WITH_VALUE: &[&str] =
            &["--skip", "--test-threads", "--format", "--color", "--logfile", "-Z", "--shuffle-seed", "--report-time"];
        let mut f = Filter::default();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            if arg == "--skip" {
                f.skips.extend(args.next());
            } else if arg == "--exact" {
                f.exact = true;
            } else if WITH_VALUE.contains(&arg.as_str()) && !arg.contains('=') {
                // `--report-time` takes no value in current libtest; skip a value only if it is not a flag.
                if arg != "--report-time" || args.peek().is_some_and(|v| !v.starts_with('-')) {
                    args.next();
                }
            } else if !arg.starts_with('-') {
                f.names.push(arg);
            }
        }
        f
    }

    fn accepts(&self, test: &str) -> bool {
        let hit = |pat: &String| if self.exact { test == pat } else { test.contains(pat.as_str()) };
        (self.names.is_empty() || self.names.iter().any(hit)) && !self.skips.iter().any(hit)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::Filter;

    fn filter(args: &[&str]) -> Filter {
        Filter::from_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn filters_like_libtest() {
        assert!(filter(&[]).accepts("plain::crash_takeover"));
        assert!(filter(&["crash"]).accepts("plain::crash_takeover"));
        assert!(!filter(&["crash"]).accepts("plain::concurrent_start"));
        assert!(!filter(&["--skip", "crash"]).accepts("plain::crash_takeover"));
        assert!(
            filter(&["--test-threads", "crash", "--exact", "plain::crash_takeover"]).accepts("plain::crash_takeover")
        );
        assert!(!filter(&["--exact", "crash"]).accepts("plain::crash_takeover"));
        assert!(filter(&["--nocapture", "--test-threads=1"]).accepts("x"));
    }
}
