//! `compute`: a numeric kernel with the polls a compiler would insert at its loop back-edges.
//!
//! A goroutine on every P but the requester's (at least one) multiplies two 64x64 matrices of
//! `f64` again and again ([`Matmul`]: each element a dot product, a chain of dependent
//! multiply-adds), and polls between calls, as at a function call. The kernel comes in three
//! builds ([`Polls`]): without polls in its loops, with a poll at the inner loop's back-edge
//! on every iteration (what a naive compiler emits), and strip-mined, with a poll every
//! [`strip_every`] multiply-adds (what HotSpot's loop strip mining emits).
//!
//! In the main phase the goroutines run the strip-mined build: its polls are what a barrier
//! waits for. In the quiet phase (no barriers) they run the three builds in turn, each call
//! timed: without polls, strip-mined, every iteration. The poll overhead of a build is the
//! median, over these rounds, of its call's time over that of the call without polls just
//! before, minus one: the same kernel, the same run, the same strategy, and a median that a
//! preempted call (on a shared machine) does not move.
//!
//! Check: every build computes the same bits as the build without polls.
//!
//! [`strip_every`]: super::WorkloadParams::strip_every

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, WaitGroup};

use super::{Phase, PhaseFlag, Phases, RunError, WorkloadMetric, WorkloadParams, WorkloadReport};

pub(super) const DESCRIPTION: &str = "a 64x64 matrix multiply polling at loop back-edges \
     (strip-mined every --strip-every); reports poll overhead against the build without polls";

/// The matrices' order.
pub const MATRIX_ORDER: usize = 64;

/// Where a build of the kernel polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polls {
    /// Nowhere in its loops.
    None,
    /// At the inner loop's back-edge, every iteration.
    EveryIteration,
    /// Strip-mined: once every this many multiply-adds (rounded up to whole dot products
    /// when longer than one, and at least once per row of the product).
    Every(usize),
}

/// A matrix product `c = a * b`, the kernel of `compute`.
#[derive(Clone, Debug)]
pub struct Matmul {
    n: usize,
    a: Vec<f64>,
    /// `b`, transposed: each element of `c` is the dot product of two contiguous rows.
    b_t: Vec<f64>,
    c: Vec<f64>,
}

impl Matmul {
    /// Two `n` x `n` matrices of values in [0, 1), from `seed`.
    pub fn new(n: usize, seed: u64) -> Matmul {
        let mut x = seed | 1;
        let mut next = || {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        Matmul {
            n,
            a: (0..n * n).map(|_| next()).collect(),
            b_t: (0..n * n).map(|_| next()).collect(),
            c: vec![0.0; n * n],
        }
    }

    /// Multiply-adds in one [`Matmul::run`].
    pub fn ops(&self) -> u64 {
        (self.n * self.n * self.n) as u64
    }

    /// The product of the last run.
    pub fn product(&self) -> &[f64] {
        &self.c
    }

    /// Computes the product with the build `polls`.
    pub fn run(&mut self, polls: Polls) {
        let (c, a, b_t, n) = (&mut self.c, &self.a, &self.b_t, self.n);
        match polls {
            Polls::None => multiply::<NO_POLLS>(c, a, b_t, n, 0),
            Polls::EveryIteration => multiply::<EVERY_ITERATION>(c, a, b_t, n, 1),
            Polls::Every(strip) => multiply::<STRIP_MINED>(c, a, b_t, n, strip.max(1)),
        }
    }
}

const NO_POLLS: u8 = 0;
const EVERY_ITERATION: u8 = 1;
const STRIP_MINED: u8 = 2;

/// `c = a * b_t^T`, one build per `POLLS` (each its own function, as separate compilations
/// would make it). The strip-mined build, when `strip` is at least a dot product's length,
/// strip-mines the loop over a row's dot products: strips of `strip` multiply-adds rounded up
/// to whole dot products, a poll after each (at least one per row of `c`). Shorter strips
/// split each dot product, a poll after each. Every build sums in the same order, so all
/// compute the same bits.
#[inline(never)]
fn multiply<const POLLS: u8>(c: &mut [f64], a: &[f64], b_t: &[f64], n: usize, strip: usize) {
    let dots_per_strip = strip.div_ceil(n).min(n);
    for (c_row, a_row) in c.chunks_exact_mut(n).zip(a.chunks_exact(n)) {
        let mut b_rows = b_t.chunks_exact(n);
        if POLLS == STRIP_MINED && strip >= n {
            let mut j = 0;
            while j < n {
                let end = n.min(j + dots_per_strip);
                for (cij, b_row) in c_row[j..end].iter_mut().zip(&mut b_rows) {
                    *cij = dot(a_row, b_row);
                }
                runtime::poll();
                j = end;
            }
            continue;
        }
        for (cij, b_row) in c_row.iter_mut().zip(b_rows) {
            *cij = match POLLS {
                EVERY_ITERATION => {
                    let mut sum = 0.0;
                    for (x, y) in a_row.iter().zip(b_row) {
                        sum += x * y;
                        runtime::poll();
                    }
                    sum
                }
                STRIP_MINED => {
                    let mut sum = 0.0;
                    for (xs, ys) in a_row.chunks(strip).zip(b_row.chunks(strip)) {
                        for (x, y) in xs.iter().zip(ys) {
                            sum += x * y;
                        }
                        runtime::poll();
                    }
                    sum
                }
                _ => dot(a_row, b_row),
            };
        }
    }
}

/// The inner loop: a dot product, summed in order.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (x, y) in a.iter().zip(b) {
        sum += x * y;
    }
    sum
}

