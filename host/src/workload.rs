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
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use safepoint_abi::Capabilities;

use crate::gc::{Gc, GcError, Mutator as GcMutator};
use crate::plugin::{Plugin, SwapError, swap};
use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, WaitGroup, WaitReason};
use crate::safepoint::{self, BarrierError, ServedPs, ServedPsStats};
use crate::sys;

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
pub const WORK_ITERATIONS: u32 = 96;

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
    /// How long the mutators ran.
    pub elapsed: Duration,
    /// Blocking calls of the mutators that a signal interrupted (EINTR).
    pub eintrs: u64,
    /// The strategy's counters at the end.
    pub counters: Vec<(String, u64)>,
    /// The served-P policy, and what it did during the run.
    pub served_ps: (ServedPs, ServedPsStats),
    /// What the GC did, with `--gc`.
    pub gc: Option<GcSummary>,
    /// Barrier times per strategy, when strategies rotate.
    pub by_strategy: Vec<(String, Histogram<u64>)>,
    /// What the swaps did, when strategies rotate.
    pub swaps: Option<SwapSummary>,
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
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The mutators' workload.
    pub workload: Workload,
    /// Barriers the requester performs.
    pub barriers: u64,
    /// Stop after this long even if fewer barriers are done; with no barriers, the
    /// mutators run this long alone (a baseline for their throughput).
    pub duration: Option<Duration>,
    /// Run GC cycles back to back meanwhile.
    pub gc: bool,
    /// Swap strategies meanwhile.
    pub rotation: Option<Rotation>,
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
        writeln!(
            f,
            "  mutator work     {} units in {:.2} s, {} blocking calls interrupted (EINTR)",
            self.work_units,
            self.elapsed.as_secs_f64(),
            self.eintrs
        )?;
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
                writeln!(
                    f,
                    "    {name:<20} {} barriers, p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
                    h.len(),
                    micros(h.value_at_quantile(0.5)),
                    micros(h.value_at_quantile(0.99)),
                    micros(h.max())
                )?;
            }
        }
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

/// Runs the workload on `rt` and performs the barriers from a goroutine.
pub fn run(rt: &Runtime, options: &RunOptions) -> Result<RunSummary, RunError> {
    let has = rt.strategy_capabilities();
    let needs = options.workload.needs();
    // Without barriers (a baseline), any strategy can host any workload.
    if options.barriers > 0 && !has.contains(needs) {
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
    let served_before = rt.served_ps().1;
    let gc = options.gc.then(|| Gc::start(rt, procs.div_ceil(4)));
    let mutators = Mutators::start_with_gc(rt, options.workload, gc.as_ref());
    let gc_run = gc.as_ref().map(|gc| gc_cycles(rt, gc));
    let swapper = options.rotation.clone().map(|r| swaps(rt, r));
    let (barriers, duration) = (options.barriers, options.duration);
    let shared = Arc::clone(&rt.shared);
    let result = rt.block_on(move || -> Result<_, BarrierError> {
        let deadline = duration.map(|d| Instant::now() + d);
        let past_deadline = || deadline.is_some_and(|d| Instant::now() >= d);
        let mut latency = latency_histogram();
        let mut by_strategy: Vec<(String, Histogram<u64>)> = Vec::new();
        let (mut cpu, mut by_themselves, mut by_requester) = (Duration::ZERO, 0, 0);
        let flushed: Arc<[AtomicU64]> = (0..procs).map(|_| AtomicU64::new(0)).collect();
        for _ in 0..barriers {
            if past_deadline() {
                break;
            }
            let world = safepoint::acquire_world();
            // No swap while the world is held: this is the strategy the barrier runs.
            let strategy = shared.strategy().name.clone();
            let flushed = Arc::clone(&flushed);
            let report = safepoint::for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                flushed[p.index()].fetch_add(1, Ordering::Relaxed);
            })?;
            drop(world);
            let nanos = report.duration.as_nanos() as u64;
            latency.saturating_record(nanos);
            match by_strategy.iter_mut().find(|(name, _)| *name == strategy) {
                Some((_, h)) => h.saturating_record(nanos),
                None => {
                    let mut h = latency_histogram();
                    h.saturating_record(nanos);
                    by_strategy.push((strategy, h));
                }
            }
            cpu += report.requester_cpu;
            by_themselves += u64::from(report.by_themselves);
            by_requester += u64::from(report.by_requester);
        }
        if barriers == 0
            && let Some(d) = duration
        {
            runtime::sleep(d);
        }
        Ok((latency, by_strategy, cpu, by_themselves, by_requester))
    });
    let swaps = swapper.map(Background::finish).transpose()?;
    let gc_summary = gc_run.map(Background::finish);
    let mutator_report = mutators.stop();
    let gc_summary = match (gc, gc_summary) {
        (Some(gc), Some(summary)) => Some(final_gc_cycle(rt, &gc, summary?)?),
        _ => None,
    };
    let (latency, by_strategy, requester_cpu, by_themselves, by_requester) = result?;
    Ok(RunSummary {
        strategy: rt.strategy_name(),
        procs,
        workload: options.workload,
        barriers,
        latency,
        requester_cpu,
        by_themselves,
        by_requester,
        work_units: mutator_report.work_units,
        elapsed: mutator_report.elapsed,
        eintrs: mutator_report.eintrs,
        counters: rt.strategy_counters(),
        served_ps: {
            let (policy, now) = rt.served_ps();
            (policy, now.since(&served_before))
        },
        gc: gc_summary,
        by_strategy: if swaps.is_some() {
            by_strategy
        } else {
            Vec::new()
        },
        swaps,
    })
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
        let mut summary = GcSummary {
            cycles: 0,
            values_recorded: 0,
            values_marked: 0,
            mark_done: latency_histogram(),
            mark_termination: latency_histogram(),
        };
        while !stop.load(Ordering::Relaxed) {
            summary.add(&gc.cycle()?);
        }
        Ok(summary)
    })
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

