//! The workloads `safepoint run` drives barriers against, and the run summary.
//!
//! Each workload starts mutator goroutines, then one requester goroutine performs `barriers`
//! barriers back to back (`for_each_p(GcMarkTermination, ...)`), then the mutators stop.
//! With `gc`, the mutators also record values, allocate and change their roots, and a GC
//! goroutine runs collection cycles back to back meanwhile (see [`crate::gc`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use safepoint_abi::Capabilities;

use crate::gc::{Gc, GcError, Mutator as GcMutator};
use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, WaitGroup, WaitReason};
use crate::safepoint::{self, BarrierError};

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
}

impl Workload {
    /// Every workload, in the order the CLI lists them.
    pub const ALL: [Workload; 5] = [
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
        }
    }

    /// What a strategy must be able to do to run this workload.
    pub fn needs(self) -> Capabilities {
        match self {
            Workload::NoPoll => Capabilities::REACHES_NON_POLLING_PS,
            _ => Capabilities::NONE,
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

/// Iterations of the mutator's unit of work between polls: about 50-200 ns on current
/// x86-64 cores, the density of Go's loop back-edges in allocation-heavy code.
pub const WORK_ITERATIONS: u32 = 64;

/// With `--gc`, a mutator records a value and allocates once every this many units of work.
pub const GC_RECORD_EVERY: u64 = 64;

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
    /// Barriers completed.
    pub barriers: u64,
    /// Barrier wall time, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requester CPU time over all barriers.
    pub requester_cpu: Duration,
    /// Ps whose own M ran `f`, over all barriers.
    pub by_themselves: u64,
    /// Ps the requester ran `f` for, over all barriers.
    pub by_requester: u64,
    /// Mutator work units completed meanwhile.
    pub work_units: u64,
    /// The strategy's counters at the end.
    pub counters: Vec<(String, u64)>,
    /// What the GC did, with `--gc`.
    pub gc: Option<GcSummary>,
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
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// The mutators' workload.
    pub workload: Workload,
    /// Barriers the requester performs.
    pub barriers: u64,
    /// Run GC cycles back to back meanwhile.
    pub gc: bool,
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
    /// The GC's stack scan (`suspend_g`) waits for a running goroutine to poll, which a
    /// `nopoll` spinner never does: the GC cycle would never end.
    #[error(
        "--gc cannot run with workload nopoll: the GC scans every goroutine's stack, and          suspend_g waits for a running goroutine to reach a poll, which a nopoll spinner never          does; run nopoll without --gc"
    )]
    GcNeedsPolls,
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.latency;
        writeln!(
            f,
            "strategy {}, {} Ps, workload {}: {} barriers completed",
            self.strategy, self.procs, self.workload, self.barriers
        )?;
        writeln!(
            f,
            "  barrier time     p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
            micros(h.value_at_quantile(0.5)),
            micros(h.value_at_quantile(0.99)),
            micros(h.max())
        )?;
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
        writeln!(f, "  mutator work     {} units", self.work_units)?;
        if let Some(gc) = &self.gc {
            writeln!(
                f,
                "  GC               {} cycles, {} values recorded, {} marked (each once)",
                gc.cycles, gc.values_recorded, gc.values_marked
            )?;
            for (reason, h) in [
                (WaitReason::GcMarkTermination, &gc.mark_done),
                (WaitReason::FlushProcCaches, &gc.mark_termination),
            ] {
                writeln!(
                    f,
                    "    [{reason}]{:pad$} p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
                    "",
                    micros(h.value_at_quantile(0.5)),
                    micros(h.value_at_quantile(0.99)),
                    micros(h.max()),
                    pad = 22usize.saturating_sub(reason.as_str().len()),
                )?;
            }
        }
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        writeln!(f, "  strategy         {}", counters.join(", "))
    }
}

/// Runs the workload on `rt` and performs the barriers from a goroutine.
pub fn run(rt: &Runtime, options: &RunOptions) -> Result<RunSummary, RunError> {
    let has = rt.strategy_capabilities();
    let needs = options.workload.needs();
    if !has.contains(needs) {
        return Err(RunError::Unsupported {
            strategy: rt.strategy_name(),
            workload: options.workload,
            needs,
            has,
        });
    }
    if options.gc && options.workload == Workload::NoPoll {
        return Err(RunError::GcNeedsPolls);
    }
    let procs = rt.procs();
    let stop = Arc::new(AtomicBool::new(false));
    let work_units = Arc::new(AtomicU64::new(0));
    let mutators = WaitGroup::new();
    let gc = options.gc.then(|| Gc::start(rt, procs.div_ceil(4)));
    start_mutators(
        rt,
        options.workload,
        gc.as_ref(),
        &stop,
        &work_units,
        &mutators,
    );
    let gc_run = gc.as_ref().map(|gc| GcRun::start(rt, gc));
    let barriers = options.barriers;
    let result = rt.block_on(move || -> Result<_, BarrierError> {
        let mut latency = latency_histogram();
        let (mut cpu, mut by_themselves, mut by_requester) = (Duration::ZERO, 0, 0);
        let flushed: Arc<[AtomicU64]> = (0..procs).map(|_| AtomicU64::new(0)).collect();
        for _ in 0..barriers {
            let world = safepoint::acquire_world();
            let flushed = Arc::clone(&flushed);
            let report = safepoint::for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                flushed[p.index()].fetch_add(1, Ordering::Relaxed);
            })?;
            drop(world);
            latency.saturating_record(report.duration.as_nanos() as u64);
            cpu += report.requester_cpu;
            by_themselves += u64::from(report.by_themselves);
            by_requester += u64::from(report.by_requester);
        }
        Ok((latency, cpu, by_themselves, by_requester))
    });
    let gc_summary = gc_run.map(GcRun::finish);
    stop.store(true, Ordering::Relaxed);
    mutators.wait();
    let gc_summary = match (gc, gc_summary) {
        (Some(gc), Some(summary)) => Some(final_gc_cycle(rt, &gc, summary?)?),
        _ => None,
    };
    let (latency, requester_cpu, by_themselves, by_requester) = result?;
    Ok(RunSummary {
        strategy: rt.strategy_name(),
        procs,
        workload: options.workload,
        barriers,
        latency,
        requester_cpu,
        by_themselves,
        by_requester,
        work_units: work_units.load(Ordering::Relaxed),
        counters: rt.strategy_counters(),
        gc: gc_summary,
    })
}

