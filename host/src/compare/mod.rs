//! `safepoint compare`: every strategy, under every workload, at every P count, side by side
//! with the hardware floor of its mechanism, in one run.
//!
//! For each (P count, workload) the mutators first run alone, for the mutator throughput
//! without barriers. Then each strategy runs the same workload with barriers back to back
//! for the same time (or until its barrier count), and the row reports its barrier times,
//! their ratio to the floor, the requester's CPU per barrier, how much the mutators slowed
//! down, and the signals and EINTRs it caused, and, for the realistic workloads, what the
//! workload measured of itself (allocation rate and GC cycles, request latency with and
//! without barriers, poll overhead). A strategy that cannot run a workload gets a row saying
//! why instead.
//!
//! Under the synthetic workloads at 2 Ps or more, each strategy with `single-p-handshake`
//! also runs the workload with single-P handshakes instead of barriers, round robin over the
//! other Ps: the row gains their times, beside its full barrier's, and the ratio to the
//! signal floor (a handshake to a running P costs at best one signal round trip).

mod machine;
#[cfg(feature = "svg")]
mod svg;

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::floor::Floor;
use crate::plugin::{LoadError, Plugin};
use crate::runtime::Runtime;
use crate::safepoint::ServedPs;
use crate::workloads::{
    self, RunError, RunOptions, RunSummary, Workload, WorkloadMetric, WorkloadParams,
};
use safepoint_abi::Capabilities;

pub use machine::Machine;
#[cfg(feature = "svg")]
pub use svg::write_svg;

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The strategies, each with its config.
    pub strategies: Vec<(Plugin, String)>,
    /// P counts.
    pub procs: Vec<usize>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Barriers per row, at most.
    pub barriers: u64,
    /// Time per row, at most; also the length of each baseline.
    pub duration: Duration,
    /// Samples per floor.
    pub floor_samples: u64,
    /// What a served P does while its barrier is still in flight.
    pub served_ps: ServedPs,
    /// The knobs of the realistic workloads.
    pub params: WorkloadParams,
    /// Run every measured row again with barrier tracing on, for the time to safepoint per
    /// P and per wait reason, and for what tracing costs ([`Measurement::traced`]).
    pub traced: bool,
}

impl CompareOptions {
    /// The default matrix: about a minute on a 2-core machine.
    pub fn full(strategies: Vec<(Plugin, String)>) -> CompareOptions {
        CompareOptions {
            strategies,
            procs: vec![1, 2, 4, 8, 16],
            workloads: Workload::ALL.to_vec(),
            barriers: 5000,
            duration: Duration::from_millis(500),
            floor_samples: 5000,
            served_ps: ServedPs::default(),
            params: WorkloadParams::default(),
            traced: false,
        }
    }

    /// `--quick`: about ten seconds.
    pub fn quick(strategies: Vec<(Plugin, String)>) -> CompareOptions {
        CompareOptions {
            procs: vec![1, 2, 4],
            workloads: vec![Workload::Poll, Workload::Mixed, Workload::NoPoll],
            barriers: 500,
            duration: Duration::from_millis(150),
            floor_samples: 500,
            ..CompareOptions::full(strategies)
        }
    }

    /// How many steps [`compare`] reports to its progress callback.
    pub fn steps(&self) -> u64 {
        let cells = (self.procs.len() * self.workloads.len()) as u64;
        let mut handshake_runs = 0;
        for &procs in &self.procs {
            for &workload in &self.workloads {
                handshake_runs += self
                    .strategies
                    .iter()
                    .filter(|(plugin, _)| handshakes_under(plugin, procs, workload))
                    .count() as u64;
            }
        }
        let runs_per_strategy = if self.traced { 2 } else { 1 };
        Floor::ALL.len() as u64
            + cells * (1 + runs_per_strategy * self.strategies.len() as u64)
            + handshake_runs
    }
}

/// Whether `compare` measures `plugin`'s handshakes under `workload` at `procs` Ps.
fn handshakes_under(plugin: &Plugin, procs: usize, workload: Workload) -> bool {
    let has = plugin.capabilities();
    procs >= 2
        && Workload::SYNTHETIC.contains(&workload)
        && has.contains(workload.needs())
        && has.contains(Capabilities::SINGLE_P_HANDSHAKE)
}

/// A floor, measured in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct FloorResult {
    /// Which primitive.
    pub floor: String,
    /// Its round trip.
    #[serde(flatten)]
    pub time: Quantiles,
}

