//! The workloads `safepoint run` drives barriers against, and the run summary.
//!
//! Each workload starts mutator goroutines, then one requester goroutine performs `barriers`
//! barriers back to back (`for_each_p(GcMarkTermination, ...)`), then the mutators stop.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

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
}

impl Workload {
    /// Every workload, in the order the CLI lists them.
    pub const ALL: [Workload; 4] = [
        Workload::Poll,
        Workload::Idle,
        Workload::Syscall,
        Workload::Mixed,
    ];

    /// The name `--workload` takes.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Poll => "poll",
            Workload::Idle => "idle",
            Workload::Syscall => "syscall",
            Workload::Mixed => "mixed",
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
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        writeln!(f, "  strategy         {}", counters.join(", "))
    }
}

/// Runs `workload` on `rt` and performs `barriers` barriers from a goroutine.
pub fn run(rt: &Runtime, workload: Workload, barriers: u64) -> Result<RunSummary, BarrierError> {
    let procs = rt.procs();
    let stop = Arc::new(AtomicBool::new(false));
    let work_units = Arc::new(AtomicU64::new(0));
    let mutators = WaitGroup::new();
    start_mutators(rt, workload, &stop, &work_units, &mutators);
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
    stop.store(true, Ordering::Relaxed);
    mutators.wait();
    let (latency, requester_cpu, by_themselves, by_requester) = result?;
    Ok(RunSummary {
        strategy: rt.strategy_name(),
        procs,
        workload,
        barriers,
        latency,
        requester_cpu,
        by_themselves,
        by_requester,
        work_units: work_units.load(Ordering::Relaxed),
        counters: rt.strategy_counters(),
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
}

fn start_mutators(
    rt: &Runtime,
    workload: Workload,
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
    };
    for (i, kind) in kinds.into_iter().enumerate() {
        let (stop, work_units, wg) = (Arc::clone(stop), Arc::clone(work_units), wg.clone());
        wg.add(1);
        let name = match kind {
            Mutator::Poller => "poller",
            Mutator::Blocker => "blocker",
            Mutator::Sleeper => "sleeper",
        };
        rt.spawn(name, move || {
            let mut x = i as u64;
            let mut units = 0;
            while !stop.load(Ordering::Relaxed) {
                match kind {
                    Mutator::Poller => {
                        x = work(x);
                        runtime::poll();
                    }
                    Mutator::Blocker => {
                        runtime::blocking(|| std::thread::sleep(Duration::from_micros(50)));
                    }
                    Mutator::Sleeper => runtime::sleep(Duration::from_micros(100)),
                }
                units += 1;
            }
            std::hint::black_box(x);
            work_units.fetch_add(units, Ordering::Relaxed);
            wg.done();
        });
    }
}
