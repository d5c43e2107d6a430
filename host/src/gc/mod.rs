//! A concurrent mark phase modelled on Go's, as the workload that needs `forEachP`.
//!
//! - **Mutators** record values in their P's write-barrier buffer and count allocations in
//!   their P's cache. Both are P-local: only the owner appends, inside a non-preemptible
//!   region. Each mutator also keeps a root set (its "stack"), changed only while it runs.
//! - **Background mark workers** are goroutines. Each scans goroutine stacks on its system
//!   stack, `Waiting(GC worker (active))`, with `suspend_g`: a running goroutine is first
//!   brought to a safe point, a waiting one is scanned in place. With a strategy that has
//!   `single-p-handshake`, a running goroutine is reached by a single-P handshake (Go's
//!   `preemptM`) and scanned inside it: with `signal`, even one that never polls.
//! - **`gc_mark_done`** flushes every P's write-barrier buffer into the mark queue with
//!   `for_each_p(GcMarkTermination, ...)`; **`gc_mark_termination`** flushes every P's cache
//!   with `for_each_p(FlushProcCaches, ...)`: the two call sites of Go change 533455.
//!
//! The invariants, checked at the end of every cycle: every value a mutator recorded before
//! `gc_mark_done` reached the mark queue, none twice; every root set was scanned, and never
//! seen half-updated; every allocation counted before `gc_mark_termination` was flushed.
//!
//! [`demo_deadlock`] stages the deadlock the host's wrapper prevents.

mod deadlock;
mod pacer;

use crate::runtime::trace::{EventKind, GcPhase};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::runtime::lock::Mutex;
use safepoint_abi::{Capabilities, PId};

pub use deadlock::{DeadlockMode, DemoError, demo_deadlock};
pub use pacer::Pacer;

use crate::runtime::{
    self, Chan, GoId, Runtime, Shared, TrySuspend, WaitGroup, WaitReason, suspend_g,
    suspend_running_on, try_suspend_g, waiting_on_system_stack,
};
use crate::safepoint::{self, BarrierError, BarrierFn, BarrierReport};

/// A broken GC invariant, or a failed barrier.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A value reached the mark queue twice.
    #[error("GC cycle {cycle}: value {seq} of mutator {mutator} was marked twice")]
    MarkedTwice {
        /// The cycle.
        cycle: u64,
        /// The mutator that recorded it.
        mutator: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// A value recorded before `gc_mark_done` did not reach the mark queue.
    #[error(
        "GC cycle {cycle}: value {seq} of mutator {mutator}, recorded before gc_mark_done, was not marked"
    )]
    Lost {
        /// The cycle.
        cycle: u64,
        /// The mutator.
        mutator: u32,
        /// The first lost sequence number.
        seq: u64,
    },
    /// A root set was not scanned in a cycle.
    #[error("GC cycle {cycle}: the stack of goroutine {goroutine} was not scanned")]
    NotScanned {
        /// The cycle.
        cycle: u64,
        /// The goroutine.
        goroutine: u64,
    },
    /// A root set was scanned while its goroutine was changing it.
    #[error("GC cycle {cycle}: the stack of goroutine {goroutine} was scanned half-updated")]
    TornRoots {
        /// The cycle.
        cycle: u64,
        /// The goroutine.
        goroutine: u64,
    },
    /// Allocations counted before `gc_mark_termination` were not flushed.
    #[error(
        "GC cycle {cycle}: {flushed} allocations flushed from P caches, expected at least {expected}"
    )]
    CachesNotFlushed {
        /// The cycle.
        cycle: u64,
        /// Allocations flushed so far.
        flushed: u64,
        /// Allocations counted before the barrier.
        expected: u64,
    },
    /// After the last cycle, the values marked over the run do not add up to those recorded.
    #[error(
        "GC: {marked} values were marked over the run, but the mutators recorded {recorded}; \
         each must be marked exactly once"
    )]
    MarkedTotal {
        /// Values recorded.
        recorded: u64,
        /// Values marked.
        marked: u64,
    },
    /// A barrier failed.
    #[error("GC barrier failed: {0}")]
    Barrier(#[from] BarrierError),
}

