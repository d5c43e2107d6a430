//! The goroutines of the synthetic workloads: one loop per P but the requester's, each of one
//! kind (poll, block, sleep, spin), as the workload's own file lists them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::gc::{Gc, Mutator as GcMutator};
use crate::runtime::{self, Runtime, WaitGroup};
use crate::sys;

use super::{GC_RECORD_EVERY, Workload, idle, mixed, nopoll, poll, syscall, work};

/// What one synthetic mutator goroutine does in its loop.
#[derive(Clone, Copy)]
pub(super) enum Mutator {
    /// Computes a unit of [`work`], then polls.
    Poller,
    /// Sits in `blocking` (a real `nanosleep` of 50 µs): its P is in `Syscall`.
    Blocker,
    /// Parks in `sleep` for 100 µs: its P goes idle.
    Sleeper,
    /// Computes without ever polling.
    Spinner,
}

impl Mutator {
    fn name(self) -> &'static str {
        match self {
            Mutator::Poller => "poller",
            Mutator::Blocker => "blocker",
            Mutator::Sleeper => "sleeper",
            Mutator::Spinner => "nopoll spinner",
        }
    }
}

/// What the mutators did, added up as each exits.
#[derive(Default)]
struct MutatorTally {
    work_units: AtomicU64,
    eintrs: AtomicU64,
}

/// The mutator goroutines of a synthetic workload, running until [`Mutators::stop`]. One P
/// is left to the requester.
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
    /// Starts the mutators of the synthetic `workload` on `rt`.
    ///
    /// # Panics
    ///
    /// If `workload` is not one of [`Workload::SYNTHETIC`]: the realistic workloads have
    /// phases, a GC or sockets of their own, which only [`run`](super::run) drives.
    pub fn start(rt: &Runtime, workload: Workload) -> Mutators {
        Mutators::start_with_gc(rt, workload, None)
    }

    /// Starts them, each also a GC mutator of `gc`. Spinners only change their roots: the
    /// write barrier's region ends at a poll, and they take no safe point at all.
    pub(super) fn start_with_gc(
        rt: &Runtime,
        workload: Workload,
        gc: Option<&Arc<Gc>>,
    ) -> Mutators {
        // One P is left to the requester.
        let others = rt.procs() - 1;
        let kinds = match workload {
            Workload::Poll => poll::kinds(others),
            Workload::Idle => idle::kinds(others),
            Workload::Syscall => syscall::kinds(others),
            Workload::Mixed => mixed::kinds(others),
            Workload::NoPoll => nopoll::kinds(others),
            realistic => panic!(
                "Mutators::start: {realistic} is not a synthetic workload; run it with workloads::run"
            ),
        };
        let mutators = Mutators {
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            tally: Arc::new(MutatorTally::default()),
            started: Instant::now(),
        };
        for (i, kind) in kinds.into_iter().enumerate() {
            mutators.spawn(rt, i as u64, kind, gc);
        }
        mutators
    }

    fn spawn(&self, rt: &Runtime, seed: u64, kind: Mutator, gc: Option<&Arc<Gc>>) {
        let (stop, tally, wg) = (
            Arc::clone(&self.stop),
            Arc::clone(&self.tally),
            self.done.clone(),
        );
        let gc = gc.cloned();
        let records = !matches!(kind, Mutator::Spinner);
        wg.add(1);
        rt.spawn(kind.name(), move || {
            let gc: Option<GcMutator> = gc.map(|gc| gc.mutator());
            let mut x = seed;
            let (mut units, mut eintrs) = (0, 0u32);
            while !stop.load(Ordering::Relaxed) {
                if let Some(gc) = &gc {
                    if records && units % GC_RECORD_EVERY == 0 {
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