/// A build's multiply-adds and the time they took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelRate {
    /// Multiply-adds.
    pub ops: u64,
    /// Time inside the kernel.
    pub time: Duration,
}

impl KernelRate {
    fn add(&mut self, ops: u64, time: Duration) {
        self.ops += ops;
        self.time += time;
    }

    /// Millions of multiply-adds per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Ratios are kept in a histogram as parts per [`RATIO_SCALE`].
const RATIO_SCALE: f64 = 10_000.0;

/// The three builds in the quiet phase.
#[derive(Clone, Debug)]
pub struct QuietRates {
    /// Without polls.
    pub none: KernelRate,
    /// Polling every iteration.
    pub every_iteration: KernelRate,
    /// Strip-mined.
    pub strip_mined: KernelRate,
    /// Each round's time of the call polling every iteration over that of the call without
    /// polls, in parts per 10,000.
    pub every_iteration_ratio: Histogram<u64>,
    /// The same for the strip-mined call.
    pub strip_mined_ratio: Histogram<u64>,
}

impl QuietRates {
    fn new() -> QuietRates {
        let ratios = || Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("valid bounds");
        QuietRates {
            none: KernelRate::default(),
            every_iteration: KernelRate::default(),
            strip_mined: KernelRate::default(),
            every_iteration_ratio: ratios(),
            strip_mined_ratio: ratios(),
        }
    }

    fn add(&mut self, other: &QuietRates) {
        self.none.add(other.none.ops, other.none.time);
        self.every_iteration
            .add(other.every_iteration.ops, other.every_iteration.time);
        self.strip_mined
            .add(other.strip_mined.ops, other.strip_mined.time);
        self.every_iteration_ratio
            .add(&other.every_iteration_ratio)
            .expect("same bounds");
        self.strip_mined_ratio
            .add(&other.strip_mined_ratio)
            .expect("same bounds");
    }

    /// The median overhead of polling every iteration and of strip-mined polls, in percent.
    pub fn poll_overhead_pct(&self) -> (f64, f64) {
        let median =
            |h: &Histogram<u64>| 100.0 * (h.value_at_quantile(0.5) as f64 / RATIO_SCALE - 1.0);
        (
            median(&self.every_iteration_ratio),
            median(&self.strip_mined_ratio),
        )
    }
}

fn record_ratio(h: &mut Histogram<u64>, time: Duration, baseline: Duration) {
    let ratio = time.as_secs_f64() / baseline.as_secs_f64().max(1e-12);
    h.saturating_record((ratio * RATIO_SCALE) as u64);
}

/// A build's result differed from the build without polls.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// A product was not bit-identical.
    #[error(
        "compute: the {polls:?} build's product differs from the build without polls at element {index}"
    )]
    WrongProduct {
        /// The build.
        polls: Polls,
        /// The first element that differs.
        index: usize,
    },
}

/// What `compute` measured.
#[derive(Clone, Debug)]
pub struct ComputeReport {
    /// The matrices' order.
    pub order: usize,
    /// Kernel goroutines.
    pub mutators: usize,
    /// Multiply-adds between two polls of the strip-mined build.
    pub strip_every: usize,
    /// The strip-mined build in the main phase: multiply-adds, over the phase's wall time.
    pub main: KernelRate,
    /// The builds in the quiet phase, each over the time inside it.
    pub quiet: Option<QuietRates>,
}

impl ComputeReport {
    /// The overhead of polling every iteration and of strip-mined polls, in percent, if there
    /// was a quiet phase.
    pub fn poll_overhead_pct(&self) -> Option<(f64, f64)> {
        self.quiet.as_ref().map(QuietRates::poll_overhead_pct)
    }
}

impl fmt::Display for ComputeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  compute          {n}x{n} matrix multiply on {} goroutine(s): {:.0} M multiply-adds/s during barriers (strip-mined every {})",
            self.mutators,
            self.main.mops(),
            self.strip_every,
            n = self.order
        )?;
        match &self.quiet {
            Some(q) => {
                let (every, strip) = q.poll_overhead_pct();
                writeln!(
                    f,
                    "    poll overhead    every iteration {every:+.1} %, strip-mined {strip:+.1} % (medians of {} rounds without barriers; no polls {:.0}, every iteration {:.0}, strip-mined {:.0} M multiply-adds/s)",
                    q.strip_mined_ratio.len(),
                    q.none.mops(),
                    q.every_iteration.mops(),
                    q.strip_mined.mops()
                )
            }
            None => writeln!(f, "    poll overhead    (no quiet phase: no barriers)"),
        }
    }
}