/// What one GC cycle did.
#[derive(Clone, Copy, Debug)]
pub struct CycleReport {
    /// The cycle's number, from 1.
    pub cycle: u64,
    /// Goroutine stacks scanned.
    pub stacks_scanned: u64,
    /// Values that reached the mark queue in this cycle.
    pub values_marked: u64,
    /// The `gc_mark_done` barrier (`GC mark termination`).
    pub mark_done: BarrierReport,
    /// The `gc_mark_termination` barrier (`flushing proc caches`).
    pub mark_termination: BarrierReport,
    /// The GC's mark state once this cycle's values are marked: 64-bit words of mark bits
    /// kept over every mutator, each from its first unmarked value on.
    pub mark_words: u64,
}

/// The collector: per-P buffers and caches, the mark queue, mutators and mark workers.
pub struct Gc {
    shared: Arc<Shared>,
    /// Per-P write-barrier buffers (Go's `p.wbBuf`).
    wbufs: Box<[Mutex<Vec<u64>>]>,
    /// Per-P allocation counts (the stats of Go's `p.mcache`).
    caches: Box<[AtomicU64]>,
    flushed_allocs: AtomicU64,
    mark_queue: Mutex<Vec<u64>>,
    /// Every mutator that ever registered, by index.
    mutators: Mutex<Vec<Arc<MutatorState>>>,
    /// Root sets of live mutators, by goroutine.
    roots: Mutex<HashMap<GoId, Arc<MutatorState>>>,
    cycles: AtomicU64,
    jobs: Chan<Arc<ScanJob>>,
    workers: usize,
    /// Called inside `gc_mark_done`'s barrier function for each P (tests, diagnostics).
    mark_done_observer: Mutex<Option<BarrierFn>>,
}

impl fmt::Debug for Gc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gc")
            .field("cycles", &self.cycles.load(Ordering::Relaxed))
            .field("workers", &self.workers)
            .finish()
    }
}

/// A mutator's shared state: its values' accounting and its root set.
struct MutatorState {
    index: u32,
    goid: GoId,
    /// Values recorded so far; value `seq` for every `seq < recorded` is in some buffer.
    recorded: AtomicU64,
    allocs: AtomicU64,
    /// The root set: three words and their xor, written without a safe point in between.
    roots: [AtomicU64; 4],
    scanned_in_cycle: AtomicU64,
    marks: Mutex<MarkBits>,
}

/// One mutator's mark bits, kept from the first unmarked value on, so that they stay small
/// however long the run.
#[derive(Default)]
struct MarkBits {
    /// The bits of values `64 * base` on.
    bits: VecDeque<u64>,
    /// Every value below `64 * base` is marked.
    base: u64,
    /// Every value below this is marked.
    prefix: u64,
}

impl MarkBits {
    /// Marks `seq`; false if it already was.
    fn mark(&mut self, seq: u64) -> bool {
        let word = seq / 64;
        if word < self.base {
            return false;
        }
        let (index, bit) = ((word - self.base) as usize, 1u64 << (seq % 64));
        if self.bits.len() <= index {
            self.bits.resize(index + 1, 0);
        }
        let fresh = self.bits[index] & bit == 0;
        self.bits[index] |= bit;
        while self.is_marked(self.prefix) {
            self.prefix += 1;
        }
        while self.bits.front() == Some(&u64::MAX) {
            self.bits.pop_front();
            self.base += 1;
        }
        fresh
    }

