//! The workloads `safepoint run` and `safepoint compare` drive barriers against, the driver,
//! and the run summary.
//!
//! Five synthetic workloads (`poll`, `idle`, `syscall`, `mixed`, `nopoll`) run one loop on
//! every P but the requester's; three realistic ones have the shapes runtime engineers judge
//! a safe-point mechanism on: `alloc` (binary-trees under a paced GC), `server` (a goroutine
//! server over real sockets) and `compute` (a numeric kernel with compiler-style polls).
//! Each workload is a file of this module.
//!
//! The driver starts the workload's goroutines, then one requester goroutine runs the **main
//! phase**: `barriers` barriers back to back (`for_each_p(GcMarkTermination, ...)`; under
//! `server`, one every 200 µs), or for `alloc` the GC cycles that its pacer triggers (each
//! with both `forEachP` call sites), or, with no barriers, nothing for `duration` (a
//! baseline). A workload that measures something
//! without barriers (`server`'s latency, `compute`'s poll overhead) then gets a **quiet
//! phase** of the same length, with no barrier at all. Then the workload stops, every one of
//! its goroutines ends, and it checks its invariants.
//!
//! With `gc`, the synthetic mutators also record values, allocate and change their roots, and
//! a GC goroutine runs collection cycles back to back meanwhile (see [`crate::gc`]).

mod alloc;
mod compute;
mod idle;
mod mixed;
mod mutators;
mod nopoll;
mod poll;
mod server;
mod soak;
mod syscall;

use crate::trace::TimeToSafepoint;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use safepoint_abi::{Capabilities, PId};

use crate::gc::{CycleReport, Gc, GcError};
use crate::plugin::Plugin;
use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, WaitGroup, WaitReason};
use crate::runtime::{SwapError, swap};
use crate::safepoint::{self, BarrierError, BarrierReport, ServedPs, ServedPsStats};

pub use alloc::{AllocError, AllocReport};
pub use compute::{ComputeError, ComputeReport, KernelRate, Matmul, Polls};
pub use mutators::{MutatorReport, Mutators};
pub use server::{ServerError, ServerReport};
pub use soak::{MALLOC_ARENAS, RSS_SLACK_KIB, SoakReport, cap_malloc_arenas, soak};

/// What the mutators do while barriers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every other P runs a goroutine that computes and polls in a loop.
    Poll,
    /// Half of the other Ps poll; the rest are idle.
    Idle,
    /// Every other P runs a goroutine that is mostly inside `blocking` (a real `nanosleep`).
    Syscall,
    /// All of these at once: polling, blocking, and sleeping goroutines (idle Ps).
    Mixed,
    /// Every other P runs a goroutine that computes in a loop and never polls: only a
    /// strategy that reaches Ps that never poll (asynchronous preemption) can run it.
    NoPoll,
    /// Binary-trees allocating through the GC's per-P caches, with write barriers, under GC
    /// cycles paced by allocation volume (Go's pacer).
    Alloc,
    /// Thousands of goroutines serving requests over channels and real sockets.
    Server,
    /// A matrix multiply that polls at loop back-edges, every iteration or strip-mined.
    Compute,
}

impl Workload {
    /// Every workload, in the order the CLI lists them.
    pub const ALL: [Workload; 8] = [
        Workload::Poll,
        Workload::Idle,
        Workload::Syscall,
        Workload::Mixed,
        Workload::NoPoll,
        Workload::Alloc,
        Workload::Server,
        Workload::Compute,
    ];

    /// The synthetic workloads: one loop per P, which [`Mutators`] can start on their own.
    pub const SYNTHETIC: [Workload; 5] = [
        Workload::Poll,
        Workload::Idle,
        Workload::Syscall,
        Workload::Mixed,
        Workload::NoPoll,
    ];

