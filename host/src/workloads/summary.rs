//! What a run reports: [`RunSummary`] and its parts, and how `safepoint run` prints it.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{AllocReport, ComputeReport, ServerReport, Workload};
use crate::runtime::WaitReason;
use crate::safepoint::{ServedPs, ServedPsStats};
use crate::trace::TimeToSafepoint;

/// The result of [`run`](super::run).
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The strategy's name.
    pub strategy: String,
    /// Ps.
    pub procs: usize,
    /// The workload.
    pub workload: Workload,
    /// Barriers completed: the requester's, or for `alloc` the GC's (two per cycle).
    pub barriers: u64,
    /// Barrier wall time, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requester CPU time over all barriers.
    pub requester_cpu: Duration,
    /// Ps whose own M ran `f`, over all barriers.
    pub by_themselves: u64,
    /// Ps the requester ran `f` for, over all barriers.
    pub by_requester: u64,
    /// Mutator work completed: units of [`work`](super::work) for the synthetic workloads, tree nodes for
    /// `alloc`, requests answered for `server`, kernel multiply-adds for `compute`.
    pub work_units: u64,
    /// The time over which `work_units` were counted: the mutators' whole run, or for
    /// `server` and `compute` the main phase.
    pub elapsed: Duration,
    /// Blocking calls of the mutators that a signal interrupted (EINTR).
    pub eintrs: u64,
    /// The strategy's counters at the end.
    pub counters: Vec<(String, u64)>,
    /// The served-P policy, and what it did during the run.
    pub served_ps: (ServedPs, ServedPsStats),
    /// What the GC did, with `--gc` or under `alloc`.
    pub gc: Option<GcSummary>,
    /// What a realistic workload measured of itself.
    pub metric: Option<WorkloadMetric>,
    /// Barrier times per strategy, when strategies rotate.
    pub by_strategy: Vec<(String, Histogram<u64>)>,
    /// What the swaps did, when strategies rotate.
    pub swaps: Option<SwapSummary>,
    /// The single-P handshakes, when the run performed some.
    pub handshakes: Option<HandshakeSummary>,
    /// Time to safepoint per P and per wait reason, when the runtime traces
    /// ([`crate::runtime::Builder::trace`]).
    pub time_to_safepoint: Option<TimeToSafepoint>,
}

/// The single-P handshakes of a run, round robin over the Ps other than the requester's.
#[derive(Clone, Debug)]
pub struct HandshakeSummary {
    /// Time to handshake (the strategy's `handshake`), nanoseconds.
    pub latency: Histogram<u64>,
    /// Handshakes whose P's own M ran `f` at its safe point; the others the requester ran
    /// on the P's behalf (parked, or stopped in a signal handler).
    pub by_itself: u64,
}

/// What a realistic workload measured of itself, beside the barrier times.
#[derive(Clone, Debug)]
pub enum WorkloadMetric {
    /// `alloc`: the allocation rate (the GC cycles are in [`RunSummary::gc`]).
    Alloc(AllocReport),
    /// `server`: request latency with and without barriers.
    Server(ServerReport),
    /// `compute`: kernel throughput and the overhead of its polls.
    Compute(ComputeReport),
}

/// The GC part of a [`RunSummary`].
#[derive(Clone, Debug)]
pub struct GcSummary {
    /// Cycles completed, each with its invariants checked.
    pub cycles: u64,
    /// Values the mutators recorded in write-barrier buffers.
    pub values_recorded: u64,
    /// Values that reached the mark queue (all of them, exactly once).
    pub values_marked: u64,
    /// `gc_mark_done` barriers (`GC mark termination`), nanoseconds.
    pub mark_done: Histogram<u64>,
    /// `gc_mark_termination` barriers (`flushing proc caches`), nanoseconds.
    pub mark_termination: Histogram<u64>,
    /// The most mark words the GC retained after any cycle ([`CycleReport::mark_words`](crate::gc::CycleReport::mark_words)).
    pub mark_words_peak: u64,
}