    fn is_marked(&self, seq: u64) -> bool {
        let word = seq / 64;
        word < self.base
            || self
                .bits
                .get((word - self.base) as usize)
                .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

const SEQ_BITS: u32 = 40;

/// Work for the mark workers: the goroutines to scan in one cycle.
struct ScanJob {
    cycle: u64,
    targets: Mutex<Vec<GoId>>,
    scanned: AtomicU64,
    torn: Mutex<Option<GoId>>,
    /// A handshake that failed (a strategy that broke its contract).
    failed: Mutex<Option<BarrierError>>,
    done: WaitGroup,
}

impl ScanJob {
    /// Scans the root set of `target` (`roots`, if it is a mutator), held by its scanner.
    fn scanned(&self, target: GoId, roots: Option<&MutatorState>) {
        if let Some(state) = roots {
            let words = state.roots.each_ref().map(|w| w.load(Ordering::Acquire));
            if words[0] ^ words[1] ^ words[2] != words[3] {
                self.torn.lock().get_or_insert(target);
            }
            state.scanned_in_cycle.store(self.cycle, Ordering::Release);
        }
        self.scanned.fetch_add(1, Ordering::Relaxed);
    }
}

/// What `scan_stack` found without a handshake.
enum InPlace {
    /// Scanned, or gone.
    Done,
    /// Its status changed as the worker looked.
    Changed,
    /// Running on this P: it needs a handshake.
    RunningOn(PId),
}

impl Gc {
    /// A collector for `rt`, with `workers` background mark workers (at least one).
    pub fn start(rt: &Runtime, workers: usize) -> Arc<Gc> {
        let procs = rt.procs();
        let gc = Arc::new(Gc {
            shared: Arc::clone(&rt.shared),
            wbufs: (0..procs).map(|_| Mutex::new(Vec::new())).collect(),
            caches: (0..procs).map(|_| AtomicU64::new(0)).collect(),
            flushed_allocs: AtomicU64::new(0),
            mark_queue: Mutex::new(Vec::new()),
            mutators: Mutex::new(Vec::new()),
            roots: Mutex::new(HashMap::new()),
            cycles: AtomicU64::new(0),
            jobs: Chan::bounded(workers.max(1)),
            workers: workers.max(1),
            mark_done_observer: Mutex::new(None),
        });
        for _ in 0..gc.workers {
            let gc = Arc::clone(&gc);
            rt.spawn("GC mark worker", move || gc.mark_worker());
        }
        gc
    }

    /// Stops the mark workers. Call it once no cycle runs any more.
    pub fn stop_workers(&self) {
        self.jobs.close();
    }

    /// Calls `observer(p)` inside `gc_mark_done`'s barrier function, for each P.
    pub fn observe_mark_done(&self, observer: impl Fn(PId) + Send + Sync + 'static) {
        *self.mark_done_observer.lock() = Some(Arc::new(observer));
    }

    /// Registers the calling goroutine as a mutator.
    ///
    /// # Panics
    ///
    /// If not called on a goroutine.
    pub fn mutator(self: &Arc<Gc>) -> Mutator {
        let goid = runtime::current_goid().expect("Gc::mutator: not called on a goroutine");
        let mut mutators = self.mutators.lock();
        let state = Arc::new(MutatorState {
            index: mutators.len() as u32,
            goid,
            recorded: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            roots: [0, 0, 0, 0].map(AtomicU64::new),
            scanned_in_cycle: AtomicU64::new(0),
            marks: Mutex::new(MarkBits::default()),
        });
        mutators.push(Arc::clone(&state));
        self.roots.lock().insert(goid, Arc::clone(&state));
        Mutator {
            gc: Arc::clone(self),
            state,
        }
    }

    /// Cycles completed.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    /// Values recorded by every mutator so far.
    pub fn values_recorded(&self) -> u64 {
        self.mutators
            .lock()
            .iter()
            .map(|m| m.recorded.load(Ordering::Relaxed))
            .sum()
    }

    /// Runs one GC cycle from the calling goroutine: mark, `gc_mark_done`,
    /// `gc_mark_termination`, and the invariant checks.
    pub fn cycle(self: &Arc<Gc>) -> Result<CycleReport, GcError> {
        let cycle = self.cycles.load(Ordering::Relaxed) + 1;
        let live_roots: Vec<Arc<MutatorState>> = self.roots.lock().values().cloned().collect();
        self.trace(GcPhase::Mark);
        let (stacks_scanned, torn) = self.mark(cycle)?;
        if let Some(g) = torn {
            return Err(GcError::TornRoots {
                cycle,
                goroutine: g.0,
            });
        }
        for m in &live_roots {
            let still_live = self.roots.lock().contains_key(&m.goid);
            if still_live && m.scanned_in_cycle.load(Ordering::Acquire) != cycle {
                return Err(GcError::NotScanned {
                    cycle,
                    goroutine: m.goid.0,
                });
            }
        }
        let recorded_before: Vec<u64> = self
            .mutators
            .lock()
            .iter()
            .map(|m| m.recorded.load(Ordering::Acquire))
            .collect();
        self.trace(GcPhase::MarkDone);
        let mark_done = self.gc_mark_done()?;
        let values_marked = self.drain_mark_queue(cycle)?;
        let mutators = self.mutators.lock().clone();
        let mut mark_words = 0;
        for (m, &before) in mutators.iter().zip(&recorded_before) {
            let (prefix, words) = {
                let marks = m.marks.lock();
                (marks.prefix, marks.bits.len() as u64)
            };
            mark_words += words;
            if prefix < before {
                return Err(GcError::Lost {
                    cycle,
                    mutator: m.index,
                    seq: prefix,
                });
            }
        }
        let allocs_before: u64 = mutators
            .iter()
            .map(|m| m.allocs.load(Ordering::Acquire))
            .sum();
        self.trace(GcPhase::MarkTermination);
        let mark_termination = self.gc_mark_termination()?;
        self.trace(GcPhase::Off);
        let flushed = self.flushed_allocs.load(Ordering::Acquire);
        if flushed < allocs_before {
            return Err(GcError::CachesNotFlushed {
                cycle,
                flushed,
                expected: allocs_before,
            });
        }
        self.cycles.store(cycle, Ordering::Relaxed);
        Ok(CycleReport {
            cycle,
            stacks_scanned,
            values_marked,
            mark_done,
            mark_termination,
            mark_words,
        })
    }

    /// A phase begins, on the requester's trace track.
    fn trace(&self, phase: GcPhase) {
        if let Some(trace) = &self.shared.trace {
            trace.requester(EventKind::Gc(phase));
        }
    }

    /// The mark phase: the workers scan every goroutine's stack. Returns the stacks scanned
    /// and the first seen half-updated.
    fn mark(&self, cycle: u64) -> Result<(u64, Option<GoId>), BarrierError> {
        let targets: Vec<GoId> = self.shared.allgs.lock().keys().copied().collect();
        let job = Arc::new(ScanJob {
            cycle,
            targets: Mutex::new(targets),
            scanned: AtomicU64::new(0),
            torn: Mutex::new(None),
            failed: Mutex::new(None),
            done: WaitGroup::new(),
        });
        job.done.add(self.workers);
        for _ in 0..self.workers {
            if self.jobs.send(Arc::clone(&job)).is_err() {
                job.done.done();
            }
        }
        job.done.wait();
        if let Some(e) = job.failed.lock().take() {
            return Err(e);
        }
        let torn = *job.torn.lock();
        Ok((job.scanned.load(Ordering::Relaxed), torn))
    }

    fn mark_worker(&self) {
        let me = runtime::current_goid();
        while let Some(job) = self.jobs.recv() {
            loop {
                let Some(target) = job.targets.lock().pop() else {
                    break;
                };
                if Some(target) != me {
                    self.scan_stack(&job, target);
                }
                runtime::poll();
            }
            job.done.done();
        }
    }

    /// Scans one goroutine's stack as Go's `markroot` does: through `suspend_g`, a waiting
    /// goroutine in place, a running one once it is at a safe point.
    ///
    /// With a strategy that has `single-p-handshake`, a running goroutine is reached as Go's
    /// `suspendG` reaches it with `preemptM`: a handshake stops its P (signal: wherever it
    /// computes, poll or no poll), and the scan happens inside the handshake's function,
    /// while the P is held. Otherwise `suspend_g` waits for the goroutine's next poll.
    fn scan_stack(&self, job: &Arc<ScanJob>, target: GoId) {
        let mut spins = 0;
        loop {
            let p = match self.scan_in_place(job, target) {
                InPlace::Done => return,
                InPlace::Changed => {
                    runtime::status::backoff(&mut spins);
                    continue;
                }
                InPlace::RunningOn(p) => p,
            };
            match self.scan_by_handshake(job, target, p) {
                Ok(true) => return,
                // It moved, parked or finished meanwhile: look again.
                Ok(false) => runtime::poll(),
                // A swap to a strategy without handshakes: the next round waits for the poll.
                Err(BarrierError::MissingCapability { .. }) => {}
                Err(e) => {
                    job.failed.lock().get_or_insert(e);
                    return;
                }
            }
        }
    }

    /// The part of `scan_stack` that needs no handshake, on the system stack, the worker
    /// `Waiting(GC worker (active))`, non-preemptible.
    fn scan_in_place(&self, job: &ScanJob, target: GoId) -> InPlace {
        let handshakes = self
            .shared
            .with_strategy(|s| s.capabilities.contains(Capabilities::SINGLE_P_HANDSHAKE));
        let region = runtime::no_preempt(&format!("in suspend_g, scanning goroutine {}", target.0));
        let outcome = waiting_on_system_stack(WaitReason::GcWorkerActive, || {
            let suspended = if handshakes {
                match try_suspend_g(&self.shared, target) {
                    TrySuspend::Suspended(suspended) => suspended,
                    TrySuspend::Gone => return InPlace::Done,
                    TrySuspend::Changed | TrySuspend::Running(None) => return InPlace::Changed,
                    TrySuspend::Running(Some(p)) => return InPlace::RunningOn(p),
                }
            } else {
                match suspend_g(&self.shared, target) {
                    Some(suspended) => suspended,
                    None => return InPlace::Done,
                }
            };
            let roots = self.roots.lock().get(&suspended.goid()).cloned();
            job.scanned(target, roots.as_deref());
            drop(suspended);
            InPlace::Done
        })
        .expect("mark workers are goroutines");
        drop(region);
        outcome
    }

    /// Scans `target`, running on `p`, inside a single-P handshake for `p`; false if it was
    /// no longer running there.
    fn scan_by_handshake(
        &self,
        job: &Arc<ScanJob>,
        target: GoId,
        p: PId,
    ) -> Result<bool, BarrierError> {
        let roots = self.roots.lock().get(&target).cloned();
        let scanned = Arc::new(AtomicBool::new(false));
        let (shared, job, done) = (
            Arc::clone(&self.shared),
            Arc::clone(job),
            Arc::clone(&scanned),
        );
        let world = safepoint::acquire_world();
        safepoint::handshake(&world, WaitReason::GcWorkerActive, p, move |p| {
            if let Some(suspended) = suspend_running_on(&shared, target, p) {
                job.scanned(target, roots.as_deref());
                drop(suspended);
                done.store(true, Ordering::Release);
            }
        })?;
        drop(world);
        Ok(scanned.load(Ordering::Acquire))
    }

    /// Go's `gcMarkDone`: flush every P's write-barrier buffer into the mark queue.
    fn gc_mark_done(self: &Arc<Gc>) -> Result<BarrierReport, BarrierError> {
        let world = safepoint::acquire_world();
        let gc = Arc::clone(self);
        let observer = self.mark_done_observer.lock().clone();
        safepoint::for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
            let flushed = std::mem::take(&mut *gc.wbufs[p.index()].lock());
            gc.mark_queue.lock().extend(flushed);
            if let Some(observe) = &observer {
                observe(p);
            }
        })
    }