/// The quantiles every figure of a comparison quotes, in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Slowest.
    pub max_ns: u64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        Quantiles {
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
        }
    }
}

/// One row: a strategy, a P count and a workload.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The strategy's name.
    pub strategy: String,
    /// Ps.
    pub procs: usize,
    /// The workload.
    pub workload: String,
    /// The floor this strategy is compared with.
    pub floor: String,
    /// The figures, or why there are none.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The same workload with single-P handshakes instead of barriers, where measured.
    pub handshake: Option<HandshakeOutcome>,
}

/// Single-P handshakes under a row's workload, round robin over the other Ps.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HandshakeOutcome {
    /// The handshakes ran.
    Measured(HandshakeFigures),
    /// The run failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// What the handshakes of a row took.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeFigures {
    /// Handshakes done.
    pub handshakes: u64,
    /// The time to handshake.
    #[serde(flatten)]
    pub time: Quantiles,
    /// Handshakes whose P's own M ran `f` (the others: the requester, on its behalf).
    pub by_itself: u64,
    /// p50 over the signal floor's p50.
    pub p50_over_signal_floor: f64,
}

/// What a strategy did under one workload at one P count.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Barriers done.
    pub barriers: u64,
    /// The barrier time.
    #[serde(flatten)]
    pub time: Quantiles,
    /// p50 over the floor's p50.
    pub p50_over_floor: f64,
    /// Requester CPU time per barrier, nanoseconds.
    pub requester_cpu_ns: u64,
    /// Mutator throughput lost against the same workload without barriers, in percent
    /// (negative: noise in its favour).
    pub mutator_slowdown_pct: f64,
    /// Signals the strategy sent, if it counts them.
    pub signals_sent: Option<u64>,
    /// Blocking calls a signal interrupted.
    pub eintrs: u64,
    /// Served Ps whose M waited for the barrier to end, per barrier (the served-P policy).
    pub served_waits_per_barrier: f64,
    /// What a realistic workload measured of itself.
    pub metric: Option<WorkloadFigures>,
    /// The same row run again with barrier tracing on (`--traced`).
    pub traced: Option<TracedFigures>,
}

/// A row run again with barrier tracing on.
#[derive(Clone, Debug, Serialize)]
pub struct TracedFigures {
    /// Median barrier time with tracing on, nanoseconds.
    pub p50_ns: u64,
    /// That over the untraced row's median: what tracing costs.
    pub p50_over_untraced: f64,
    /// Trace events lost to full rings (the figures below then miss the oldest barriers).
    pub dropped_events: u64,
    /// Time from each barrier's begin until `f` began for each P, by P.
    pub time_to_safepoint_per_p: Vec<TimeToSafepointFigures>,
    /// Time from each barrier's begin until the last P was reached, by wait reason.
    pub time_to_safepoint_per_reason: Vec<TimeToSafepointFigures>,
}

/// Quantiles of a time to safepoint.
#[derive(Clone, Debug, Serialize)]
pub struct TimeToSafepointFigures {
    /// `P0`, ..., or the wait reason.
    pub of: String,
    /// Barriers measured.
    pub barriers: u64,
    /// The time to safepoint.
    #[serde(flatten)]
    pub time: Quantiles,
}

impl TimeToSafepointFigures {
    fn of(of: String, h: &Histogram<u64>) -> TimeToSafepointFigures {
        TimeToSafepointFigures {
            of,
            barriers: h.len(),
            time: Quantiles::of(h),
        }
    }
}

impl TracedFigures {
    fn of(traced: &RunSummary, untraced_p50: u64) -> TracedFigures {
        let p50_ns = traced.latency.value_at_quantile(0.5);
        let ttsp = traced.time_to_safepoint.as_ref();
        TracedFigures {
            p50_ns,
            p50_over_untraced: p50_ns as f64 / untraced_p50.max(1) as f64,
            dropped_events: ttsp.map_or(0, |t| t.dropped),
            time_to_safepoint_per_p: ttsp.map_or_else(Vec::new, |t| {
                t.per_p
                    .iter()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(p, h)| TimeToSafepointFigures::of(p.to_string(), h))
                    .collect()
            }),
            time_to_safepoint_per_reason: ttsp.map_or_else(Vec::new, |t| {
                t.per_reason
                    .iter()
                    .map(|(r, h)| TimeToSafepointFigures::of(r.as_str().to_owned(), h))
                    .collect()
            }),
        }
    }
}

