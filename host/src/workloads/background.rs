//! What runs beside a workload's main phase: GC cycles back to back, and the strategy
//! rotation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{GcSummary, Rotation, SwapSummary, latency_histogram};
use crate::gc::{CycleReport, Gc, GcError};
use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, SwapError, WaitGroup, swap};

/// A goroutine that loops until told to stop, then hands back its result.
pub(crate) struct Background<T> {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) done: WaitGroup,
    pub(crate) result: Arc<Mutex<Option<T>>>,
}

impl<T: Send + 'static> Background<T> {
    /// Runs `body` on a goroutine named `name`; `body` returns once the flag it is given is
    /// set.
    pub(crate) fn start(
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
    pub(crate) fn finish(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        self.result
            .lock()
            .take()
            .expect("the goroutine stored its result")
    }
}

/// GC cycles back to back, until told to stop.
pub(crate) fn gc_cycles(rt: &Runtime, gc: &Arc<Gc>) -> Background<Result<GcSummary, GcError>> {
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
    pub(crate) fn new() -> GcSummary {
        GcSummary {
            cycles: 0,
            values_recorded: 0,
            values_marked: 0,
            mark_done: latency_histogram(),
            mark_termination: latency_histogram(),
            mark_words_peak: 0,
        }
    }

    pub(crate) fn add(&mut self, cycle: &CycleReport) {
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
pub(crate) fn final_gc_cycle(
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
pub(crate) fn swaps(
    rt: &Runtime,
    rotation: Rotation,
) -> Background<Result<SwapSummary, SwapError>> {
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