/// A kernel goroutine's figures, handed over as it exits.
struct Tally {
    main: KernelRate,
    quiet: QuietRates,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            main: KernelRate::default(),
            quiet: QuietRates::new(),
        }
    }
}

/// The running workload.
pub(super) struct Compute {
    stop: Arc<AtomicBool>,
    done: WaitGroup,
    tallies: Arc<Mutex<Vec<Result<Tally, ComputeError>>>>,
    mutators: usize,
    strip_every: usize,
}

impl Compute {
    pub(super) fn start(rt: &Runtime, params: &WorkloadParams, phase: &Arc<PhaseFlag>) -> Compute {
        let compute = Compute {
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            tallies: Arc::new(Mutex::new(Vec::new())),
            mutators: (rt.procs() - 1).max(1),
            strip_every: params.strip_every.max(1),
        };
        for seed in 0..compute.mutators as u64 {
            let (stop, done, tallies, phase) = (
                Arc::clone(&compute.stop),
                compute.done.clone(),
                Arc::clone(&compute.tallies),
                Arc::clone(phase),
            );
            let strip = compute.strip_every;
            done.add(1);
            rt.spawn("matmul", move || {
                let tally = kernel_loop(seed, strip, &stop, &phase);
                tallies.lock().push(tally);
                done.done();
            });
        }
        compute
    }

    pub(super) fn stop(self, phases: Phases) -> Result<WorkloadReport, RunError> {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        let mut total = Tally::new();
        for tally in std::mem::take(&mut *self.tallies.lock()) {
            let tally = tally?;
            total.main.add(tally.main.ops, tally.main.time);
            total.quiet.add(&tally.quiet);
        }
        Ok(WorkloadReport {
            work_units: total.main.ops,
            elapsed: phases.main,
            eintrs: 0,
            gc: None,
            metric: Some(WorkloadMetric::Compute(ComputeReport {
                order: MATRIX_ORDER,
                mutators: self.mutators,
                strip_every: self.strip_every,
                main: KernelRate {
                    ops: total.main.ops,
                    time: phases.main,
                },
                quiet: phases.quiet.map(|_| total.quiet),
            })),
        })
    }
}

/// One kernel goroutine, until `stop`.
fn kernel_loop(
    seed: u64,
    strip: usize,
    stop: &AtomicBool,
    phase: &PhaseFlag,
) -> Result<Tally, ComputeError> {
    let mut kernel = Matmul::new(MATRIX_ORDER, seed + 1);
    kernel.run(Polls::None);
    let reference = kernel.product().to_vec();
    let mut tally = Tally::new();
    let timed = |kernel: &mut Matmul, polls: Polls| {
        let started = Instant::now();
        kernel.run(polls);
        let time = started.elapsed();
        match kernel
            .product()
            .iter()
            .zip(&reference)
            .position(|(x, y)| x.to_bits() != y.to_bits())
        {
            Some(index) => Err(ComputeError::WrongProduct { polls, index }),
            None => Ok(time),
        }
    };
    let ops = kernel.ops();
    while !stop.load(Ordering::Relaxed) {
        match phase.get() {
            Phase::Starting => {
                timed(&mut kernel, Polls::Every(strip))?;
            }
            Phase::Main => {
                timed(&mut kernel, Polls::Every(strip))?;
                // Calls that end after the phase count for the rate of neither.
                if phase.get() == Phase::Main {
                    tally.main.ops += ops;
                }
            }
            Phase::Quiet => {
                let q = &mut tally.quiet;
                let none = timed(&mut kernel, Polls::None)?;
                q.none.add(ops, none);
                let time = timed(&mut kernel, Polls::Every(strip))?;
                q.strip_mined.add(ops, time);
                record_ratio(&mut q.strip_mined_ratio, time, none);
                let time = timed(&mut kernel, Polls::EveryIteration)?;
                q.every_iteration.add(ops, time);
                record_ratio(&mut q.every_iteration_ratio, time, none);
            }
        }
        // The call boundary: the only safe point of the build without polls.
        runtime::poll();
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_computes_the_same_bits_as_the_product() {
        let mut kernel = Matmul::new(8, 3);
        kernel.run(Polls::None);
        let reference = kernel.product().to_vec();
        let (a, b_t) = (kernel.a.clone(), kernel.b_t.clone());
        let expected =
            |i: usize, j: usize| (0..8).fold(0.0, |s, k| s + a[i * 8 + k] * b_t[j * 8 + k]);
        for (index, &c) in reference.iter().enumerate() {
            assert_eq!(c.to_bits(), expected(index / 8, index % 8).to_bits());
        }
        // Strips shorter than a dot product, not dividing it, of whole dot products, and
        // longer than a row.
        for polls in [
            Polls::EveryIteration,
            Polls::Every(3),
            Polls::Every(8),
            Polls::Every(20),
            Polls::Every(1000),
        ] {
            kernel.run(polls);
            assert_eq!(kernel.product(), &reference[..], "{polls:?}");
        }
        assert_eq!(kernel.ops(), 512);
    }
}