/// GC cycles back to back on their own goroutine, until told to stop.
struct GcRun {
    stop: Arc<AtomicBool>,
    done: WaitGroup,
    summary: Arc<Mutex<Option<Result<GcSummary, GcError>>>>,
}

impl GcRun {
    fn start(rt: &Runtime, gc: &Arc<Gc>) -> GcRun {
        let run = GcRun {
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            summary: Arc::new(Mutex::new(None)),
        };
        let (gc, stop, done, slot) = (
            Arc::clone(gc),
            Arc::clone(&run.stop),
            run.done.clone(),
            Arc::clone(&run.summary),
        );
        done.add(1);
        rt.spawn("GC", move || {
            let mut summary = GcSummary {
                cycles: 0,
                values_recorded: 0,
                values_marked: 0,
                mark_done: latency_histogram(),
                mark_termination: latency_histogram(),
            };
            let result = loop {
                if stop.load(Ordering::Relaxed) {
                    break Ok(summary);
                }
                match gc.cycle() {
                    Ok(cycle) => summary.add(&cycle),
                    Err(e) => break Err(e),
                }
            };
            *slot.lock() = Some(result);
            done.done();
        });
        run
    }

    fn finish(self) -> Result<GcSummary, GcError> {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        self.summary
            .lock()
            .take()
            .expect("the GC goroutine reports")
    }
}

impl GcSummary {
    fn add(&mut self, cycle: &crate::gc::CycleReport) {
        self.cycles += 1;
        self.values_marked += cycle.values_marked;
        self.mark_done
            .saturating_record(cycle.mark_done.duration.as_nanos() as u64);
        self.mark_termination
            .saturating_record(cycle.mark_termination.duration.as_nanos() as u64);
    }
}

/// After the mutators stopped: one more cycle marks everything recorded, then the workers
/// stop.
fn final_gc_cycle(
    rt: &Runtime,
    gc: &Arc<Gc>,
    mut summary: GcSummary,
) -> Result<GcSummary, GcError> {
    let gc2 = Arc::clone(gc);
    let cycle = rt.block_on(move || gc2.cycle())?;
    summary.add(&cycle);
    summary.values_recorded = gc.values_recorded();
    gc.stop_workers();
    Ok(summary)
}

/// A histogram of nanoseconds from 1 ns to one minute, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy)]
enum Mutator {
    Poller,
    Blocker,
    Sleeper,
    /// Computes without ever polling.
    Spinner,
}

fn start_mutators(
    rt: &Runtime,
    workload: Workload,
    gc: Option<&Arc<Gc>>,
    stop: &Arc<AtomicBool>,
    work_units: &Arc<AtomicU64>,
    wg: &WaitGroup,
) {
    // One P is left to the requester.
    let others = rt.procs() - 1;
    let kinds: Vec<Mutator> = match workload {
        Workload::Poll => vec![Mutator::Poller; others],
        Workload::Idle => vec![Mutator::Poller; others / 2],
        Workload::Syscall => vec![Mutator::Blocker; others],
        Workload::Mixed => (0..others)
            .map(|i| [Mutator::Poller, Mutator::Blocker, Mutator::Sleeper][i % 3])
            .collect(),
        Workload::NoPoll => vec![Mutator::Spinner; others],
    };
    for (i, kind) in kinds.into_iter().enumerate() {
        let (stop, work_units, wg) = (Arc::clone(stop), Arc::clone(work_units), wg.clone());
        let gc = gc.cloned();
        wg.add(1);
        let name = match kind {
            Mutator::Poller => "poller",
            Mutator::Blocker => "blocker",
            Mutator::Sleeper => "sleeper",
            Mutator::Spinner => "nopoll spinner",
        };
        // A spinner takes no safe point at all, so not even the write barrier's.
        let gc = gc.filter(|_| !matches!(kind, Mutator::Spinner));
        rt.spawn(name, move || {
            let gc: Option<GcMutator> = gc.map(|gc| gc.mutator());
            let mut x = i as u64;
            let mut units = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(gc) = &gc {
                    if units % GC_RECORD_EVERY == 0 {
                        gc.record();
                        gc.allocate();
                    }
                    gc.update_roots(x);
                }
                match kind {
                    Mutator::Poller => {
                        x = work(x);
                        runtime::poll();
                    }
                    Mutator::Blocker => {
                        runtime::blocking(|| std::thread::sleep(Duration::from_micros(50)));
                    }
                    Mutator::Sleeper => runtime::sleep(Duration::from_micros(100)),
                    Mutator::Spinner => x = work(x),
                }
                units += 1;
            }
            std::hint::black_box(x);
            drop(gc);
            work_units.fetch_add(units, Ordering::Relaxed);
            wg.done();
        });
    }
}