/// What a realistic workload measured of itself, beside the barrier times.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadFigures {
    /// `alloc`: the allocation rate and the GC cycles (whose barriers the row times).
    Alloc {
        /// Megabytes allocated per second.
        alloc_mb_per_s: f64,
        /// Objects allocated per second.
        allocs_per_s: f64,
        /// GC cycles, paced by allocation.
        gc_cycles: u64,
    },
    /// `server`: request latency with barriers back to back and without any.
    Server {
        /// Requests answered in the main phase.
        requests: u64,
        /// Median latency with barriers, nanoseconds.
        latency_p50_ns: u64,
        /// 99th percentile with barriers, nanoseconds.
        latency_p99_ns: u64,
        /// Median latency without barriers (the quiet phase), nanoseconds.
        quiet_latency_p50_ns: Option<u64>,
        /// 99th percentile without barriers, nanoseconds.
        quiet_latency_p99_ns: Option<u64>,
    },
    /// `compute`: the kernel's throughput without polls and the overhead of its polls,
    /// measured without barriers.
    Compute {
        /// Multiply-adds between two polls of the strip-mined build.
        strip_every: usize,
        /// The build without polls, millions of multiply-adds per second.
        kernel_mops: Option<f64>,
        /// Polling every iteration: time per multiply-add over the build without polls, %.
        poll_every_overhead_pct: Option<f64>,
        /// Strip-mined polls, the same, %.
        poll_strip_overhead_pct: Option<f64>,
    },
}

impl WorkloadFigures {
    fn of(metric: &WorkloadMetric, summary: &RunSummary) -> WorkloadFigures {
        match metric {
            WorkloadMetric::Alloc(alloc) => WorkloadFigures::Alloc {
                alloc_mb_per_s: alloc.bytes_per_sec() / 1e6,
                allocs_per_s: alloc.allocs_per_sec(),
                gc_cycles: summary.gc.as_ref().map_or(0, |gc| gc.cycles),
            },
            WorkloadMetric::Server(server) => WorkloadFigures::Server {
                requests: server.latency.len(),
                latency_p50_ns: server.latency.value_at_quantile(0.5),
                latency_p99_ns: server.latency.value_at_quantile(0.99),
                quiet_latency_p50_ns: server
                    .quiet_latency
                    .as_ref()
                    .map(|h| h.value_at_quantile(0.5)),
                quiet_latency_p99_ns: server
                    .quiet_latency
                    .as_ref()
                    .map(|h| h.value_at_quantile(0.99)),
            },
            WorkloadMetric::Compute(compute) => {
                let overhead = compute.poll_overhead_pct();
                WorkloadFigures::Compute {
                    strip_every: compute.strip_every,
                    kernel_mops: compute.quiet.as_ref().map(|q| q.none.mops()),
                    poll_every_overhead_pct: overhead.map(|(every, _)| every),
                    poll_strip_overhead_pct: overhead.map(|(_, strip)| strip),
                }
            }
        }
    }

    /// The table's last column.
    fn short(&self) -> String {
        let or_dash = |v: Option<u64>| v.map_or("-".to_owned(), human_ns);
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |p| format!("{p:+.1}%"));
        match self {
            WorkloadFigures::Alloc {
                alloc_mb_per_s,
                gc_cycles,
                ..
            } => format!("alloc {alloc_mb_per_s:.0} MB/s, {gc_cycles} GC cycles"),
            WorkloadFigures::Server {
                latency_p50_ns,
                latency_p99_ns,
                quiet_latency_p50_ns,
                quiet_latency_p99_ns,
                ..
            } => format!(
                "request p50 {} p99 {} (no barriers: {} / {})",
                human_ns(*latency_p50_ns),
                human_ns(*latency_p99_ns),
                or_dash(*quiet_latency_p50_ns),
                or_dash(*quiet_latency_p99_ns)
            ),
            WorkloadFigures::Compute {
                strip_every,
                poll_every_overhead_pct,
                poll_strip_overhead_pct,
                ..
            } => format!(
                "polls every iteration {}, every {strip_every} {}",
                pct(*poll_every_overhead_pct),
                pct(*poll_strip_overhead_pct)
            ),
        }
    }

    /// The CSV cells under [`METRIC_COLUMNS`]: the fields of the same names (fractions to
    /// three decimals), empty where the workload has none.
    fn csv_cells(figures: Option<&WorkloadFigures>) -> Vec<String> {
        let fields = figures.map(|f| serde_json::to_value(f).expect("figures serialise"));
        METRIC_COLUMNS
            .iter()
            .map(
                |column| match fields.as_ref().and_then(|fields| fields.get(column)) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(value) => match value.as_u64() {
                        Some(integer) => integer.to_string(),
                        None => format!("{:.3}", value.as_f64().unwrap_or(f64::NAN)),
                    },
                },
            )
            .collect()
    }
}

