//! `leader run`: run a command only while this process leads.
//!
//! Order of events: the watchdog is started first (a failure there ends `leader run` with 125
//! before it campaigns), then the store is opened and the election started; once this process
//! leads, CMD is spawned in its own process group, with the parent-death signal set (Linux), and
//! the watchdog is told CMD's group at once.
//!
//! No exit path leaves CMD's group running: leadership lost, a signal and any failure of `leader`
//! itself all send CMD's group a signal, SIGKILL after `--grace`, and only then release the lease;
//! when CMD exits by itself, what is left of its group gets SIGTERM, then SIGKILL after `--grace`.
//! If `leader run` is killed (even with SIGKILL) CMD dies with it (parent-death signal) and the
//! watchdog stops the rest of the group; if `leader run` is stopped or starved, the watchdog stops
//! the group when the local deadline passes unrefreshed.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use leader::{ChangeKind, Election, ElectionOptions, Error, Leadership, RefusedReport};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::args::{duration, human, metadata};
use crate::watchdog::{self, Watchdog};
use crate::{EXIT_CANNOT_INVOKE, EXIT_FAILED, EXIT_LOST, EXIT_NOT_FOUND};

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
    /// Time between the stop signal (SIGTERM, or the signal `leader` got) and SIGKILL to CMD's
    /// group; must be less than lease - renew_deadline (default: half of it).
    #[arg(long, value_parser = duration)]
    grace: Option<Duration>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What `leader run` was asked to do, checked.
struct Plan {
    store_url: String,
    election: String,
    participant: Option<String>,
    options: ElectionOptions,
    grace: Duration,
    command: Vec<String>,
}

impl Plan {
    fn from_args(args: RunArgs) -> leader::Result<Plan> {
        let config = args.config.as_deref().map(leader::Config::from_file).transpose()?;
        let store_url = required(args.store, config.as_ref().map(|c| c.store.clone()), "--store")?;
        let election = required(args.election, config.as_ref().map(|c| c.election.clone()), "--election")?;
        leader::validate_election_name(&election)?;
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
        let participant = args.id.or_else(|| config.as_ref().and_then(|c| c.participant_id.clone()));
        if let Some(id) = &participant {
            leader::validate_participant_id(id)?;
        }
        let window = options.lease_duration - options.renew_deadline;
        let grace = args.grace.unwrap_or(window / 2);
        if grace >= window {
            return Err(Error::invalid_argument(format!(
                "--grace {} must be less than lease - renew_deadline ({}), so that the command is gone before the lease can expire in the store",
                humantime::format_duration(grace),
                humantime::format_duration(window)
            )));
        }
        Ok(Plan { store_url, election, participant, options, grace, command: args.command })
    }
}

/// A flag's value, else the config file's, else an error naming the flag.
pub(crate) fn required(flag: Option<String>, from_config: Option<String>, name: &str) -> leader::Result<String> {
    flag.or(from_config)
        .ok_or_else(|| Error::invalid_argument(format!("{name} is required (or give it in --config FILE)")))
}

pub(crate) async fn run(args: RunArgs) -> leader::Result<ExitCode> {
    let plan = Plan::from_args(args)?;
    // Signals first, so that none of them takes its default action (dying without releasing).
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => return Ok(failure(format_args!("cannot install signal handlers: {e}"))),
    };
    // The watchdog margin: it stops CMD's group at deadline + margin, SIGKILL `grace` later, which
    // is still before lease - renew_deadline after the deadline (when another process can lead);
    // the margin lets `leader run` act first when it can, so the watchdog is only the backstop.
    let window = plan.options.lease_duration - plan.options.renew_deadline;
    let margin = (window - plan.grace) / 2;
    let mut watchdog = match Watchdog::start(plan.grace, margin).await {
        Ok(watchdog) => watchdog,
        Err(e) => return Ok(failure(e)),
    };
    let result = campaign(&plan, &mut signals, &mut watchdog).await;
    watchdog.stop().await;
    result.map(ExitCode::from)
}

/// Opens the store, leads, runs the command, releases: the exit code.
async fn campaign(plan: &Plan, signals: &mut Signals, watchdog: &mut Watchdog) -> leader::Result<u8> {
    let connecting = crate::args::connect(&plan.store_url);
    tokio::pin!(connecting);
    let store = loop {
        tokio::select! {
            store = &mut connecting => break store?,
            sig = signals.recv() => if let Some(code) = stops(sig) { return Ok(code) },
        }
    };
    let mut builder = Election::builder(store, &plan.election).options(plan.options.clone());
    if let Some(id) = &plan.participant {
        builder = builder.participant_id(id.clone());
    }
    let election = builder.build()?;
    let result = lead_and_run(plan, &election, signals, watchdog).await;
    if let Err(e) = election.stop().await {
        say!("leader: could not release {}: {e}", plan.election);
    }
    result
}