    /// Go's `gcMarkTermination`: flush every P's cache.
    fn gc_mark_termination(self: &Arc<Gc>) -> Result<BarrierReport, BarrierError> {
        let world = safepoint::acquire_world();
        let gc = Arc::clone(self);
        safepoint::for_each_p(&world, WaitReason::FlushProcCaches, move |p| {
            let n = gc.caches[p.index()].swap(0, Ordering::AcqRel);
            gc.flushed_allocs.fetch_add(n, Ordering::AcqRel);
        })
    }

    fn drain_mark_queue(&self, cycle: u64) -> Result<u64, GcError> {
        let values = std::mem::take(&mut *self.mark_queue.lock());
        let mutators = self.mutators.lock().clone();
        for &v in &values {
            let (index, seq) = ((v >> SEQ_BITS) as u32, v & ((1 << SEQ_BITS) - 1));
            let m = &mutators[index as usize];
            if !m.marks.lock().mark(seq) {
                return Err(GcError::MarkedTwice {
                    cycle,
                    mutator: index,
                    seq,
                });
            }
        }
        Ok(values.len() as u64)
    }
}

/// A mutator goroutine's handle on the collector. Dropping it unregisters the root set.
pub struct Mutator {
    gc: Arc<Gc>,
    state: Arc<MutatorState>,
}