/// The CSV columns of a measured row, before the workload's own.
const MEASURED_COLUMNS: [&str; 9] = [
    "barriers",
    "p50_ns",
    "p99_ns",
    "max_ns",
    "p50_over_floor",
    "requester_cpu_ns",
    "mutator_slowdown_pct",
    "signals_sent",
    "eintrs",
];

/// The CSV columns of a row's [`HandshakeFigures`], its fields prefixed `handshake_`.
const HANDSHAKE_COLUMNS: [&str; 6] = [
    "handshakes",
    "handshake_p50_ns",
    "handshake_p99_ns",
    "handshake_max_ns",
    "handshake_by_itself",
    "handshake_p50_over_signal_floor",
];

/// The CSV cells under [`HANDSHAKE_COLUMNS`]; empty where none were measured.
fn handshake_cells(handshake: Option<&HandshakeOutcome>) -> Vec<String> {
    match handshake {
        Some(HandshakeOutcome::Measured(h)) => vec![
            h.handshakes.to_string(),
            h.time.p50_ns.to_string(),
            h.time.p99_ns.to_string(),
            h.time.max_ns.to_string(),
            h.by_itself.to_string(),
            format!("{:.3}", h.p50_over_signal_floor),
        ],
        _ => vec![String::new(); HANDSHAKE_COLUMNS.len()],
    }
}

/// The CSV columns of [`WorkloadFigures`], named as its fields.
const METRIC_COLUMNS: [&str; 8] = [
    "alloc_mb_per_s",
    "gc_cycles",
    "latency_p50_ns",
    "latency_p99_ns",
    "quiet_latency_p50_ns",
    "quiet_latency_p99_ns",
    "poll_every_overhead_pct",
    "poll_strip_overhead_pct",
];

/// A row's figures.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The strategy ran the workload.
    Measured(Measurement),
    /// The strategy cannot run the workload.
    NotApplicable {
        /// Why.
        reason: String,
    },
    /// The run failed: a broken contract, a failed barrier.
    Failed {
        /// The error.
        error: String,
    },
}

/// A whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Where it ran.
    pub machine: Machine,
    /// The served-P policy of every run.
    pub served_ps: String,
    /// The floors.
    pub floors: Vec<FloorResult>,
    /// One row per strategy, P count and workload.
    pub rows: Vec<Row>,
}

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A runtime could not start.
    #[error(transparent)]
    Start(#[from] Box<LoadError>),
    /// A run failed (a barrier, the GC, a broken contract).
    #[error("{strategy}, {procs} Ps, workload {workload}: {error}")]
    Run {
        /// The strategy.
        strategy: String,
        /// Ps.
        procs: usize,
        /// The workload.
        workload: Workload,
        /// What failed.
        #[source]
        error: Box<RunError>,
    },
}