/// The exit code for a signal that stops `leader run`; `None` for those passed to CMD only.
fn stops(sig: Signal) -> Option<u8> {
    match sig {
        Signal::SIGUSR1 | Signal::SIGUSR2 => {
            say!("leader: {sig} ignored: the command is not running");
            None
        }
        sig => {
            say!("leader: {sig}; leaving the election");
            Some(128 + sig as i32 as u8)
        }
    }
}

async fn lead_and_run(
    plan: &Plan,
    election: &Election,
    signals: &mut Signals,
    watchdog: &mut Watchdog,
) -> leader::Result<u8> {
    let mut changes = election.changes();
    election.start().await?;
    // How often to look for a store's refusal to elect (it comes with no change event).
    let mut look =
        tokio::time::interval(plan.options.retry_interval.clamp(Duration::from_millis(100), Duration::from_secs(1)));
    let mut refusal_shown: Option<String> = None;
    let leadership = loop {
        tokio::select! {
            change = changes.next() => match change {
                None => {
                    say!("leader: error: the election's change stream ended before this process led");
                    return Ok(EXIT_FAILED);
                }
                Some(change) => match change.kind {
                    ChangeKind::Acquired => if let Some(l) = election.leadership().filter(Leadership::is_valid) { break l },
                    _ => match (&change.current, election.health().refused) {
                        (Some(l), _) => say!("leader: waiting; {} leads {} (token {})", l.participant_id, plan.election, l.token),
                        (None, Some(r)) => {
                            say!("leader: {}", refusal_line(&r));
                            refusal_shown = Some(r.reason);
                        }
                        (None, None) => say!("leader: waiting; nobody leads {} yet", plan.election),
                    },
                },
            },
            _ = look.tick() => match election.health().refused {
                Some(r) if refusal_shown.as_deref() != Some(r.reason.as_str()) => {
                    say!("leader: {}", refusal_line(&r));
                    refusal_shown = Some(r.reason);
                }
                Some(_) => {}
                None => refusal_shown = None,
            },
            sig = signals.recv() => if let Some(code) = stops(sig) { return Ok(code) },
            status = watchdog.exited() => {
                let why = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                say!("leader: error: the watchdog exited ({why}); leaving the election");
                return Ok(EXIT_FAILED);
            }
        }
    };
    say!("leader: leading {} with token {}; starting {:?}", plan.election, leadership.token(), plan.command);
    let mut child = match spawn_command(&plan.command, election, &leadership) {
        Ok(child) => child,
        Err(e) => {
            say!("leader: cannot run {:?}: {e}", plan.command[0]);
            return Ok(spawn_error_code(&e));
        }
    };
    Ok(supervise(plan, &leadership, &mut child, signals, watchdog).await)
}

/// "waiting; the store refuses to elect until ...: REASON"
fn refusal_line(r: &RefusedReport) -> String {
    match (r.until, r.remaining) {
        (Some(until), Some(left)) => format!(
            "waiting; the store refuses to elect until {} (in {}): {}",
            humantime::format_rfc3339_seconds(until),
            human(left),
            r.reason
        ),
        _ => format!("waiting; the store refuses to elect for now (it gives no end): {}", r.reason),
    }
}

/// Why CMD's group is being stopped; the first cause gives the exit code.
#[derive(Clone, Copy)]
enum Cause {
    Lost,
    Signal(Signal),
    Failed,
}

struct Ending {
    cause: Cause,
    kill_at: Instant,
}

