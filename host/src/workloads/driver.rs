//! The driver: starts a workload, runs the requester's main phase and the quiet one, stops
//! the workload and gathers what it measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use safepoint_abi::{Capabilities, PId};

use super::background::{Background, gc_cycles, swaps};
use super::{
    AllocError, ComputeError, GcSummary, HandshakeSummary, Mutators, QUIET_MIN, RunSummary,
    ServerError, SwapSummary, Workload, WorkloadMetric, WorkloadParams, alloc, compute,
    final_gc_cycle, latency_histogram, server,
};
use crate::gc::{Gc, GcError};
use crate::plugin::Plugin;
use crate::runtime::{self, Runtime, SwapError, WaitReason};
use crate::safepoint::{self, BarrierError, BarrierReport};
use crate::trace::TimeToSafepoint;

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

/// The driver's phase, which the realistic workloads read to file what they measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The workload's goroutines start; the requester has not begun: nothing is measured.
    Starting = 0,
    /// The requester performs its barriers (or, with none, the mutators run alone).
    Main = 1,
    /// No barrier at all: the workload measures itself.
    Quiet = 2,
}

/// The current [`Phase`], set by the requester, read by the workload's goroutines.
#[derive(Default)]
pub(crate) struct PhaseFlag(AtomicU8);

impl PhaseFlag {
    pub(crate) fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            1 => Phase::Main,
            2 => Phase::Quiet,
            _ => Phase::Starting,
        }
    }

    pub(crate) fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }
}

/// How long each phase lasted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phases {
    pub(crate) main: Duration,
    pub(crate) quiet: Option<Duration>,
}

/// What a stopped workload hands the driver.
pub(crate) struct WorkloadReport {
    pub(crate) work_units: u64,
    pub(crate) elapsed: Duration,
    pub(crate) eintrs: u64,
    pub(crate) gc: Option<GcSummary>,
    pub(crate) metric: Option<WorkloadMetric>,
}

/// A workload's goroutines, running until [`Running::stop`].
pub(crate) enum Running {
    Synthetic(Mutators),
    Alloc(alloc::Alloc),
    Server(server::Server),
    Compute(compute::Compute),
}

impl Running {
    pub(crate) fn start(
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
    pub(crate) fn stop(
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
pub(crate) struct BarrierTally {
    pub(crate) latency: Histogram<u64>,
    pub(crate) by_strategy: Vec<(String, Histogram<u64>)>,
    pub(crate) cpu: Duration,
    pub(crate) by_themselves: u64,
    pub(crate) by_requester: u64,
}

impl BarrierTally {
    pub(crate) fn new() -> BarrierTally {
        BarrierTally {
            latency: latency_histogram(),
            by_strategy: Vec::new(),
            cpu: Duration::ZERO,
            by_themselves: 0,
            by_requester: 0,
        }
    }

    /// Adds one barrier, and to the times of `strategy` if it is known.
    pub(crate) fn add(&mut self, strategy: Option<String>, report: &BarrierReport) {
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
pub(crate) struct RequesterResult {
    pub(crate) tally: BarrierTally,
    pub(crate) phases: Phases,
    /// The cycles of `alloc`'s paced GC.
    pub(crate) paced: Option<GcSummary>,
    pub(crate) swaps: Option<SwapSummary>,
    pub(crate) handshakes: Option<HandshakeSummary>,
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
pub(crate) fn handshake_loop(
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
pub(crate) fn barrier_loop(
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
