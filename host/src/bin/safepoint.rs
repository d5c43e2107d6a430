//! `safepoint`: load safe-point strategy plugins and run barriers against workloads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use safepoint_host::plugin::{self, LoadError, SearchPath};
use safepoint_host::runtime::Runtime;
use safepoint_host::safepoint::OnTimeout;
use safepoint_host::workload::{self, Workload};

/// Load safe-point strategy plugins and run Go-style ragged barriers with them.
#[derive(Parser, Debug)]
#[command(name = "safepoint", version)]
struct Cli {
    /// Show full detail of errors (e.g. abi_stable's whole layout report).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the plugins found on the search path, and whether each loads.
    List(ListArgs),
    /// Start the runtime, run a workload, and perform barriers from a goroutine.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct PathArgs {
    /// A directory to search for plugins before the default path (repeatable).
    #[arg(long = "plugin-path", value_name = "DIR")]
    plugin_path: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    path: PathArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The strategy: a name (`polling`) or a path to a plugin, with an optional
    /// configuration after a colon (`polling:spin=10`).
    #[arg(long, value_name = "NAME[:CONFIG]|PATH")]
    strategy: String,
    /// Number of Ps (GOMAXPROCS).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    procs: u32,
    /// What the mutator goroutines do: poll, idle, syscall or mixed.
    #[arg(long, default_value = "poll", value_parser = parse_workload)]
    workload: Workload,
    /// Number of barriers to perform.
    #[arg(long, default_value_t = 1000)]
    barriers: u64,
    /// Report a barrier that has not completed after this long (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    safepoint_timeout: Duration,
    /// What to do after a safepoint-timeout report.
    #[arg(long, value_enum, default_value_t = TimeoutAction::Report)]
    on_timeout: TimeoutAction,
    #[command(flatten)]
    path: PathArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TimeoutAction {
    /// Print the report and keep waiting.
    Report,
    /// Print the report and exit with status 3.
    Abort,
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    s.parse()
}

/// Parses `10s`, `500ms`, `100us`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. 10s, 500ms or 100us"))?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    let seconds = match unit {
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}`; use us, ms, s or m"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::List(args) => list(&args),
        Command::Run(args) => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safepoint: error: {e}");
            if cli.verbose
                && let Some(details) = e.downcast_ref::<LoadError>().and_then(LoadError::details)
            {
                eprintln!("\n{details}");
            }
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn list(args: &ListArgs) -> CliResult {
    let search = SearchPath::new(&args.path.plugin_path);
    let found = search.discover();
    if found.is_empty() {
        let dirs: Vec<_> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(format!(
            "no plugins (libsafepoint_*.so) in any of [{}]; build them with \
             `cargo build --release --workspace`",
            dirs.join(", ")
        )
        .into());
    }
    for path in found {
        match plugin::load_path(&path) {
            Ok(p) => println!(
                "{:<12} {}\n             ABI {}, capabilities: {}\n             {}\n             loads: yes",
                p.name(),
                path.display(),
                p.abi_version(),
                p.capabilities(),
                p.description()
            ),
            Err(e) => println!(
                "{:<12} {}\n             loads: no: {e}",
                plugin::name_of_file(&path).unwrap_or("?"),
                path.display()
            ),
        }
    }
    Ok(())
}

fn run(args: &RunArgs) -> CliResult {
    let search = SearchPath::new(&args.path.plugin_path);
    let (spec, config) = args
        .strategy
        .split_once(':')
        .unwrap_or((&args.strategy, ""));
    let plugin = plugin::load(spec, &search)?;
    let on_timeout = match args.on_timeout {
        TimeoutAction::Report => OnTimeout::Report,
        TimeoutAction::Abort => OnTimeout::Abort,
    };
    let rt = Runtime::builder()
        .procs(args.procs as usize)
        .safepoint_timeout(Some(args.safepoint_timeout), on_timeout)
        .build(&plugin, config)?;
    let summary = workload::run(&rt, args.workload, args.barriers)?;
    rt.shutdown();
    print!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10h").unwrap_err().contains("unknown unit"));
    }
}
