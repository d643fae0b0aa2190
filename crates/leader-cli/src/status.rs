//! `leader status`: who leads each election.

use clap::Args;
use leader::{ErrorKind, LeaderInfo};

use crate::args::human;

/// Arguments of `leader status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The store, e.g. file:///var/lib/leases or postgres://host/db.
    #[arg(long)]
    store: Option<String>,
    /// A leader::Config file (.toml or .json) to take the store (and, for watch, the election) from.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Elections to show (default: every election the store can list).
    elections: Vec<String>,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn status(args: StatusArgs) -> leader::Result<()> {
    let config = args.config.as_deref().map(leader::Config::from_file).transpose()?;
    let url = crate::run::required(args.store.clone(), config.as_ref().map(|c| c.store.clone()), "--store")?;
    let store = crate::args::connect(&url).await?;
    let rows: Vec<(String, Option<LeaderInfo>)> = if args.elections.is_empty() {
        match store.list("").await {
            Ok(all) => all.into_iter().map(|l| (l.election.clone(), Some(l))).collect(),
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Err(leader::Error::invalid_argument(format!(
                    "this store cannot list elections ({e}); name them: leader status --store URL ELECTION..."
                )))
            }
            Err(e) => return Err(e),
        }
    } else {
        let mut rows = Vec::new();
        for name in &args.elections {
            leader::validate_election_name(name)?;
            rows.push((name.clone(), store.current(name).await?));
        }
        rows
    };
    if args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(election, holder)| serde_json::json!({ "election": election, "leader": holder }))
            .collect();
        out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    out!("{:<32} {:<28} {:>8} {:<26} {:>10}  METADATA", "ELECTION", "LEADER", "TOKEN", "ACQUIRED", "EXPIRES IN");
    for (election, holder) in rows {
        match holder {
            None => out!("{election:<32} {:<28} {:>8} {:<26} {:>10}", "-", "-", "-", "-"),
            Some(l) => out!(
                "{election:<32} {:<28} {:>8} {:<26} {:>10}  {}",
                l.participant_id,
                l.token,
                l.acquired_at.map_or("-".to_owned(), |t| humantime::format_rfc3339_seconds(t).to_string()),
                l.expires_in.map_or("-".to_owned(), human),
                l.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            ),
        }
    }
    Ok(())
}
