//! `leader`: run a command only while this process leads an election, show who leads, and watch
//! leadership changes, on any store `leader::connect` understands.
//!
//! Exit codes, as `timeout(1)` has them: `leader run` exits with CMD's own code when CMD ends by
//! itself (128 + N when a signal N it did not get from `leader` ended it); 124 when leadership was
//! lost while CMD ran (CMD was stopped); 125 when `leader` itself failed (store unreachable, the
//! watchdog could not start or died, ...); 126 when CMD cannot be run; 127 when CMD is not found;
//! 128 + N when `leader` got signal N (SIGHUP, SIGINT, SIGTERM, SIGQUIT). 2 is for usage errors
//! only (bad flags, a bad config file, an invalid name or duration). Every error is one line on
//! stderr.

#![deny(clippy::unwrap_used, clippy::expect_used)]

/// `eprintln!` that never panics: stderr may be closed, and `leader run` must not die of it while
/// its command runs.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that ends the calling function with `Ok(())` once stdout is closed
/// (`leader watch ... | head -1`), instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            return Ok(());
        }
    }};
}

mod args;
mod faults;
mod run;
mod status;
mod watch;
mod watchdog;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leader::ErrorKind;

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

/// Exit code for usage errors: bad flags, config, names, durations.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when leadership was lost while the command ran.
pub(crate) const EXIT_LOST: u8 = 124;
/// Exit code when `leader` itself failed.
pub(crate) const EXIT_FAILED: u8 = 125;
/// Exit code when the command was found but cannot be run.
pub(crate) const EXIT_CANNOT_INVOKE: u8 = 126;
/// Exit code when the command was not found.
pub(crate) const EXIT_NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let text = e.to_string();
            say!("leader: {}", text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if let Err(e) = faults::init() {
        say!("leader: error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Command::Watchdog(args) = cli.command {
        return watchdog::main(args);
    }
    // One thread: `leader run` spawns its command from this thread, and the parent-death signal
    // follows the thread that spawned, not the process.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("leader: error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
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
            say!("leader: error: {e}");
            match e.kind() {
                ErrorKind::InvalidArgument => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::from(EXIT_FAILED),
            }
        }
    }
}
