//! `safepoint`: load safe-point strategy plugins and run barriers against workloads.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use safepoint_host::compare::{self, CompareOptions};
use safepoint_host::gc::{self, DeadlockMode};
use safepoint_host::plugin::{self, LoadError, LoadOptions, Plugin, SearchPath, StrategySpec};
use safepoint_host::runtime::Runtime;
use safepoint_host::safepoint::{OnTimeout, ServedPs};
use safepoint_host::workloads::{self, Rotation, RunError, RunOptions, Workload, WorkloadParams};

/// `--version`: the program's version and the plugin ABI it speaks, `0.1.0 (ABI 2.2)`.
fn version() -> &'static str {
    let text = format!(
        "{} (ABI {})",
        env!("CARGO_PKG_VERSION"),
        safepoint_abi::ABI_VERSION
    );
    Box::leak(text.into_boxed_str())
}

/// Load safe-point strategy plugins and run Go-style ragged barriers with them.
#[derive(Parser, Debug)]
#[command(name = "safepoint", version = version())]
struct Cli {
    /// Show full detail of errors (e.g. abi_stable's whole layout report).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compare strategies side by side with the hardware floor of each mechanism: barrier
    /// time by P count and workload, requester CPU, mutator slowdown, signals and EINTRs.
    Compare(CompareArgs),
    /// List the plugins found on the search path, and whether each loads.
    List(ListArgs),
    /// Start the runtime, run a workload, and perform barriers from a goroutine.
    Run(RunArgs),
    /// Many barriers with strategy swaps and GC cycles, at each P count in turn: values
    /// lost and doubled (none), and resident memory at the start and the end.
    Soak(SoakArgs),
    /// Stage a scenario from the Go runtime's history.
    #[command(subcommand)]
    Demo(Demo),
}

#[derive(Subcommand, Debug)]
enum Demo {
    /// The forEachP deadlock of Go change 533455: a mark worker waits in suspend_g for the
    /// goroutine that calls the barrier. Completes through for_each_p; with --unchecked it
    /// hangs until the safepoint timeout reports the late P and exits with status 3.
    Deadlock(DeadlockArgs),
}

#[derive(Args, Debug)]
struct DeadlockArgs {
    /// The strategy: a name or a path, optionally pinned (`@sha256:HEX`), with an optional
    /// configuration after a colon.
    #[arg(long, value_name = "NAME|PATH[@sha256:HEX][:CONFIG]")]
    strategy: String,
    /// Call for_each_p_unchecked (Go's forEachPInternal) instead of for_each_p.
    #[arg(long)]
    unchecked: bool,
    /// Number of Ps (at least 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=1024))]
    procs: u32,
    /// How many times to stage the scene.
    #[arg(long, default_value_t = 1000)]
    iterations: u64,
    #[command(flatten)]
    timeout: TimeoutArgs,
    #[command(flatten)]
    served: ServedPsArgs,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    path: PathArgs,
}

/// Barrier tracing; any of these turns it on.
#[derive(Args, Debug, Default)]
struct TraceArgs {
    /// Write a trace of every barrier as Chrome trace event JSON (open it in
    /// ui.perfetto.dev or chrome://tracing): one track per P, one for the requester.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Draw the slowest barriers of the trace as SVG, one row per P.
    #[arg(long, value_name = "FILE")]
    trace_svg: Option<PathBuf>,
    /// Print one line per barrier: reason, strategy, time to reach every P, the last P and
    /// how it was reached (printed after the run, from the trace).
    #[arg(long)]
    log_barriers: bool,
}

impl TraceArgs {
    fn on(&self) -> bool {
        self.trace.is_some() || self.trace_svg.is_some() || self.log_barriers
    }