/// Runs the comparison; `step(label)` is called before each step, for progress.
pub fn compare(
    options: &CompareOptions,
    mut step: impl FnMut(&str),
) -> Result<Comparison, CompareError> {
    let mut floors = Vec::new();
    for floor in Floor::ALL {
        step(&format!("floor: {floor}"));
        let h = floor.histogram(options.floor_samples);
        floors.push(FloorResult {
            floor: floor.name().to_owned(),
            time: Quantiles::of(&h),
        });
    }
    let floor_p50 = |floor: Floor| {
        floors
            .iter()
            .find(|f| f.floor == floor.name())
            .map_or(1, |f| f.time.p50_ns.max(1))
    };
    let mut rows = Vec::new();
    for &procs in &options.procs {
        for &workload in &options.workloads {
            let (first, first_config) = &options.strategies[0];
            step(&format!("{procs} Ps, {workload}: mutators alone"));
            let baseline = run_one(first, first_config, procs, workload, (0, 0), options, false)?;
            for (plugin, config) in &options.strategies {
                step(&format!("{procs} Ps, {workload}: {}", plugin.name()));
                let floor = Floor::of(plugin.capabilities());
                let outcome = if plugin.capabilities().contains(workload.needs()) {
                    let barriers = options.barriers;
                    match run_one(
                        plugin,
                        config,
                        procs,
                        workload,
                        (barriers, 0),
                        options,
                        false,
                    ) {
                        Ok(summary) => {
                            let mut outcome = measured(&summary, &baseline, floor_p50(floor));
                            if options.traced
                                && let Outcome::Measured(m) = &mut outcome
                            {
                                step(&format!(
                                    "{procs} Ps, {workload}: {}, traced",
                                    plugin.name()
                                ));
                                match run_one(
                                    plugin,
                                    config,
                                    procs,
                                    workload,
                                    (barriers, 0),
                                    options,
                                    true,
                                ) {
                                    Ok(traced) => {
                                        m.traced = Some(TracedFigures::of(&traced, m.time.p50_ns));
                                    }
                                    Err(e) => {
                                        outcome = Outcome::Failed {
                                            error: format!("with tracing on: {e}"),
                                        };
                                    }
                                }
                            }
                            outcome
                        }
                        Err(e) => Outcome::Failed {
                            error: e.to_string(),
                        },
                    }
                } else {
                    Outcome::NotApplicable {
                        reason: format!(
                            "needs {}, which {} lacks",
                            workload.needs(),
                            plugin.name()
                        ),
                    }
                };
                let handshake = handshakes_under(plugin, procs, workload).then(|| {
                    step(&format!(
                        "{procs} Ps, {workload}: {} handshakes",
                        plugin.name()
                    ));
                    let signal_floor = floor_p50(Floor::Signal);
                    match run_handshakes(plugin, config, procs, workload, options) {
                        Ok(summary) => handshake_figures(&summary, signal_floor),
                        Err(e) => HandshakeOutcome::Failed {
                            error: e.to_string(),
                        },
                    }
                });
                rows.push(Row {
                    strategy: plugin.name().to_owned(),
                    procs,
                    workload: workload.name().to_owned(),
                    floor: floor.name().to_owned(),
                    outcome,
                    handshake,
                });
            }
        }
    }
    Ok(Comparison {
        machine: Machine::this_one(),
        served_ps: options.served_ps.name().to_owned(),
        floors,
        rows,
    })
}

fn run_one(
    plugin: &Plugin,
    config: &str,
    procs: usize,
    workload: Workload,
    (barriers, handshakes): (u64, u64),
    options: &CompareOptions,
    traced: bool,
) -> Result<RunSummary, CompareError> {
    let run_error = |error| CompareError::Run {
        strategy: plugin.name().to_owned(),
        procs,
        workload,
        error: Box::new(error),
    };
    let mut builder = Runtime::builder().procs(procs).served_ps(options.served_ps);
    if traced {
        builder = builder.trace(crate::trace::DEFAULT_CAPACITY);
    }
    let rt = builder.build(plugin, config).map_err(Box::new)?;
    let options = RunOptions {
        duration: Some(options.duration),
        params: options.params,
        handshakes,
        ..RunOptions::new(workload, barriers)
    };
    workloads::run(&rt, &options).map_err(run_error)
}

/// `workload` with `options.barriers` handshakes and no barrier, bounded by the row's time.
fn run_handshakes(
    plugin: &Plugin,
    config: &str,
    procs: usize,
    workload: Workload,
    options: &CompareOptions,
) -> Result<RunSummary, CompareError> {
    // A run of its own, so that the barrier row's mutator figures stay the barriers' own.
    run_one(
        plugin,
        config,
        procs,
        workload,
        (0, options.barriers),
        options,
        false,
    )
}

fn handshake_figures(summary: &RunSummary, signal_floor_p50: u64) -> HandshakeOutcome {
    let Some(handshakes) = &summary.handshakes else {
        return HandshakeOutcome::Failed {
            error: "the run performed no handshake".to_owned(),
        };
    };
    let h = &handshakes.latency;
    HandshakeOutcome::Measured(HandshakeFigures {
        handshakes: h.len(),
        time: Quantiles::of(h),
        by_itself: handshakes.by_itself,
        p50_over_signal_floor: h.value_at_quantile(0.5) as f64 / signal_floor_p50 as f64,
    })
}

