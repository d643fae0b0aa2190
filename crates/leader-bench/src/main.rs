//! `leader-bench --store URL`: latency, handoff and failover of one store, as a table on stdout
//! and JSON in a file. See the crate README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use leader::{Error, Result};
use leader_bench::{config, Config, HOLD_MODE};

const USAGE: &str = "\
usage: leader-bench --store URL|PROVIDER [options]

  --store URL|PROVIDER  a leader::connect URL (memory://, file:///dir, postgres://..., ...), or a provider
                        name alone: memory, fs, or one whose LEADER_TEST_<PROVIDER>_URL is set
  --iterations N        uncontended acquire/renew/release iterations (default 1000 memory/fs, 300 others)
  --handoffs N          graceful handoffs with the store's push channel (default 50)
  --poll-handoffs N     graceful handoffs with the push channel hidden (default 50; 10 for leases over 5s)
  --crash-runs N        crash-failover runs (default 5)
  --max-elections K     largest K of the many-elections section (default 1000: K = 1, 100, 1000)
  --lease DURATION      lease duration, e.g. 2s (default 2s; zookeeper 4s, consul 10s, azblob 15s)
  --quick               tiny N everywhere (a smoke run)
  --many-only           run only section 5 (many elections), e.g. with --max-elections 10000
  --json FILE           where the JSON goes (default target/leader-bench/<scheme>.json)
  --plot FILE.png       draw the handoff and crash-failover distributions
  --quiet               no progress lines on stderr

  leader-bench --from-json FILE [--plot FILE.png]   print the table (and draw the plot) of a saved run
";

struct Args {
    config: Config,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(HOLD_MODE) {
        return match hold(&args[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leader-bench {HOLD_MODE}: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--from-json") {
        return match replay(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leader-bench: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("leader-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leader-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<()> {
    let report = leader_bench::run(&args.config).await?;
    print!("{}", report.table());
    let json_path = args.json.unwrap_or_else(|| default_json_path(&args.config.scheme()));
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::backend(format!("cannot create {}: {e}", dir.display())).with_source(e))?;
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::backend(format!("JSON: {e}")))?;
    std::fs::write(&json_path, json + "\n")
        .map_err(|e| Error::backend(format!("cannot write {}: {e}", json_path.display())).with_source(e))?;
    println!("\nJSON written to {}", json_path.display());
    if let Some(png) = args.plot {
        leader_bench::plot::plot(&report, &png)?;
        println!("plot written to {}", png.display());
    }
    Ok(())
}

/// `--from-json FILE [--plot FILE.png]`: the table and plot of a saved run, without running.
fn replay(args: &[String]) -> Result<()> {
    let (mut json, mut plot) = (None, None);
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--from-json" => json = Some(PathBuf::from(value(args, &mut i, flag)?)),
            "--plot" => plot = Some(PathBuf::from(value(args, &mut i, flag)?)),
            other => return Err(Error::invalid_argument(format!("unknown argument {other:?} with --from-json"))),
        }
        i += 1;
    }
    let json = json.ok_or_else(|| Error::invalid_argument("--from-json needs a file"))?;
    let text = std::fs::read_to_string(&json)
        .map_err(|e| Error::invalid_argument(format!("cannot read {}: {e}", json.display())))?;
    let report: leader_bench::Report = serde_json::from_str(&text)
        .map_err(|e| Error::invalid_argument(format!("{} is not a leader-bench report: {e}", json.display())))?;
    print!("{}", report.table());
    if let Some(png) = plot {
        leader_bench::plot::plot(&report, &png)?;
        println!("plot written to {}", png.display());
    }
    Ok(())
}

/// `target/leader-bench/<scheme>.json` in the target directory this binary was built into (or
/// `CARGO_TARGET_DIR`), else under the current directory.
fn default_json_path(scheme: &str) -> PathBuf {
    let file = format!("{}.json", if scheme.is_empty() { "store" } else { scheme });
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).or_else(|| {
        let exe = std::env::current_exe().ok()?;
        let profile_dir = exe.parent()?;
        matches!(profile_dir.file_name()?.to_str()?, "release" | "debug")
            .then(|| profile_dir.parent().map(PathBuf::from))?
    });
    target.unwrap_or_else(|| PathBuf::from("target")).join("leader-bench").join(file)
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str> {
    *i += 1;
    args.get(*i).map(String::as_str).ok_or_else(|| Error::invalid_argument(format!("{flag} needs a value")))
}

fn count(v: &str, flag: &str) -> Result<usize> {
    v.parse::<usize>().map_err(|_| {
        Error::invalid_argument(format!("{flag} {v:?} is not a whole number; it takes a count such as 100"))
    })
}

fn duration(v: &str, flag: &str) -> Result<Duration> {
    humantime::parse_duration(v)
        .map_err(|e| Error::invalid_argument(format!("{flag} {v:?} is not a duration such as 2s or 500ms: {e}")))
}

fn parse(args: &[String]) -> Result<Args> {
    let (mut store, mut lease, mut quick, mut quiet, mut many_only) = (None, None, false, false, false);
    let (mut iterations, mut handoffs, mut crash_runs, mut max_elections) = (None, None, None, None);
    let mut poll_handoffs = None;
    let (mut json, mut plot) = (None, None);
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--store" => store = Some(value(args, &mut i, flag)?.to_owned()),
            "--lease" => lease = Some(duration(value(args, &mut i, flag)?, flag)?),
            "--iterations" => iterations = Some(count(value(args, &mut i, flag)?, flag)?),
            "--handoffs" => handoffs = Some(count(value(args, &mut i, flag)?, flag)?),
            "--poll-handoffs" => poll_handoffs = Some(count(value(args, &mut i, flag)?, flag)?),
            "--crash-runs" => crash_runs = Some(count(value(args, &mut i, flag)?, flag)?),
            "--max-elections" => max_elections = Some(count(value(args, &mut i, flag)?, flag)?),
            "--json" => json = Some(PathBuf::from(value(args, &mut i, flag)?)),
            "--plot" => plot = Some(PathBuf::from(value(args, &mut i, flag)?)),
            "--quick" => quick = true,
            "--many-only" => many_only = true,
            "--quiet" => quiet = true,
            other => return Err(Error::invalid_argument(format!("unknown argument {other:?}"))),
        }
        i += 1;
    }
    let store = store.ok_or_else(|| Error::invalid_argument("--store is required"))?;
    let mut config = Config::for_store(&store)?;
    if quick {
        config = config.quick();
    }
    if let Some(lease) = lease {
        config = config.with_lease(lease);
    }
    config.iterations = iterations.unwrap_or(config.iterations);
    config.handoffs = handoffs.unwrap_or(config.handoffs);
    config.poll_handoffs = poll_handoffs.unwrap_or(config.poll_handoffs);
    config.crash_runs = crash_runs.unwrap_or(config.crash_runs);
    config.max_elections = max_elections.unwrap_or(config.max_elections);
    config.progress = !quiet;
    config.many_only = many_only;
    config.validate()?;
    Ok(Args { config, json, plot })
}

/// `__hold --store URL --election E --lease D`: the crash-failover holder.
async fn hold(args: &[String]) -> Result<()> {
    let (mut store, mut election, mut lease) = (None, None, None);
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--store" => store = Some(value(args, &mut i, flag)?.to_owned()),
            "--election" => election = Some(value(args, &mut i, flag)?.to_owned()),
            "--lease" => lease = Some(duration(value(args, &mut i, flag)?, flag)?),
            other => return Err(Error::invalid_argument(format!("unknown {HOLD_MODE} argument {other:?}"))),
        }
        i += 1;
    }
    let store = config::resolve_store(&store.ok_or_else(|| Error::invalid_argument("--store is required"))?)?;
    let election = election.ok_or_else(|| Error::invalid_argument("--election is required"))?;
    let lease = lease.ok_or_else(|| Error::invalid_argument("--lease is required"))?;
    leader_bench::hold(&store, &election, lease).await
}
