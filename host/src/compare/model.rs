//! The results of a comparison: floors, rows, and what each row measured.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plugin::LoadError;
use crate::workloads::{RunError, RunSummary, Workload, WorkloadMetric};

use super::{METRIC_COLUMNS, Machine, human_ns};

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
    pub(crate) fn of(h: &Histogram<u64>) -> Quantiles {
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
    pub(crate) fn of(of: String, h: &Histogram<u64>) -> TimeToSafepointFigures {
        TimeToSafepointFigures {
            of,
            barriers: h.len(),
            time: Quantiles::of(h),
        }
    }
}

impl TracedFigures {
    pub(crate) fn of(traced: &RunSummary, untraced_p50: u64) -> TracedFigures {
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
    pub(crate) fn of(metric: &WorkloadMetric, summary: &RunSummary) -> WorkloadFigures {
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
    pub(crate) fn short(&self) -> String {
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
    pub(crate) fn csv_cells(figures: Option<&WorkloadFigures>) -> Vec<String> {
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