fn measured(summary: &RunSummary, baseline: &RunSummary, floor_p50: u64) -> Outcome {
    let h = &summary.latency;
    let rate = |s: &RunSummary| s.work_units as f64 / s.elapsed.as_secs_f64().max(1e-9);
    let slowdown = if rate(baseline) > 0.0 {
        100.0 * (1.0 - rate(summary) / rate(baseline))
    } else {
        0.0
    };
    let barriers = h.len();
    Outcome::Measured(Measurement {
        barriers,
        time: Quantiles::of(h),
        p50_over_floor: h.value_at_quantile(0.5) as f64 / floor_p50 as f64,
        requester_cpu_ns: summary.requester_cpu.as_nanos() as u64 / barriers.max(1),
        mutator_slowdown_pct: slowdown,
        signals_sent: summary
            .counters
            .iter()
            .find(|(name, _)| name == "signals sent")
            .map(|(_, v)| *v),
        eintrs: summary.eintrs,
        served_waits_per_barrier: summary.served_ps.1.waits as f64 / barriers.max(1) as f64,
        metric: summary
            .metric
            .as_ref()
            .map(|metric| WorkloadFigures::of(metric, summary)),
        traced: None,
    })
}

/// Nanoseconds, in the unit that reads best.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// A ratio with the digits that matter: `0.004x`, `2.7x`, `45x`.
pub fn human_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else if ratio >= 0.1 {
        format!("{ratio:.1}x")
    } else {
        format!("{ratio:.3}x")
    }
}