    /// The name `--workload` takes.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Poll => "poll",
            Workload::Idle => "idle",
            Workload::Syscall => "syscall",
            Workload::Mixed => "mixed",
            Workload::NoPoll => "nopoll",
            Workload::Alloc => "alloc",
            Workload::Server => "server",
            Workload::Compute => "compute",
        }
    }

    /// One line on what its goroutines do and what it reports, for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Workload::Poll => poll::DESCRIPTION,
            Workload::Idle => idle::DESCRIPTION,
            Workload::Syscall => syscall::DESCRIPTION,
            Workload::Mixed => mixed::DESCRIPTION,
            Workload::NoPoll => nopoll::DESCRIPTION,
            Workload::Alloc => alloc::DESCRIPTION,
            Workload::Server => server::DESCRIPTION,
            Workload::Compute => compute::DESCRIPTION,
        }
    }

    /// What a strategy must be able to do to run this workload.
    pub fn needs(self) -> Capabilities {
        match self {
            Workload::NoPoll => Capabilities::REACHES_NON_POLLING_PS,
            _ => Capabilities::NONE,
        }
    }

    /// What a strategy must be able to do for `--gc` beside this workload: under `nopoll`,
    /// the GC's `suspend_g` reaches a goroutine that never polls only through a single-P
    /// handshake that stops its P wherever it computes.
    pub fn gc_needs(self) -> Capabilities {
        match self {
            Workload::NoPoll => {
                Capabilities::REACHES_NON_POLLING_PS.union(Capabilities::SINGLE_P_HANDSHAKE)
            }
            _ => Capabilities::NONE,
        }
    }

    /// Whether a run with barriers ends with a quiet phase, without any, in which the
    /// workload measures itself (`server`'s latency, `compute`'s poll overhead).
    pub fn has_quiet_phase(self) -> bool {
        matches!(self, Workload::Server | Workload::Compute)
    }

    /// How long the requester waits between two barriers of the main phase: none (back to
    /// back), except under `server`, whose barriers arrive as a GC's would while requests
    /// are in flight.
    pub fn barrier_interval(self) -> Option<Duration> {
        match self {
            Workload::Server => Some(server::BARRIER_INTERVAL),
            _ => None,
        }
    }

    /// Why `--gc` (GC cycles back to back beside the barriers) cannot run with it, if it
    /// cannot.
    fn refuses_gc(self) -> Option<&'static str> {
        match self {
            Workload::Alloc => Some(
                "alloc runs its own GC, its cycles paced by allocation volume; run alloc \
                 without --gc",
            ),
            Workload::Server | Workload::Compute => Some(
                "its quiet phase measures it without barriers, which GC cycles would break; \
                 run it without --gc",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!(
                    "unknown workload `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The knobs of the realistic workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadParams {
    /// `alloc`: the depth of the long-lived binary tree; the short-lived ones go from depth 4
    /// up to it, as in the benchmarks game.
    pub tree_depth: u32,
    /// `server`: connection goroutines, one per connection.
    pub connections: usize,
    /// `compute`: multiply-adds between two polls of the strip-mined kernel.
    pub strip_every: usize,
}

impl Default for WorkloadParams {
    fn default() -> WorkloadParams {
        WorkloadParams {
            tree_depth: 12,
            connections: 10_000,
            // HotSpot's LoopStripMiningIter.
            strip_every: 1000,
        }
    }
}

/// Iterations of the mutator's unit of work between polls: about 50-200 ns on current
/// x86-64 cores, the density of Go's loop back-edges in allocation-heavy code.
pub const WORK_ITERATIONS: u32 = 96;

/// With `--gc`, a mutator records a value and allocates once every this many units of work.
pub const GC_RECORD_EVERY: u64 = 64;

/// The shortest quiet phase: enough kernel calls and requests for a median.
const QUIET_MIN: Duration = Duration::from_millis(100);

/// One unit of mutator work: a dependent chain of multiply-adds the compiler cannot remove.
#[inline]
pub fn work(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..WORK_ITERATIONS {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

/// The result of [`run`].
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
    /// Mutator work completed: units of [`work`] for the synthetic workloads, tree nodes for
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
    /// The most mark words the GC retained after any cycle ([`CycleReport::mark_words`]).
    pub mark_words_peak: u64,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The mutators' workload.
    pub workload: Workload,
    /// Barriers the requester performs (for `alloc`: the GC's barriers, two per cycle).
    pub barriers: u64,
    /// Stop the main phase after this long even if fewer barriers are done; with no
    /// barriers, the mutators run this long alone (a baseline for their throughput).
    pub duration: Option<Duration>,
    /// Run GC cycles back to back meanwhile.
    pub gc: bool,
    /// Swap strategies meanwhile.
    pub rotation: Option<Rotation>,
    /// Single-P handshakes the requester performs after its barriers, round robin over the
    /// other Ps (stopped, like the barriers, at `duration`).
    pub handshakes: u64,
    /// The knobs of the realistic workloads.
    pub params: WorkloadParams,
}

impl RunOptions {
    /// `barriers` barriers under `workload`, with the defaults for the rest.
    pub fn new(workload: Workload, barriers: u64) -> RunOptions {
        RunOptions {
            workload,
            barriers,
            duration: None,
            gc: false,
            rotation: None,
            handshakes: 0,
            params: WorkloadParams::default(),
        }
    }
}

/// Strategies to swap through while the workload runs.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// Each strategy with its config, in order; the runtime starts with the first, and the
    /// rotation goes on from the second.
    pub strategies: Vec<(Plugin, String)>,
    /// How long each stays active.
    pub every: Duration,
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

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A barrier failed.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// The GC found a broken invariant.
    #[error(transparent)]
    Gc(#[from] GcError),
    /// A swap failed.
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// The `alloc` workload found a broken invariant.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// The `server` workload failed or found a broken invariant.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The `compute` workload found a broken invariant.
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// The strategy cannot run the workload: it would never complete a barrier.
    #[error(
        "strategy {strategy} cannot run workload {workload}: it needs the capability {needs}, \
         which the strategy lacks (it has: {has}); pick a strategy that has it (see `safepoint list`)"
    )]
    Unsupported {
        /// The strategy.
        strategy: String,
        /// The workload.
        workload: Workload,
        /// What the workload needs.
        needs: Capabilities,
        /// What the strategy has.
        has: Capabilities,
    },
    /// The strategy cannot scan this workload's goroutines for `--gc`.
    #[error(
        "strategy {strategy} cannot run --gc with workload {workload}: the GC scans a \
         goroutine that never polls inside a single-P handshake that stops its P wherever it \
         computes, which needs the capabilities {needs}; {strategy} lacks {missing} (it has: \
         {has}); pick a strategy that has them (see `safepoint list`)"
    )]
    GcUnsupported {
        /// The strategy.
        strategy: String,
        /// The workload.
        workload: Workload,
        /// What the GC needs beside it.
        needs: Capabilities,
        /// What of that the strategy lacks.
        missing: Capabilities,
        /// What the strategy has.
        has: Capabilities,
    },
    /// The strategy has no single-P handshake.
    #[error(
        "strategy {strategy} cannot perform handshakes: it lacks the capability \
         single-p-handshake (it has: {has}); pick a strategy that has it (see `safepoint list`)"
    )]
    HandshakesUnsupported {
        /// The strategy.
        strategy: String,
        /// What it has.
        has: Capabilities,
    },
    /// `--gc` cannot run beside this workload.
    #[error("--gc cannot run with workload {workload}: {reason}")]
    GcRefused {
        /// The workload.
        workload: Workload,
        /// Why, and what to do.
        reason: &'static str,
    },
}