    /// Writes what was asked for from `rt`'s trace.
    fn write(&self, rt: &Runtime) -> CliResult {
        let Some(trace) = rt.trace() else {
            return Ok(());
        };
        if self.log_barriers {
            // A closed stdout (`| head`) ends the listing with an error, not a panic.
            let mut out = std::io::stdout().lock();
            for timeline in safepoint_host::trace::timelines(&trace) {
                writeln!(out, "{}", timeline.log_line())?;
            }
            if trace.dropped > 0 {
                writeln!(
                    out,
                    "({} trace events dropped: the rings were full, the oldest barriers are missing)",
                    trace.dropped
                )?;
            }
        }
        if let Some(path) = &self.trace {
            safepoint_host::trace::write_chrome_json(&trace, path)?;
        }
        if let Some(path) = &self.trace_svg {
            safepoint_host::trace::write_svg(&trace, path)?;
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
struct TimeoutArgs {
    /// Report a barrier that has not completed after this long (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    safepoint_timeout: Option<Duration>,
    /// What to do after a safepoint-timeout report.
    #[arg(long, value_enum)]
    on_timeout: Option<TimeoutAction>,
}

impl TimeoutArgs {
    fn or(&self, timeout: Duration, action: TimeoutAction) -> (Option<Duration>, OnTimeout) {
        let action = match self.on_timeout.unwrap_or(action) {
            TimeoutAction::Report => OnTimeout::Report,
            TimeoutAction::Abort => OnTimeout::Abort,
        };
        (Some(self.safepoint_timeout.unwrap_or(timeout)), action)
    }
}

#[derive(Args, Debug)]
struct ServedPsArgs {
    /// What the M of a P that has been served does while the barrier is still in flight:
    /// auto (wait when Ps outnumber CPUs, run otherwise), run, yield (once) or wait (until the
    /// barrier ends).
    #[arg(long, default_value = "auto", value_parser = parse_served_ps)]
    served_ps: ServedPs,
}

#[derive(Args, Debug)]
struct PathArgs {
    /// A directory to search for plugins before the default path (repeatable).
    #[arg(long = "plugin-path", value_name = "DIR")]
    plugin_path: Vec<PathBuf>,
    /// Load plugin files that someone other than you or root can write (a file or its
    /// directory writable by group or others, or owned by another user), which are refused
    /// otherwise.
    #[arg(long)]
    allow_untrusted_plugins: bool,
}

impl PathArgs {
    fn search(&self) -> SearchPath {
        SearchPath::new(&self.plugin_path)
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            allow_untrusted: self.allow_untrusted_plugins,
            sha256: None,
        }
    }
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Strategies to compare [default: every plugin found, except test plugins].
    #[arg(long, value_name = "SPEC,SPEC,...", value_delimiter = ',')]
    strategies: Vec<String>,
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = clap::value_parser!(u32).range(1..=1024),
        help = compare_defaults("P counts", |o| join(&o.procs))
    )]
    procs: Vec<u32>,
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = workload_parser(),
        help = compare_defaults("Workloads", |o| join(&o.workloads))
    )]
    workloads: Vec<Workload>,
    #[arg(long, help = compare_defaults("Barriers per row, at most", |o| o.barriers.to_string()))]
    barriers: Option<u64>,
    #[arg(
        long,
        value_parser = parse_duration,
        help = compare_defaults("Time per row, at most", |o| format!("{:?}", o.duration))
    )]
    duration: Option<Duration>,
    /// A smaller matrix: about ten seconds instead of about a minute.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    params: WorkloadArgs,
    #[command(flatten)]
    served: ServedPsArgs,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the results as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw barrier time against P count as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Run every measured row again with barrier tracing on: the barrier p50 with tracing
    /// off and on, and the time to safepoint per P and per wait reason (table and JSON).
    #[arg(long)]
    traced: bool,
    #[command(flatten)]
    path: PathArgs,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    path: PathArgs,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["strategy", "strategies"]))]
