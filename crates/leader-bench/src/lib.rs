#![doc = include_str!("../README.md")]

pub mod config;
pub mod plot;
pub mod probe;
pub mod report;
pub mod sections;
pub mod server_count;
pub mod stats;

use std::sync::Arc;

use leader::{LeaseStore, RawFloor, Result};

pub use config::Config;
pub use report::Report;
pub use sections::failover::{hold, Crash, HOLDING, HOLD_MODE};

/// Runs every section against `config.store` and returns what was measured.
///
/// Sections run one after another on one store handle (from `leader::connect_with_floor`), each on
/// election names of its own (`bench-<run id>-...`), so a run never disturbs another's elections.
///
/// # Errors
/// Bad configuration ([`InvalidArgument`](leader::ErrorKind::InvalidArgument)), a store that cannot
/// be opened, or a section whose wait passed its safety bound (the error names the section).
pub async fn run(config: &Config) -> Result<Report> {
    config.validate()?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (store, floor): (Arc<dyn LeaseStore>, Arc<dyn RawFloor>) =
        leader::connect_with_floor(&config.store).await.map_err(|e| match config.provider() {
            "unknown" => e,
            _ if e.kind() != leader::ErrorKind::InvalidArgument
                || !e.message().contains("not supported by this build") =>
            {
                e
            }
            provider => leader::Error::invalid_argument(format!(
                "{}; run the bench with `cargo run --release -p leader-bench --features {provider} -- ...`",
                e.message()
            )),
        })?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let caps = store.capabilities();
    let lease = config.lease;
    let mut notes = Vec::new();
    let say = |what: &str| {
        if config.progress {
            eprintln!("leader-bench: {what}");
        }
    };

    let (mut latency, mut handoff, mut crash_failover, mut idle) = Default::default();
    if config.many_only {
        notes.push("--many-only: sections 1-4 did not run".to_owned());
    } else {
        say(&format!("uncontended latency, {} iterations", config.iterations));
        latency = sections::latency::run(&store, &floor, &run_id, lease, config.iterations).await?;

        say(&format!("graceful handoff with push, {} handoffs", config.handoffs));
        handoff = vec![sections::handoff::run(&store, &run_id, lease, config.handoffs, true).await?];
        if caps.push_notifications {
            say(&format!("graceful handoff with the watch hidden (polling), {} handoffs", config.poll_handoffs));
            handoff.push(sections::handoff::run(&store, &run_id, lease, config.poll_handoffs, false).await?);
        } else {
            handoff[0].mode = "polling".to_owned();
            notes.push("the store has no push channel: followers poll, so there is one handoff row".to_owned());
        }

        let crash = if config.provider() == "memory" {
            notes.push(
                "memory:// cannot cross processes: the crash is simulated in-process (the holder's Election and its \
                 store handle are dropped without release; the lease then expires in the store)"
                    .to_owned(),
            );
            Crash::InProcess
        } else {
            let exe = match &config.hold_exe {
                Some(exe) => exe.clone(),
                None => std::env::current_exe().map_err(|e| {
                    leader::Error::backend(format!("cannot find this executable to run the crash holder: {e}"))
                })?,
            };
            Crash::Process { exe, url: config.store.clone() }
        };
        say(&format!("crash failover, {} runs", config.crash_runs));
        crash_failover = sections::failover::run(&store, &run_id, lease, config.crash_runs, &crash).await?;

        say(&format!("idle cost over {}", humantime::format_duration(config.idle_window)));
        idle = sections::idle::run(&store, &run_id, lease, config.idle_window).await?;
    }

    let ks = config.election_counts();
    say(&format!("many elections, K = {ks:?}"));
    let counter = server_count::ServerCounter::for_store(&store, &config.store);
    match &counter {
        Some(c) => notes.push(format!("many elections: server round trips are {}", c.what())),
        None => notes.push("many elections: this store has no server-side count of round trips".to_owned()),
    }
    let many_elections = sections::many::run(&store, counter.as_ref(), &run_id, lease, &ks, config.many_window).await?;

    Ok(Report {
        store: config::redact(&config.store),
        provider: config.provider().to_owned(),
        lease_ms: stats::ms(lease),
        quick: config.quick,
        many_only: config.many_only,
        started_at,
        capabilities: caps.into(),
        latency,
        handoff,
        crash_failover,
        idle,
        many_elections,
        notes,
    })
}