impl RunError {
    /// The capabilities a refused run needed, if it was refused for lacking some.
    pub fn needs(&self) -> Option<Capabilities> {
        match self {
            RunError::Unsupported { needs, .. } | RunError::GcUnsupported { needs, .. } => {
                Some(*needs)
            }
            RunError::HandshakesUnsupported { .. } => Some(Capabilities::SINGLE_P_HANDSHAKE),
            _ => None,
        }
    }
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `p50 ... p99 ... max ...` of a histogram of nanoseconds, in µs.
fn quantiles(h: &Histogram<u64>) -> String {
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

/// The driver's phase, which the realistic workloads read to file what they measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The workload's goroutines start; the requester has not begun: nothing is measured.
    Starting = 0,
    /// The requester performs its barriers (or, with none, the mutators run alone).
    Main = 1,
    /// No barrier at all: the workload measures itself.
    Quiet = 2,
}

/// The current [`Phase`], set by the requester, read by the workload's goroutines.
#[derive(Default)]
struct PhaseFlag(AtomicU8);

impl PhaseFlag {
    fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            1 => Phase::Main,
            2 => Phase::Quiet,
            _ => Phase::Starting,
        }
    }

    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }
}

/// How long each phase lasted.
#[derive(Clone, Copy, Debug)]
struct Phases {
    main: Duration,
    quiet: Option<Duration>,
}