impl Comparison {
    /// The table `safepoint compare` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.machine);
        let _ = writeln!(out, "served Ps: {}", self.served_ps);
        let _ = writeln!(out, "\nfloors (same run):");
        for f in &self.floors {
            let _ = writeln!(
                out,
                "  {:<24} p50 {:>9}  p99 {:>9}  max {:>9}",
                f.floor,
                human_ns(f.time.p50_ns),
                human_ns(f.time.p99_ns),
                human_ns(f.time.max_ns)
            );
        }
        let _ = writeln!(
            out,
            "\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8} {:>7}  workload metric",
            "strategy",
            "Ps",
            "workload",
            "p50",
            "p99",
            "max",
            "p50/floor",
            "req CPU",
            "slowdown",
            "signals",
            "EINTRs"
        );
        for row in &self.rows {
            let _ = write!(
                out,
                "{:<10} {:>3} {:<8} ",
                row.strategy, row.procs, row.workload
            );
            let _ = match &row.outcome {
                Outcome::Measured(m) => writeln!(
                    out,
                    "{:>9} {:>9} {:>9} {:>9} {:>10} {:>8.1}% {:>8} {:>7}{}",
                    human_ns(m.time.p50_ns),
                    human_ns(m.time.p99_ns),
                    human_ns(m.time.max_ns),
                    human_ratio(m.p50_over_floor),
                    human_ns(m.requester_cpu_ns),
                    m.mutator_slowdown_pct,
                    m.signals_sent.map_or("-".to_owned(), |s| s.to_string()),
                    m.eintrs,
                    m.metric
                        .as_ref()
                        .map_or(String::new(), |f| format!("  {}", f.short()))
                ),
                Outcome::NotApplicable { reason } => writeln!(out, "n/a: {reason}"),
                Outcome::Failed { error } => writeln!(out, "FAILED: {error}"),
            };
        }
        self.handshake_table(&mut out);
        self.traced_table(&mut out);
        out
    }

    /// The handshake section of the table: each row's handshakes beside its barrier p50.
    fn handshake_table(&self, out: &mut String) {
        let rows: Vec<(&Row, &HandshakeOutcome)> = self
            .rows
            .iter()
            .filter_map(|row| Some((row, row.handshake.as_ref()?)))
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nsingle-P handshakes, round robin over the other Ps, without barriers:\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>9} {:>11} {:>13} {:>10}",
            "strategy",
            "Ps",
            "workload",
            "p50",
            "p99",
            "max",
            "barrier p50",
            "p50/sig floor",
            "by itself"
        );
        for (row, handshake) in rows {
            let _ = write!(
                out,
                "{:<10} {:>3} {:<8} ",
                row.strategy, row.procs, row.workload
            );
            let barrier_p50 = match &row.outcome {
                Outcome::Measured(m) => human_ns(m.time.p50_ns),
                _ => "-".to_owned(),
            };
            let _ = match handshake {
                HandshakeOutcome::Measured(h) => writeln!(
                    out,
                    "{:>9} {:>9} {:>9} {:>11} {:>13} {:>10}",
                    human_ns(h.time.p50_ns),
                    human_ns(h.time.p99_ns),
                    human_ns(h.time.max_ns),
                    barrier_p50,
                    human_ratio(h.p50_over_signal_floor),
                    format!("{}/{}", h.by_itself, h.handshakes)
                ),
                HandshakeOutcome::Failed { error } => writeln!(out, "FAILED: {error}"),
            };
        }
    }

    /// With `--traced`: each row's barrier p50 with tracing off and on, and its time to
    /// safepoint by wait reason and by P.
    fn traced_table(&self, out: &mut String) {
        let traced: Vec<(&Row, &Measurement, &TracedFigures)> = self
            .rows
            .iter()
            .filter_map(|row| match &row.outcome {
                Outcome::Measured(m) => m.traced.as_ref().map(|t| (row, m, t)),
                _ => None,
            })
            .collect();
        if traced.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nwith tracing on (each row run again):\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>7}  time to safepoint p50 / p99",
            "strategy", "Ps", "workload", "p50 off", "p50 on", "on/off"
        );
        for (row, m, t) in traced {
            let each: Vec<String> = t
                .time_to_safepoint_per_reason
                .iter()
                .map(|r| {
                    format!(
                        "[{}] {} / {}",
                        r.of,
                        human_ns(r.time.p50_ns),
                        human_ns(r.time.p99_ns)
                    )
                })
                .chain(t.time_to_safepoint_per_p.iter().map(|p| {
                    format!(
                        "{} {} / {}",
                        p.of,
                        human_ns(p.time.p50_ns),
                        human_ns(p.time.p99_ns)
                    )
                }))
                .collect();
            let _ = writeln!(
                out,
                "{:<10} {:>3} {:<8} {:>9} {:>9} {:>7}  {}",
                row.strategy,
                row.procs,
                row.workload,
                human_ns(m.time.p50_ns),
                human_ns(t.p50_ns),
                human_ratio(t.p50_over_untraced),
                each.join(", ")
            );
        }
    }

    /// The same data as CSV, one row per table row, the machine and floors as comments.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# {}", self.machine);
        for f in &self.floors {
            let _ = writeln!(
                out,
                "# floor,{},{},{},{}",
                f.floor, f.time.p50_ns, f.time.p99_ns, f.time.max_ns
            );
        }
        let _ = writeln!(
            out,
            "strategy,procs,workload,floor,status,{},{},{},reason",
            MEASURED_COLUMNS.join(","),
            METRIC_COLUMNS.join(","),
            HANDSHAKE_COLUMNS.join(",")
        );
        for row in &self.rows {
            let (status, measured, metric, reason) = match &row.outcome {
                Outcome::Measured(m) => (
                    "measured",
                    vec![
                        m.barriers.to_string(),
                        m.time.p50_ns.to_string(),
                        m.time.p99_ns.to_string(),
                        m.time.max_ns.to_string(),
                        format!("{:.3}", m.p50_over_floor),
                        m.requester_cpu_ns.to_string(),
                        format!("{:.2}", m.mutator_slowdown_pct),
                        m.signals_sent.map_or(String::new(), |s| s.to_string()),
                        m.eintrs.to_string(),
                    ],
                    WorkloadFigures::csv_cells(m.metric.as_ref()),
                    String::new(),
                ),
                Outcome::NotApplicable { reason } => (
                    "not_applicable",
                    vec![String::new(); MEASURED_COLUMNS.len()],
                    WorkloadFigures::csv_cells(None),
                    format!("\"{}\"", reason.replace('"', "'")),
                ),
                Outcome::Failed { error } => (
                    "failed",
                    vec![String::new(); MEASURED_COLUMNS.len()],
                    WorkloadFigures::csv_cells(None),
                    format!("\"{}\"", error.replace('"', "'")),
                ),
            };
            let mut reason = reason;
            if let Some(HandshakeOutcome::Failed { error }) = &row.handshake {
                reason = format!("\"handshakes failed: {}\"", error.replace('"', "'"));
            }
            let _ = writeln!(
                out,
                "{},{},{},{},{status},{},{},{},{reason}",
                row.strategy,
                row.procs,
                row.workload,
                row.floor,
                measured.join(","),
                metric.join(","),
                handshake_cells(row.handshake.as_ref()).join(",")
            );
        }
        out
    }

    /// The same data as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison serialises")
    }
}
