//! `leader watch`: every change of an election's holder, as it happens.

use std::time::{Duration, SystemTime};

use clap::Args;
use futures::StreamExt;

use crate::args::duration;

/// Arguments of `leader watch`.
#[derive(Args)]
pub(crate) struct WatchArgs {
    /// The store, e.g. file:///var/lib/leases or postgres://host/db.
    #[arg(long)]
    store: Option<String>,
    /// A leader::Config file (.toml or .json) to take the store (and, for watch, the election) from.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The election to watch.
    election: String,
    /// Read at least this often (push channels wake it sooner).
    #[arg(long, default_value = "1s", value_parser = duration)]
    poll: Duration,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn watch(args: WatchArgs) -> leader::Result<()> {
    leader::validate_election_name(&args.election)?;
    let config = args.config.as_deref().map(leader::Config::from_file).transpose()?;
    let url = crate::run::required(args.store.clone(), config.as_ref().map(|c| c.store.clone()), "--store")?;
    let store = crate::args::connect(&url).await?;
    let mut holders = leader::observe(store, args.election.clone(), args.poll);
    while let Some(item) = holders.next().await {
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        match item {
            Ok(holder) if args.json => {
                let line = serde_json::json!({ "at": now.to_string(), "election": args.election, "leader": holder });
                out!("{line}");
            }
            Ok(Some(l)) => out!("{now} {}: leader is {} (token {})", args.election, l.participant_id, l.token),
            Ok(None) => out!("{now} {}: no leader", args.election),
            Err(e) => say!("{now} {}: store error: {e}", args.election),
        }
    }
    Ok(())
}