/// What a stopped workload hands the driver.
struct WorkloadReport {
    work_units: u64,
    elapsed: Duration,
    eintrs: u64,
    gc: Option<GcSummary>,
    metric: Option<WorkloadMetric>,
}

/// A workload's goroutines, running until [`Running::stop`].
enum Running {
    Synthetic(Mutators),
    Alloc(alloc::Alloc),
    Server(server::Server),
    Compute(compute::Compute),
}

impl Running {
    fn start(
        rt: &Runtime,
        options: &RunOptions,
        gc: Option<&Arc<Gc>>,
        phase: &Arc<PhaseFlag>,
    ) -> Result<Running, RunError> {
        let params = &options.params;
        Ok(match options.workload {
            Workload::Alloc => Running::Alloc(alloc::Alloc::start(rt, params)),
            Workload::Server => Running::Server(server::Server::start(rt, params, phase)?),
            Workload::Compute => Running::Compute(compute::Compute::start(rt, params, phase)),
            synthetic => Running::Synthetic(Mutators::start_with_gc(rt, synthetic, gc)),
        })
    }

    /// Stops the goroutines, waits for every one to end, and checks the invariants.
    fn stop(
        self,
        rt: &Runtime,
        phases: Phases,
        gc: Option<GcSummary>,
    ) -> Result<WorkloadReport, RunError> {
        match self {
            Running::Synthetic(mutators) => {
                let report = mutators.stop();
                Ok(WorkloadReport {
                    work_units: report.work_units,
                    elapsed: report.elapsed,
                    eintrs: report.eintrs,
                    gc,
                    metric: None,
                })
            }
            Running::Alloc(alloc) => alloc.stop(rt, gc.unwrap_or_else(GcSummary::new)),
            Running::Server(server) => server.stop(phases),
            Running::Compute(compute) => compute.stop(phases),
        }
    }
}

/// The barriers of the main phase, added up.
struct BarrierTally {
    latency: Histogram<u64>,
    by_strategy: Vec<(String, Histogram<u64>)>,
    cpu: Duration,
    by_themselves: u64,
    by_requester: u64,
}

impl BarrierTally {
    fn new() -> BarrierTally {
        BarrierTally {
            latency: latency_histogram(),
            by_strategy: Vec::new(),
            cpu: Duration::ZERO,
            by_themselves: 0,
            by_requester: 0,
        }
    }

    /// Adds one barrier, and to the times of `strategy` if it is known.
    fn add(&mut self, strategy: Option<String>, report: &BarrierReport) {
        let nanos = report.duration.as_nanos() as u64;
        self.latency.saturating_record(nanos);
        if let Some(strategy) = strategy {
            match self
                .by_strategy
                .iter_mut()
                .find(|(name, _)| *name == strategy)
            {
                Some((_, h)) => h.saturating_record(nanos),
                None => {
                    let mut h = latency_histogram();
                    h.saturating_record(nanos);
                    self.by_strategy.push((strategy, h));
                }
            }
        }
        self.cpu += report.requester_cpu;
        self.by_themselves += u64::from(report.by_themselves);
        self.by_requester += u64::from(report.by_requester);
    }
}

