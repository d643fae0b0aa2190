//! `leader run`: run a command only while this process leads.
//!
//! The command runs in its own process group. At the local deadline (leadership lost) it gets
//! SIGTERM, then SIGKILL after `--grace`, which must be shorter than `lease - renew_deadline`, so
//! the command is gone before the lease can expire in the store and another process lead. If
//! `leader run` is killed (even with SIGKILL) the command dies with it (parent-death signal through
//! `setpriv`, and the watchdog); if `leader run` is stopped or starved, the watchdog kills the
//! command's group when the deadline passes unrefreshed.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use leader::{ChangeKind, Election, ElectionOptions, Error};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::args::{duration, metadata};
use crate::watchdog::{stop_group, Watchdog};
use crate::EXIT_LOST;

/// Arguments of `leader run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// A leader::Config file (.toml or .json) with store, election, participant_id, options and
    /// metadata; the flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The store, e.g. file:///var/lib/leases or postgres://host/db.
    #[arg(long)]
    store: Option<String>,
    /// The election's name.
    #[arg(long)]
    election: Option<String>,
    /// This participant's id (default: host name, pid and a random suffix).
    #[arg(long)]
    id: Option<String>,
    /// Lease duration; the other timings derive from it (default 15s).
    #[arg(long, value_parser = duration)]
    lease: Option<Duration>,
    /// Metadata published with the lease, KEY=VALUE (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Time between SIGTERM and SIGKILL when leadership ends (default: half of lease - renew_deadline).
    #[arg(long, value_parser = duration)]
    grace: Option<Duration>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub(crate) async fn run(args: RunArgs) -> leader::Result<ExitCode> {
    let config = args.config.as_deref().map(leader::Config::from_file).transpose()?;
    let store_url = required(args.store.clone(), config.as_ref().map(|c| c.store.clone()), "--store")?;
    let election_name = required(args.election.clone(), config.as_ref().map(|c| c.election.clone()), "--election")?;
    let mut options = match (args.lease, &config) {
        (Some(lease), _) => ElectionOptions::from_lease(lease),
        (None, Some(c)) => c.election_options(),
        (None, None) => ElectionOptions::default(),
    };
    if let (Some(_), Some(c)) = (args.lease, &config) {
        options.metadata = c.election_options().metadata;
    }
    options.metadata.extend(metadata(&args.metadata)?);
    options.validate()?;
    let participant = args.id.clone().or_else(|| config.as_ref().and_then(|c| c.participant_id.clone()));
    let window = options.lease_duration - options.renew_deadline;
    let grace = args.grace.unwrap_or(window / 2);
    if grace >= window {
        return Err(Error::invalid_argument(format!(
            "--grace {} must be less than lease - renew_deadline ({}), so that the command is gone before the lease can expire in the store",
            humantime::format_duration(grace),
            humantime::format_duration(window)
        )));
    }
    let store = leader::connect(&store_url).await?;
    let mut builder = Election::builder(store, &election_name).options(options.clone());
    if let Some(id) = participant {
        builder = builder.participant_id(id);
    }
    let election = builder.build()?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io)?;

    // Wait to lead, saying who leads meanwhile.
    let mut changes = election.changes();
    election.start().await?;
    let leadership = loop {
        tokio::select! {
            Some(change) = changes.next() => match change.kind {
                ChangeKind::Acquired => if let Some(l) = election.leadership() { break l },
                _ => match &change.current {
                    Some(l) => eprintln!("leader: waiting; {} leads {} (token {})", l.participant_id, election_name, l.token),
                    None => eprintln!("leader: waiting; nobody leads {} yet", election_name),
                },
            },
            _ = sigint.recv() => return stop(&election, 128 + 2).await,
            _ = sigterm.recv() => return stop(&election, 128 + 15).await,
        }
    };
    eprintln!("leader: leading {} with token {}; starting {:?}", election_name, leadership.token(), args.command);

    let mut child = spawn_command(&args.command, &election, leadership.token()).map_err(io)?;
    let pgid = child.id().ok_or_else(|| Error::backend("the command exited before it could be watched"))?;
    let mut watchdog = Watchdog::spawn(pgid, grace).map_err(io)?;
    let refresh_every = (options.renew_interval / 4).min(Duration::from_millis(250));
    let mut tick = tokio::time::interval(refresh_every);
    let code = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(io)?;
                eprintln!("leader: command exited ({status}); releasing {}", election_name);
                break exit_code(status);
            }
            _ = leadership.lost() => {
                eprintln!("leader: leadership of {} lost; stopping the command", election_name);
                stop_group(&mut child, pgid, grace).await;
                break EXIT_LOST;
            }
            _ = tick.tick() => {
                watchdog.refresh(leadership.valid_until().saturating_duration_since(Instant::now())).await;
            }
            _ = sigint.recv() => {
                stop_group(&mut child, pgid, grace).await;
                break 128 + 2;
            }
            _ = sigterm.recv() => {
                stop_group(&mut child, pgid, grace).await;
                break 128 + 15;
            }
        }
    };
    watchdog.stop().await;
    stop(&election, code).await
}

/// A flag's value, else the config file's, else an error naming the flag.
pub(crate) fn required(flag: Option<String>, from_config: Option<String>, name: &str) -> leader::Result<String> {
    flag.or(from_config)
        .ok_or_else(|| Error::invalid_argument(format!("{name} is required (or give it in --config FILE)")))
}

async fn stop(election: &Election, code: u8) -> leader::Result<ExitCode> {
    if let Err(e) = election.stop().await {
        eprintln!("leader: could not release {}: {e}", election.election_name());
    }
    Ok(ExitCode::from(code))
}

fn spawn_command(
    command: &[String],
    election: &Election,
    token: leader::FencingToken,
) -> std::io::Result<tokio::process::Child> {
    // `setpriv --pdeathsig KILL` makes the kernel kill the command when `leader run` dies, even by
    // SIGKILL (util-linux; present on Debian). Without it the watchdog still kills the group.
    let mut cmd = if setpriv_available() {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--"]).args(command);
        c
    } else {
        let mut c = tokio::process::Command::new(&command[0]);
        c.args(&command[1..]);
        c
    };
    cmd.env("FENCING_TOKEN", token.to_string())
        .env("LEADER_ELECTION", election.election_name())
        .env("LEADER_ID", election.participant_id())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
}

fn setpriv_available() -> bool {
    std::process::Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

fn io(e: std::io::Error) -> Error {
    Error::backend(format!("leader run: {e}")).with_source(e)
}
