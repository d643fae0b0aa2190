//! `leader`: run a command only while this process leads an election, show who leads, and watch
//! leadership changes, on any store `leader::connect` understands.
//!
//! Exit codes: `leader run` exits with the command's own code when the command ends; 2 for bad
//! input or a store that cannot be reached (one line on stderr, no backtrace); 3 when leadership was
//! lost while the command ran (it was stopped); 128 + N when `leader` itself got signal N.

#![deny(clippy::unwrap_used, clippy::expect_used)]
mod args;
mod run;
mod status;
mod watch;
mod watchdog;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Distributed leader election from the shell.
#[derive(Parser)]
#[command(name = "leader", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD only while this process leads ELECTION; stop it when leadership ends.
    Run(run::RunArgs),
    /// Show who leads each election.
    Status(status::StatusArgs),
    /// Print every leadership change of an election as it happens.
    Watch(watch::WatchArgs),
    /// Internal: the watchdog process of `leader run`.
    #[command(name = "__watchdog", hide = true)]
    Watchdog(watchdog::WatchdogArgs),
}

/// Exit code for bad input and unreachable stores.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when leadership was lost while the command ran.
pub(crate) const EXIT_LOST: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let text = e.to_string();
            eprintln!("leader: {}", text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if let Command::Watchdog(args) = cli.command {
        return watchdog::main(args);
    }
    // One thread: `leader run` spawns its command from this thread, and a parent-death signal
    // follows the thread that spawned, not the process.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leader: error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Status(args) => status::status(args).await.map(|()| ExitCode::SUCCESS),
            Command::Watch(args) => watch::watch(args).await.map(|()| ExitCode::SUCCESS),
            Command::Watchdog(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leader: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