/// What the requester goroutine brings back.
struct RequesterResult {
    tally: BarrierTally,
    phases: Phases,
    /// The cycles of `alloc`'s paced GC.
    paced: Option<GcSummary>,
    swaps: Option<SwapSummary>,
    handshakes: Option<HandshakeSummary>,
}

/// Runs the workload on `rt` and performs the barriers from a goroutine.
pub fn run(rt: &Runtime, options: &RunOptions) -> Result<RunSummary, RunError> {
    let workload = options.workload;
    let has = rt.strategy_capabilities();
    let needs = workload.needs();
    // Before the workload's own needs: the GC's are a superset, and say why.
    if options.gc && !has.contains(workload.gc_needs()) {
        return Err(RunError::GcUnsupported {
            strategy: rt.strategy_name(),
            workload,
            needs: workload.gc_needs(),
            missing: Capabilities(workload.gc_needs().0 & !has.0),
            has,
        });
    }
    // Without barriers (a baseline), any strategy can host any workload.
    if (options.barriers > 0 || options.handshakes > 0) && !has.contains(needs) {
        return Err(RunError::Unsupported {
            strategy: rt.strategy_name(),
            workload,
            needs,
            has,
        });
    }
    if options.handshakes > 0 && !has.contains(Capabilities::SINGLE_P_HANDSHAKE) {
        return Err(RunError::HandshakesUnsupported {
            strategy: rt.strategy_name(),
            has,
        });
    }
    if options.gc
        && let Some(reason) = workload.refuses_gc()
    {
        return Err(RunError::GcRefused { workload, reason });
    }
    let procs = rt.procs();
    let served_before = rt.served_ps().1;
    let phase = Arc::new(PhaseFlag::default());
    let gc = options.gc.then(|| Gc::start(rt, procs.div_ceil(4)));
    let running = Running::start(rt, options, gc.as_ref(), &phase)?;
    let paced = match &running {
        Running::Alloc(alloc) => Some(alloc.paced()),
        _ => None,
    };
    let gc_run = gc.as_ref().map(|gc| gc_cycles(rt, gc));
    let swapper = options.rotation.clone().map(|r| swaps(rt, r));
    let (barriers, duration, handshakes) = (options.barriers, options.duration, options.handshakes);
    let quiet_phase = barriers > 0 && workload.has_quiet_phase();
    let interval = workload.barrier_interval();
    let shared = Arc::clone(&rt.shared);
    let result = rt.block_on(move || -> Result<RequesterResult, RunError> {
        let started = Instant::now();
        phase.set(Phase::Main);
        let deadline = duration.map(|d| started + d);
        let mut tally = BarrierTally::new();
        let main_phase: Result<Option<GcSummary>, RunError> = match paced {
            Some(paced) => paced
                .cycles(barriers, deadline, &mut tally)
                .map(Some)
                .map_err(RunError::from),
            None => barrier_loop(&shared, barriers, interval, deadline, &mut tally)
                .map(|()| None)
                .map_err(RunError::from),
        };
        if barriers == 0
            && handshakes == 0
            && let Some(d) = duration
        {
            runtime::sleep(d);
        }
        let handshakes = (handshakes > 0)
            .then(|| handshake_loop(&shared, handshakes, duration.map(|d| Instant::now() + d)));
        let main = started.elapsed();
        // Swaps are barrier-like (they hold the world): none in the quiet phase. The swapper
        // stops even when a barrier failed.
        let swaps = swapper.map(Background::finish).transpose();
        let paced = main_phase?;
        let handshakes = handshakes.transpose()?;
        let swaps = swaps?;
        let quiet = quiet_phase.then(|| {
            let length = duration.unwrap_or(main).max(QUIET_MIN);
            phase.set(Phase::Quiet);
            runtime::sleep(length);
            length
        });
        Ok(RequesterResult {
            tally,
            phases: Phases { main, quiet },
            paced,
            swaps,
            handshakes,
        })
    });
    let gc_summary = gc_run.map(Background::finish).transpose();
    let phases = result.as_ref().map_or(
        Phases {
            main: Duration::ZERO,
            quiet: None,
        },
        |r| r.phases,
    );
    let paced = result.as_ref().ok().and_then(|r| r.paced.clone());
    // The workload stops (every goroutine ends) even when the requester failed.
    let stopped = running.stop(rt, phases, paced);
    let mut gc_summary = gc_summary?;
    if let (Some(gc), Some(summary)) = (&gc, gc_summary.take()) {
        gc_summary = Some(final_gc_cycle(rt, gc, summary)?);
    }
    let RequesterResult {
        tally,
        swaps: swap_summary,
        handshakes,
        ..
    } = result?;
    let report = stopped?;
    Ok(RunSummary {
        strategy: rt.strategy_name(),
        procs,
        workload,
        barriers: tally.latency.len(),
        latency: tally.latency,
        requester_cpu: tally.cpu,
        by_themselves: tally.by_themselves,
        by_requester: tally.by_requester,
        work_units: report.work_units,
        elapsed: report.elapsed,
        eintrs: report.eintrs,
        counters: rt.strategy_counters(),
        served_ps: {
            let (policy, now) = rt.served_ps();
            (policy, now.since(&served_before))
        },
        gc: report.gc.or(gc_summary),
        metric: report.metric,
        by_strategy: if swap_summary.is_some() {
            tally.by_strategy
        } else {
            Vec::new()
        },
        swaps: swap_summary,
        handshakes,
        time_to_safepoint: rt.trace().map(|trace| TimeToSafepoint::of(&trace)),
    })
}