/// Runs until CMD and its group are gone: the exit code.
async fn supervise(
    plan: &Plan,
    leadership: &Leadership,
    child: &mut tokio::process::Child,
    signals: &mut Signals,
    watchdog: &mut Watchdog,
) -> u8 {
    let name = &plan.election;
    let grace = plan.grace;
    let Some(pid) = child.id() else {
        // Not reaped yet, so never None; stay on the safe side.
        return EXIT_FAILED;
    };
    // CMD leads its own process group: the group's id is CMD's pid.
    let cmd = Pid::from_raw(pid as i32);
    let group = cmd;
    let mut ending: Option<Ending> = None;
    // Starts stopping CMD's group with `sig` (unless already stopping: the first cause counts).
    let begin = |ending: &mut Option<Ending>, cause: Cause, sig: Signal| {
        if ending.is_none() {
            let _ = killpg(group, sig);
            *ending = Some(Ending { cause, kill_at: Instant::now() + grace });
        }
    };
    if let Err(e) = watchdog.group(pid, deadline_ms(leadership)).await {
        say!("leader: error: cannot reach the watchdog ({e}); stopping the command");
        begin(&mut ending, Cause::Failed, Signal::SIGTERM);
    }
    let refresh = (plan.options.renew_interval / 4).min(Duration::from_millis(250));
    let mut tick = tokio::time::interval(refresh);
    let mut lost_seen = false;
    let mut killed = false;
    let status: Option<ExitStatus> = loop {
        let kill_at = ending.as_ref().map(|e| e.kill_at);
        tokio::select! {
            biased;
            // A loss first: when `leader run` was stopped past its deadline, the watchdog has
            // stopped CMD by the time it resumes, and both are ready at once.
            _ = leadership.lost(), if !lost_seen => {
                lost_seen = true;
                if ending.is_none() {
                    say!("leader: leadership of {name} lost; stopping the command");
                }
                begin(&mut ending, Cause::Lost, Signal::SIGTERM);
            }
            status = child.wait() => match status {
                Ok(status) => break Some(status),
                Err(e) => {
                    say!("leader: error: cannot wait for the command ({e}); killing its group");
                    let _ = killpg(group, Signal::SIGKILL);
                    begin(&mut ending, Cause::Failed, Signal::SIGKILL);
                    break None;
                }
            },
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() && !killed => {
                killed = true;
                say!("leader: the command did not end within --grace {}; killing its group", human(grace));
                let _ = killpg(group, Signal::SIGKILL);
            }
            status = watchdog.exited() => {
                match status {
                    Ok(s) if s.code() == Some(watchdog::EXIT_DEADLINE as i32) => {
                        // The watchdog saw the deadline pass before we did (we were stopped or starved).
                        if ending.is_none() {
                            say!("leader: leadership of {name} lost (the watchdog stopped the command)");
                        }
                        begin(&mut ending, Cause::Lost, Signal::SIGTERM);
                    }
                    status => {
                        let why = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                        say!("leader: error: the watchdog exited ({why}); stopping the command");
                        begin(&mut ending, Cause::Failed, Signal::SIGTERM);
                    }
                }
            }
            sig = signals.recv() => match sig {
                // To CMD itself only, not its group.
                Signal::SIGUSR1 | Signal::SIGUSR2 => {
                    let _ = kill(cmd, sig);
                }
                sig => {
                    say!("leader: {sig}; passing it to the command's group");
                    // Every such signal is passed on (a second Ctrl-C too); the first cause counts.
                    if ending.is_some() {
                        let _ = killpg(group, sig);
                    }
                    begin(&mut ending, Cause::Signal(sig), sig);
                }
            },
            _ = tick.tick() => {
                if let Err(e) = watchdog.deadline(deadline_ms(leadership)).await {
                    if ending.is_none() {
                        say!("leader: error: cannot reach the watchdog ({e}); stopping the command");
                    }
                    begin(&mut ending, Cause::Failed, Signal::SIGTERM);
                }
            }
        }
    };
    match (&ending, status) {
        (None, Some(status)) => say!("leader: command exited ({status})"),
        (Some(_), Some(status)) => say!("leader: command ended ({status})"),
        _ => {}
    }
    // What CMD started may still run in its group: stop it before the lease is released.
    let kill_at = match &ending {
        Some(e) => e.kill_at,
        None => Instant::now() + grace,
    };
    clear_group(group, ending.is_none(), kill_at).await;
    say!("leader: releasing {name}");
    match (ending.map(|e| e.cause), status) {
        (None, Some(status)) => exit_code(status),
        (Some(Cause::Lost), _) => EXIT_LOST,
        (Some(Cause::Signal(sig)), _) => 128 + sig as i32 as u8,
        (Some(Cause::Failed), _) | (None, None) => EXIT_FAILED,
    }
}