struct RunArgs {
    /// The strategy: a name (`polling`) or a path to a plugin, optionally pinned to the
    /// SHA-256 of its file as `sha256sum` prints it (`polling@sha256:HEX`), with an optional
    /// configuration after a colon (`polling:spin=10`).
    #[arg(long, value_name = "NAME|PATH[@sha256:HEX][:CONFIG]")]
    strategy: Option<String>,
    /// Several strategies to swap through while the workload runs, starting with the first
    /// (`polling,signal,futex`).
    #[arg(long, value_name = "SPEC,SPEC,...", value_delimiter = ',')]
    strategies: Vec<String>,
    /// How long each of --strategies stays active before the next is swapped in
    /// [default: 10ms].
    #[arg(long, value_parser = parse_duration)]
    swap_every: Option<Duration>,
    /// Number of Ps (GOMAXPROCS).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    procs: u32,
    /// What the mutator goroutines do.
    #[arg(long, default_value = "poll", value_parser = workload_parser())]
    workload: Workload,
    /// Number of barriers to perform (alloc: GC barriers, two per cycle).
    #[arg(long, default_value_t = 1000)]
    barriers: u64,
    /// Run GC cycles (mark, gc_mark_done, gc_mark_termination) back to back meanwhile
    /// (synthetic workloads; nopoll needs a strategy with reaches-non-polling-ps and
    /// single-p-handshake).
    #[arg(long)]
    gc: bool,
    /// After the barriers, perform this many single-P handshakes, round robin over the Ps
    /// other than the requester's, and report the time to handshake (needs
    /// single-p-handshake).
    #[arg(long, default_value_t = 0)]
    handshakes: u64,
    #[command(flatten)]
    params: WorkloadArgs,
    #[command(flatten)]
    timeout: TimeoutArgs,
    #[command(flatten)]
    served: ServedPsArgs,
    #[command(flatten)]
    trace: TraceArgs,
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

#[derive(Args, Debug)]
struct SoakArgs {
    /// Barriers per P count.
    #[arg(long, default_value_t = 1_000_000)]
    barriers: u64,
    /// P counts, one soak each.
    #[arg(long, value_delimiter = ',', default_value = "4,8",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    procs: Vec<u32>,
    /// The strategies to swap through, starting with the first.
    #[arg(
        long,
        value_name = "SPEC,SPEC,...",
        value_delimiter = ',',
        default_value = "polling,futex,signal"
    )]
    strategies: Vec<String>,
    /// How long each strategy stays active before the next is swapped in.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    swap_every: Duration,
    /// What the mutator goroutines do (a synthetic workload: the soak runs GC cycles).
    #[arg(long, default_value = "poll", value_parser = workload_parser())]
    workload: Workload,
    #[command(flatten)]
    timeout: TimeoutArgs,
    #[command(flatten)]
    served: ServedPsArgs,
    #[command(flatten)]
    path: PathArgs,
}

/// The knobs of the realistic workloads.
#[derive(Args, Debug)]
struct WorkloadArgs {
    /// alloc: the depth of the long-lived binary tree (the short-lived ones go from 4 up).
    #[arg(long, default_value_t = WorkloadParams::default().tree_depth,
          value_parser = clap::value_parser!(u32).range(4..=20))]
    tree_depth: u32,
    /// server: connection goroutines, one per connection.
    #[arg(long, default_value_t = WorkloadParams::default().connections as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections: u64,
    /// compute: multiply-adds between two polls of the strip-mined kernel.
    #[arg(long, default_value_t = WorkloadParams::default().strip_every as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    strip_every: u64,
}

impl WorkloadArgs {
    fn params(&self) -> WorkloadParams {
        WorkloadParams {
            tree_depth: self.tree_depth,
            connections: self.connections as usize,
            strip_every: self.strip_every as usize,
        }
    }
}