/// `handshakes` single-P handshakes, round robin over the Ps other than the requester's,
/// until the deadline. None at 1 P.
fn handshake_loop(
    shared: &Arc<runtime::Shared>,
    handshakes: u64,
    deadline: Option<Instant>,
) -> Result<HandshakeSummary, BarrierError> {
    let mut summary = HandshakeSummary {
        latency: latency_histogram(),
        by_itself: 0,
    };
    let others = shared.ps.len() as u64 - 1;
    for i in (0..handshakes).take_while(|_| others > 0) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let world = safepoint::acquire_world();
        // The requester's P now: it may have moved since the last handshake.
        let own = runtime::current_p_id().map_or(u32::MAX, |p| p.0);
        let k = (i % others) as u32;
        let p = PId(if k >= own { k + 1 } else { k });
        let report = safepoint::handshake(&world, WaitReason::Event, p, |_| {})?;
        drop(world);
        summary
            .latency
            .saturating_record(report.duration.as_nanos() as u64);
        summary.by_itself += u64::from(report.by_itself);
        runtime::poll();
    }
    Ok(summary)
}

/// The main phase of every workload but `alloc`: `barriers` barriers, back to back or
/// `interval` apart, until the deadline.
fn barrier_loop(
    shared: &Arc<runtime::Shared>,
    barriers: u64,
    interval: Option<Duration>,
    deadline: Option<Instant>,
    tally: &mut BarrierTally,
) -> Result<(), BarrierError> {
    let flushed: Arc<[AtomicU64]> = (0..shared.ps.len()).map(|_| AtomicU64::new(0)).collect();
    for _ in 0..barriers {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let world = safepoint::acquire_world();
        // No swap while the world is held: this is the strategy the barrier runs.
        let strategy = shared.with_strategy(|s| s.name.clone());
        let flushed = Arc::clone(&flushed);
        let report = safepoint::for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
            flushed[p.index()].fetch_add(1, Ordering::Relaxed);
        })?;
        drop(world);
        tally.add(Some(strategy), &report);
        match interval {
            Some(interval) => runtime::sleep(interval),
            // A safe point between barriers, as a GC goroutine has: at 1 P, the workload's
            // goroutines get the P when sysmon preempts the requester.
            None => runtime::poll(),
        }
    }
    Ok(())
}