#[derive(Clone, Copy)]
enum Mutator {
    Poller,
    Blocker,
    Sleeper,
    /// Computes without ever polling.
    Spinner,
}

/// What the mutators did, added up as each exits.
#[derive(Default)]
struct MutatorTally {
    work_units: AtomicU64,
    eintrs: AtomicU64,
}

/// The mutator goroutines of a workload, running until [`Mutators::stop`]. One P is left to
/// the requester.
pub struct Mutators {
    stop: Arc<AtomicBool>,
    done: WaitGroup,
    tally: Arc<MutatorTally>,
    started: Instant,
}

/// What [`Mutators`] did.
#[derive(Clone, Copy, Debug)]
pub struct MutatorReport {
    /// Units of work done.
    pub work_units: u64,
    /// How long they ran.
    pub elapsed: Duration,
    /// Blocking calls a signal interrupted (EINTR).
    pub eintrs: u64,
}

impl Mutators {
    /// Starts the mutators of `workload` on `rt`.
    pub fn start(rt: &Runtime, workload: Workload) -> Mutators {
        Mutators::start_with_gc(rt, workload, None)
    }

    /// Starts them, each also a GC mutator of `gc` (except spinners, which take no safe
    /// point at all, not even the write barrier's).
    fn start_with_gc(rt: &Runtime, workload: Workload, gc: Option<&Arc<Gc>>) -> Mutators {
        let mutators = Mutators {
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            tally: Arc::new(MutatorTally::default()),
            started: Instant::now(),
        };
        spawn_mutators(rt, workload, gc, &mutators);
        mutators
    }

    /// Stops the mutators and waits for them to exit.
    pub fn stop(self) -> MutatorReport {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        MutatorReport {
            work_units: self.tally.work_units.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            eintrs: self.tally.eintrs.load(Ordering::Relaxed),
        }
    }
}

fn spawn_mutators(rt: &Runtime, workload: Workload, gc: Option<&Arc<Gc>>, set: &Mutators) {
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
        let (stop, tally, wg) = (
            Arc::clone(&set.stop),
            Arc::clone(&set.tally),
            set.done.clone(),
        );
        let gc = gc.cloned();
        wg.add(1);
        let name = match kind {
            Mutator::Poller => "poller",
            Mutator::Blocker => "blocker",
            Mutator::Sleeper => "sleeper",
            Mutator::Spinner => "nopoll spinner",
        };
        let gc = gc.filter(|_| !matches!(kind, Mutator::Spinner));
        rt.spawn(name, move || {
            let gc: Option<GcMutator> = gc.map(|gc| gc.mutator());
            let mut x = i as u64;
            let (mut units, mut eintrs) = (0, 0u32);
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
                        eintrs += runtime::blocking(|| {
                            sys::sleep_counting_interrupts(Duration::from_micros(50))
                        });
                    }
                    Mutator::Sleeper => runtime::sleep(Duration::from_micros(100)),
                    Mutator::Spinner => x = work(x),
                }
                units += 1;
            }
            std::hint::black_box(x);
            drop(gc);
            tally.work_units.fetch_add(units, Ordering::Relaxed);
            tally.eintrs.fetch_add(u64::from(eintrs), Ordering::Relaxed);
            wg.done();
        });
    }
}