impl Mutator {
    /// The write barrier: records the next value in the current P's buffer.
    pub fn record(&self) {
        let _region = runtime::no_preempt("write barrier");
        let p = runtime::current_p_id().expect("a mutator runs on a P");
        let seq = self.state.recorded.load(Ordering::Relaxed);
        let value = (u64::from(self.state.index) << SEQ_BITS) | seq;
        self.gc.wbufs[p.index()].lock().push(value);
        self.state.recorded.store(seq + 1, Ordering::Release);
    }

    /// Counts an allocation in the current P's cache.
    pub fn allocate(&self) {
        let _region = runtime::no_preempt("allocating");
        let p = runtime::current_p_id().expect("a mutator runs on a P");
        self.gc.caches[p.index()].fetch_add(1, Ordering::AcqRel);
        self.state.allocs.fetch_add(1, Ordering::Release);
    }

    /// Changes the root set, without a safe point in between, as a running goroutine
    /// changes its stack.
    /// A goroutine stopped asynchronously (a signal) is never stopped in between: the stores
    /// are one unsafe point, as a compiler marks a sequence that stack maps do not describe.
    pub fn update_roots(&self, x: u64) {
        let words = [x, x.rotate_left(17), x.wrapping_mul(31)];
        runtime::without_async_safe_point(|| {
            for (slot, w) in self.state.roots.iter().zip(words) {
                slot.store(w, Ordering::Relaxed);
            }
            self.state.roots[3].store(words[0] ^ words[1] ^ words[2], Ordering::Release);
        });
    }
}

impl Drop for Mutator {
    fn drop(&mut self) {
        self.gc.roots.lock().remove(&self.state.goid);
    }
}

#[cfg(test)]
mod tests {
    use super::MarkBits;

    #[test]
    fn mark_bits_find_doubles_and_keep_only_the_unmarked_tail() {
        let mut marks = MarkBits::default();
        for seq in (0..100_000).rev() {
            assert!(marks.mark(seq), "{seq} marked once");
        }
        assert_eq!(marks.prefix, 100_000);
        assert!(marks.bits.len() <= 1, "{} words kept", marks.bits.len());
        assert!(!marks.mark(5), "a value below the kept bits was marked");
        assert!(!marks.mark(99_999), "a value in the kept bits was marked");
        assert!(marks.mark(100_001));
        assert_eq!(marks.prefix, 100_000, "100,000 is still unmarked");
    }
}