/// `--workload`'s values, each with its description, listed from [`Workload::ALL`].
/// `what [default: FULL; --quick: QUICK]`, read from the options `compare` starts from, so
/// that the help cannot drift from them.
fn compare_defaults(what: &str, value: impl Fn(&CompareOptions) -> String) -> String {
    let (full, quick) = (
        CompareOptions::full(Vec::new()),
        CompareOptions::quick(Vec::new()),
    );
    format!(
        "{what} [default: {}; --quick: {}]",
        value(&full),
        value(&quick)
    )
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn workload_parser() -> impl TypedValueParser<Value = Workload> {
    PossibleValuesParser::new(
        Workload::ALL.map(|w| PossibleValue::new(w.name()).help(w.description())),
    )
    .map(|name| {
        name.parse::<Workload>()
            .expect("every listed name is a workload")
    })
}

fn parse_served_ps(s: &str) -> Result<ServedPs, String> {
    s.parse()
}

/// Parses `10s`, `500ms`, `100us`, `2m` (see `safepoint_kit::config::parse_duration`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    safepoint_kit::config::parse_duration(s).ok_or_else(|| {
        if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            format!("`{s}` has no unit; write e.g. 10s, 500ms or 100us")
        } else {
            format!(
                "`{s}` is not a duration; write a number and a unit (ns, us, ms, s, m), e.g. 500ms"
            )
        }
    })
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
        Command::Compare(args) => compare(&args),
        Command::List(args) => list(&args),
        Command::Run(args) => run(&args),
        Command::Soak(args) => soak(&args),
        Command::Demo(Demo::Deadlock(args)) => deadlock(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted it has.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Errors of the write ignored: a closed stderr must not panic.
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "safepoint: error: {e}");
            if cli.verbose
                && let Some(details) = e.downcast_ref::<LoadError>().and_then(LoadError::details)
            {
                let _ = writeln!(stderr, "\n{details}");
            }
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn compare(args: &CompareArgs) -> CliResult {
    let strategies: Vec<(Plugin, String)> = if args.strategies.is_empty() {
        let (found, failed) =
            plugin::discover_strategies(&args.path.search(), &args.path.options());
        for (path, e) in failed {
            let _ = writeln!(
                std::io::stderr(),
                "safepoint: skipping {}: {e}",
                path.display()
            );
        }
        found.into_iter().map(|p| (p, String::new())).collect()
    } else {
        args.strategies
            .iter()
            .map(|spec| load_strategy(spec, &args.path))
            .collect::<Result<_, _>>()?
    };
    if strategies.is_empty() {
        return Err(
            "no strategies to compare; build them with `cargo build --release --workspace`".into(),
        );
    }
    let mut options = if args.quick {
        CompareOptions::quick(strategies)
    } else {
        CompareOptions::full(strategies)
    };
    if !args.procs.is_empty() {
        options.procs = args.procs.iter().map(|p| *p as usize).collect();
    }
    if !args.workloads.is_empty() {
        options.workloads.clone_from(&args.workloads);
    }
    options.barriers = args.barriers.unwrap_or(options.barriers);
    options.duration = args.duration.unwrap_or(options.duration);
    options.served_ps = args.served.served_ps;
    options.params = args.params.params();
    options.traced = args.traced;
    let progress =
        ProgressBar::with_draw_target(Some(options.steps()), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
            .expect("a valid progress template"),
    );
    let comparison = compare::compare(&options, |label| {
        progress.set_message(label.to_owned());
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    // Not `print!`, which panics on a closed pipe (`| head`).
    write!(std::io::stdout().lock(), "{}", comparison.table())?;
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = &args.json {
        write(path, comparison.json())?;
    }
    if let Some(path) = &args.csv {
        write(path, comparison.csv())?;
    }
    if let Some(path) = &args.svg {
        compare::write_svg(&comparison, path)?;
    }
    Ok(())
}

fn list(args: &ListArgs) -> CliResult {
    let search = args.path.search();
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
        match plugin::load_path_with(&path, &args.path.options()) {
            Ok(p) => writeln!(
                std::io::stdout().lock(),
                "{:<12} {}\n             ABI {}, capabilities: {}\n             {}\n             loads: yes",
                p.name(),
                path.display(),
                p.abi_version(),
                p.capabilities(),
                p.description()
            ),
            Err(e) => writeln!(
                std::io::stdout().lock(),
                "{:<12} {}\n             loads: no: {e}",
                plugin::name_of_file(&path).unwrap_or("?"),
                path.display()
            ),
        }?;
    }
    Ok(())
}

/// Loads the strategy `spec` (`NAME` or `PATH`, then `@sha256:HEX` and `:CONFIG`, both
/// optional).
fn load_strategy(spec: &str, path: &PathArgs) -> Result<(Plugin, String), LoadError> {
    let spec: StrategySpec = spec.parse()?;
    let options = LoadOptions {
        sha256: spec.sha256,
        ..path.options()
    };
    let plugin = plugin::load_with(&spec.target, &path.search(), &options)?;
    Ok((plugin, spec.config))
}

/// Starts a runtime with a strategy loaded by [`load_strategy`].
fn start_runtime(
    (plugin, config): &(Plugin, String),
    procs: u32,
    (timeout, on_timeout): (Option<Duration>, OnTimeout),
    served: &ServedPsArgs,
    trace: &TraceArgs,
) -> Result<Runtime, Box<dyn std::error::Error>> {
    let mut builder = Runtime::builder()
        .procs(procs as usize)
        .safepoint_timeout(timeout, on_timeout)
        .served_ps(served.served_ps);
    if trace.on() {
        builder = builder.trace(safepoint_host::trace::DEFAULT_CAPACITY);
    }
    Ok(builder.build(plugin, config)?)
}

fn run(args: &RunArgs) -> CliResult {
    let timeout = args
        .timeout
        .or(Duration::from_secs(10), TimeoutAction::Report);
    let rotation = if args.strategies.is_empty() {
        if args.swap_every.is_some() {
            return Err(
                "--swap-every needs --strategies A,B,...: the strategies to swap through".into(),
            );
        }
        None
    } else {
        let strategies = args
            .strategies
            .iter()
            .map(|spec| load_strategy(spec, &args.path))
            .collect::<Result<Vec<_>, _>>()?;
        Some(Rotation {
            strategies,
            every: args.swap_every.unwrap_or(Duration::from_millis(10)),
        })
    };
    let first = match (&args.strategy, &rotation) {
        (Some(spec), _) => load_strategy(spec, &args.path)?,
        (None, Some(rotation)) => rotation.strategies[0].clone(),
        (None, None) => unreachable!("clap requires --strategy or --strategies"),
    };
    let rt = start_runtime(&first, args.procs, timeout, &args.served, &args.trace)?;
    let options = RunOptions {
        gc: args.gc,
        handshakes: args.handshakes,
        rotation,
        params: args.params.params(),
        ..RunOptions::new(args.workload, args.barriers)
    };
    // The trace is written even when the run failed: it shows where.
    let summary =
        workloads::run(&rt, &options).map_err(|e| with_strategies_that_can(e, &args.path));
    args.trace.write(&rt)?;
    let summary = summary?;
    rt.shutdown();
    write!(std::io::stdout().lock(), "{summary}")?;
    Ok(())
}

fn soak(args: &SoakArgs) -> CliResult {
    if let Some(arenas) = workloads::cap_malloc_arenas() {
        // Not `eprintln!`: it panics when stderr is closed (`2>&1 | head -1`).
        let _ = writeln!(
            std::io::stderr(),
            "soak: malloc arenas capped at {arenas} (set MALLOC_ARENA_MAX to choose)"
        );
    }
    let timeout = args
        .timeout
        .or(Duration::from_secs(10), TimeoutAction::Report);
    let strategies = args
        .strategies
        .iter()
        .map(|spec| load_strategy(spec, &args.path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed = Vec::new();
    for &procs in &args.procs {
        let rt = start_runtime(
            &strategies[0],
            procs,
            timeout,
            &args.served,
            &TraceArgs::default(),
        )?;
        let options = RunOptions {
            gc: true,
            rotation: Some(Rotation {
                strategies: strategies.clone(),
                every: args.swap_every,
            }),
            ..RunOptions::new(args.workload, args.barriers)
        };
        let report = workloads::soak(&rt, &options, Duration::from_secs(10), std::io::stderr())
            .map_err(|e| with_strategies_that_can(e, &args.path))?;
        rt.shutdown();
        write!(std::io::stdout().lock(), "{report}")?;
        if !report.memory_flat() {
            failed.push(procs);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the resident set grew past twice its start plus {} MiB at {failed:?} Ps",
            workloads::RSS_SLACK_KIB / 1024
        )
        .into())
    }
}

/// A refusal for a missing capability, with the strategies on the plugin path that have it.
fn with_strategies_that_can(error: RunError, path: &PathArgs) -> Box<dyn std::error::Error> {
    let Some(needs) = error.needs() else {
        return error.into();
    };
    let able: Vec<String> = plugin::discover_strategies(&path.search(), &path.options())
        .0
        .iter()
        .filter(|p| p.capabilities().contains(needs))
        .map(|p| p.name().to_owned())
        .collect();
    if able.is_empty() {
        format!("{error}; no plugin on the search path has {needs}").into()
    } else {
        format!("{error}; on the search path, {needs}: {}", able.join(", ")).into()
    }
}

fn deadlock(args: &DeadlockArgs) -> CliResult {
    let timeout = args
        .timeout
        .or(Duration::from_secs(2), TimeoutAction::Abort);
    let rt = start_runtime(
        &load_strategy(&args.strategy, &args.path)?,
        args.procs,
        timeout,
        &args.served,
        &args.trace,
    )?;
    let mode = if args.unchecked {
        let _ = writeln!(
            std::io::stderr(),
            "deadlock demo: calling for_each_p_unchecked while a mark worker waits in suspend_g \
             for the caller; expect the safepoint timeout to report in {:.1}s",
            timeout.0.unwrap_or_default().as_secs_f64()
        );
        DeadlockMode::Unchecked
    } else {
        DeadlockMode::Safe
    };
    let completed = gc::demo_deadlock(&rt, mode, args.iterations)?;
    let entry = if args.unchecked {
        "for_each_p_unchecked"
    } else {
        "for_each_p"
    };
    writeln!(
        std::io::stdout().lock(),
        "deadlock demo: {completed} barriers through {entry} completed while a mark worker \
         scanned the caller (strategy {}, {} Ps)",
        rt.strategy_name(),
        rt.procs()
    )?;
    args.trace.write(&rt)?;
    rt.shutdown();
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
        assert!(
            parse_duration("10h")
                .unwrap_err()
                .contains("is not a duration")
        );
    }
}