/// Waits until CMD's group is empty: SIGTERM first if `term`, SIGKILL at `kill_at`.
async fn clear_group(group: Pid, term: bool, kill_at: Instant) {
    let alive = || watchdog::group_alive(group);
    if !alive() {
        return;
    }
    if term {
        say!("leader: stopping what the command left in its process group");
        let _ = killpg(group, Signal::SIGTERM);
    }
    while alive() && Instant::now() < kill_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A SIGKILLed process is gone once it is a zombie; one in uninterruptible sleep (a write to
    // a hung network file system) is not yet, and may still finish that write.
    let dead_by = Instant::now() + Duration::from_secs(2);
    while alive() {
        let _ = killpg(group, Signal::SIGKILL);
        if Instant::now() > dead_by {
            say!("leader: warning: processes of the command's group {group} survive SIGKILL (uninterruptible sleep?)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The local deadline as an instant of the watchdog's clock.
fn deadline_ms(leadership: &Leadership) -> u64 {
    let left = leadership.valid_until().saturating_duration_since(Instant::now());
    watchdog::now_ms().saturating_add(left.as_millis() as u64)
}

fn spawn_command(
    command: &[String],
    election: &Election,
    leadership: &Leadership,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("FENCING_TOKEN", leadership.token().to_string())
        .env("LEADER_ELECTION", election.election_name())
        .env("LEADER_ID", election.participant_id())
        .stdin(Stdio::null())
        .process_group(0);
    #[cfg(target_os = "linux")]
    set_parent_death_signal(&mut cmd);
    cmd.spawn()
}

/// Makes the kernel SIGKILL the command when the thread that spawned it dies, which is when
/// `leader run` dies (its runtime has one thread), even by SIGKILL. The rest of the command's
/// group is the watchdog's to stop.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` is unsafe because its closure runs in the child between fork and exec,
    // where another thread of the parent may have held a lock (the allocator's, stdio's) at the
    // fork: only async-signal-safe work is sound there. This closure allocates nothing and takes
    // no lock: it makes two system calls, prctl(2) and getppid(2), through nix's thin wrappers
    // (which read errno and nothing else), compares two integers, and builds an io::Error from a
    // raw errno (no allocation). It captures one `Copy` pid and touches no other state.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // If `leader run` died before prctl took effect, no signal will ever come: the child
            // has been re-parented, so refuse to exec.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// As `timeout(1)` and `env(1)`: 127 when CMD is not found, 126 when it cannot be run, 125 when
/// the system could not start a process at all.
fn spawn_error_code(e: &std::io::Error) -> u8 {
    match e.raw_os_error() {
        Some(nix::libc::ENOENT) => EXIT_NOT_FOUND,
        Some(nix::libc::EAGAIN) => EXIT_FAILED,
        _ if e.kind() == std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_INVOKE,
    }
}

/// CMD's own code, or 128 + N when a signal N ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => EXIT_FAILED,
    }
}

/// Says why `leader` itself failed: exit code 125.
fn failure(why: impl std::fmt::Display) -> ExitCode {
    say!("leader: error: {why}");
    ExitCode::from(EXIT_FAILED)
}

/// The signals `leader run` handles: SIGHUP, SIGINT, SIGTERM and SIGQUIT go to CMD's group and
/// end `leader run`; SIGUSR1 and SIGUSR2 go to CMD only.
pub(crate) struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    const HANDLED: [Signal; 6] =
        [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

    fn install() -> std::io::Result<Self> {
        let streams = Self::HANDLED
            .iter()
            .map(|&sig| Ok((sig, tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(sig as i32))?)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals { streams })
    }

    /// The next signal (cancel safe).
    async fn recv(&mut self) -> Signal {
        let next = self.streams.iter_mut().map(|(sig, stream)| {
            Box::pin(async move {
                stream.recv().await;
                *sig
            })
        });
        futures::future::select_all(next).await.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn refusal_line_names_the_end_and_the_reason() {
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let r = RefusedReport {
            reason: "restart quarantine".into(),
            until: Some(until),
            remaining: Some(Duration::from_secs(12)),
        };
        assert_eq!(
            refusal_line(&r),
            "waiting; the store refuses to elect until 2027-01-15T08:00:00Z (in 12s): restart quarantine"
        );
        let r = RefusedReport { reason: "no quorum".into(), until: None, remaining: None };
        assert_eq!(refusal_line(&r), "waiting; the store refuses to elect for now (it gives no end): no quorum");
    }

    #[test]
    fn spawn_errors_map_as_timeout_does() {
        let code = |errno| spawn_error_code(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(code(nix::libc::ENOENT), EXIT_NOT_FOUND);
        assert_eq!(code(nix::libc::EACCES), EXIT_CANNOT_INVOKE);
        assert_eq!(code(nix::libc::ENOEXEC), EXIT_CANNOT_INVOKE);
        assert_eq!(code(nix::libc::EAGAIN), EXIT_FAILED);
    }

    #[test]
    fn a_signalled_command_exits_128_plus_n() {
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
    }
}