/// The swap part of a [`RunSummary`].
#[derive(Clone, Debug)]
pub struct SwapSummary {
    /// Swaps done.
    pub swaps: u64,
    /// Time of each whole swap, nanoseconds.
    pub took: Histogram<u64>,
    /// Time the world was held by each swap, nanoseconds.
    pub world_held: Histogram<u64>,
}

pub(crate) fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `p50 ... p99 ... max ...` of a histogram of nanoseconds, in µs.
pub(crate) fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
        micros(h.value_at_quantile(0.5)),
        micros(h.value_at_quantile(0.99)),
        micros(h.max())
    )
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "strategy {}, {} Ps, workload {}: {} barriers completed",
            self.strategy, self.procs, self.workload, self.barriers
        )?;
        // A run of handshakes alone has no barrier figures to show.
        if self.barriers > 0 || self.handshakes.is_none() {
            writeln!(f, "  barrier time     {}", quantiles(&self.latency))?;
            let per_barrier = self.requester_cpu.as_nanos() as u64 / self.barriers.max(1);
            writeln!(
                f,
                "  requester CPU    {:.1} µs per barrier",
                micros(per_barrier)
            )?;
            writeln!(
                f,
                "  Ps reached       {} by themselves at a safe point, {} by the requester on their behalf, {} own",
                self.by_themselves, self.by_requester, self.barriers
            )?;
        }
        if let Some(ttsp) = &self.time_to_safepoint {
            write!(f, "{ttsp}")?;
        }
        if let Some(handshakes) = &self.handshakes {
            let n = handshakes.latency.len();
            writeln!(f, "  handshake time   {}", quantiles(&handshakes.latency))?;
            writeln!(
                f,
                "  handshakes       {n} over the other Ps: {} by the P itself at a safe point, {} by the requester on its behalf",
                handshakes.by_itself,
                n - handshakes.by_itself
            )?;
        }
        match &self.metric {
            Some(WorkloadMetric::Alloc(alloc)) => write!(f, "{alloc}")?,
            Some(WorkloadMetric::Server(server)) => write!(f, "{server}")?,
            Some(WorkloadMetric::Compute(compute)) => write!(f, "{compute}")?,
            None => writeln!(
                f,
                "  mutator work     {} units in {:.2} s, {} blocking calls interrupted (EINTR)",
                self.work_units,
                self.elapsed.as_secs_f64(),
                self.eintrs
            )?,
        }
        if let Some(swaps) = &self.swaps {
            writeln!(
                f,
                "  swaps            {} done, took p50 {:.1} µs p99 {:.1} µs, world held p50 {:.1} µs p99 {:.1} µs",
                swaps.swaps,
                micros(swaps.took.value_at_quantile(0.5)),
                micros(swaps.took.value_at_quantile(0.99)),
                micros(swaps.world_held.value_at_quantile(0.5)),
                micros(swaps.world_held.value_at_quantile(0.99)),
            )?;
            for (name, h) in &self.by_strategy {
                writeln!(f, "    {name:<20} {} barriers, {}", h.len(), quantiles(h))?;
            }
        }
        if let Some(gc) = &self.gc {
            let paced = if self.workload == Workload::Alloc {
                " paced by allocation"
            } else {
                ""
            };
            writeln!(
                f,
                "  GC               {} cycles{paced}, {} values recorded, {} marked (each once)",
                gc.cycles, gc.values_recorded, gc.values_marked
            )?;
            for (reason, h) in [
                (WaitReason::GcMarkTermination, &gc.mark_done),
                (WaitReason::FlushProcCaches, &gc.mark_termination),
            ] {
                writeln!(
                    f,
                    "    [{reason}]{:pad$} {}",
                    "",
                    quantiles(h),
                    pad = 22usize.saturating_sub(reason.as_str().len()),
                )?;
            }
        }
        let (policy, served) = self.served_ps;
        writeln!(
            f,
            "  served Ps        policy {policy}: {} waits until the barrier ended ({} left early for a stack scan), {} yields",
            served.waits, served.left_early, served.yields
        )?;
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        writeln!(f, "  strategy         {}", counters.join(", "))
    }
}

/// A histogram of nanoseconds from 1 ns to one minute, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}