/// A goroutine that loops until told to stop, then hands back its result.
struct Background<T> {
    stop: Arc<AtomicBool>,
    done: WaitGroup,
    result: Arc<Mutex<Option<T>>>,
}

impl<T: Send + 'static> Background<T> {
    /// Runs `body` on a goroutine named `name`; `body` returns once the flag it is given is
    /// set.
    fn start(
        rt: &Runtime,
        name: &str,
        body: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Self {
        let background = Background {
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            result: Arc::new(Mutex::new(None)),
        };
        let (stop, done, slot) = (
            Arc::clone(&background.stop),
            background.done.clone(),
            Arc::clone(&background.result),
        );
        done.add(1);
        rt.spawn(name, move || {
            *slot.lock() = Some(body(&stop));
            done.done();
        });
        background
    }

    /// Tells the goroutine to stop, waits for it, and returns its result.
    fn finish(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        self.result
            .lock()
            .take()
            .expect("the goroutine stored its result")
    }
}

/// GC cycles back to back, until told to stop.
fn gc_cycles(rt: &Runtime, gc: &Arc<Gc>) -> Background<Result<GcSummary, GcError>> {
    let gc = Arc::clone(gc);
    Background::start(rt, "GC", move |stop| {
        let mut summary = GcSummary::new();
        while !stop.load(Ordering::Relaxed) {
            summary.add(&gc.cycle()?);
        }
        Ok(summary)
    })
}

impl GcSummary {
    fn new() -> GcSummary {
        GcSummary {
            cycles: 0,
            values_recorded: 0,
            values_marked: 0,
            mark_done: latency_histogram(),
            mark_termination: latency_histogram(),
            mark_words_peak: 0,
        }
    }

    fn add(&mut self, cycle: &CycleReport) {
        self.cycles += 1;
        self.values_marked += cycle.values_marked;
        self.mark_words_peak = self.mark_words_peak.max(cycle.mark_words);
        self.mark_done
            .saturating_record(cycle.mark_done.duration.as_nanos() as u64);
        self.mark_termination
            .saturating_record(cycle.mark_termination.duration.as_nanos() as u64);
    }
}

/// After the mutators stopped: one more cycle marks everything recorded, then the workers
/// stop. Every value recorded over the run must have been marked, once.
fn final_gc_cycle(
    rt: &Runtime,
    gc: &Arc<Gc>,
    mut summary: GcSummary,
) -> Result<GcSummary, GcError> {
    let gc2 = Arc::clone(gc);
    let cycle = rt.block_on(move || gc2.cycle());
    gc.stop_workers();
    summary.add(&cycle?);
    summary.values_recorded = gc.values_recorded();
    if summary.values_marked != summary.values_recorded {
        return Err(GcError::MarkedTotal {
            recorded: summary.values_recorded,
            marked: summary.values_marked,
        });
    }
    Ok(summary)
}

/// Swaps through the rotation, one strategy every `rotation.every`, until told to stop.
fn swaps(rt: &Runtime, rotation: Rotation) -> Background<Result<SwapSummary, SwapError>> {
    let shared = Arc::clone(&rt.shared);
    Background::start(rt, "swapper", move |stop| {
        let mut summary = SwapSummary {
            swaps: 0,
            took: latency_histogram(),
            world_held: latency_histogram(),
        };
        let n = rotation.strategies.len();
        loop {
            runtime::sleep(rotation.every);
            if stop.load(Ordering::Relaxed) || n == 0 {
                return Ok(summary);
            }
            let (plugin, config) = &rotation.strategies[(summary.swaps as usize + 1) % n];
            let report = swap(&shared, plugin, config)?;
            summary.swaps += 1;
            summary
                .took
                .saturating_record(report.took.as_nanos() as u64);
            summary
                .world_held
                .saturating_record(report.world_held.as_nanos() as u64);
        }
    })
}

/// A histogram of nanoseconds from 1 ns to one minute, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}
