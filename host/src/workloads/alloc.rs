//! `alloc`: binary-trees under a GC paced by allocation volume.
//!
//! A goroutine on every P but the requester's (at least one) runs the benchmarks game's
//! binary-trees: it builds one long-lived tree of depth [`tree_depth`], then again and again
//! builds, checks and frees short-lived trees, `2^(tree_depth - d + 4)` of each depth `d`
//! from 4 up to `tree_depth` in steps of 2.
//!
//! Every node is allocated through the GC's per-P cache ([`GcMutator::allocate`]), and each
//! of a parent's two pointer stores goes through the write barrier into the P's buffer
//! ([`GcMutator::record`]); both end at a safe point, as Go's `mallocgc` does. Every 8 KiB (a
//! span) the mutator reports its allocation to the [`Pacer`] (GOGC 100, a heap minimum of
//! 256 KiB: Go's 4 MiB scaled to this heap), and the refill that crosses the heap goal
//! triggers a cycle. The requester is the GC goroutine: it runs each triggered cycle (the
//! mark, then `gc_mark_done` and `gc_mark_termination`, the two `forEachP` call sites), and
//! those are the run's barriers. Without barriers (a baseline) no cycle runs: Go's
//! `GOGC=off`.
//!
//! Checks: every cycle's invariants (each recorded value marked exactly once, every stack
//! scanned, every cache flushed), the run's total after a last cycle, and every tree has the
//! nodes its depth says.
//!
//! [`tree_depth`]: super::WorkloadParams::tree_depth

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::gc::{Gc, GcError, Mutator as GcMutator, Pacer};
use crate::runtime::lock::Mutex;
use crate::runtime::{self, Runtime, WaitGroup};

use super::{
    BarrierTally, GcSummary, RunError, WorkloadMetric, WorkloadParams, WorkloadReport,
    final_gc_cycle,
};

pub(super) const DESCRIPTION: &str = "binary-trees allocating through per-P caches with write \
     barriers, GC cycles paced by allocation; reports the allocation rate and GC cycles";

/// The depth of the smallest short-lived trees.
const MIN_DEPTH: u32 = 4;
/// Go's default `GOGC`: the heap may grow by 100 % of the live heap before the next cycle.
const GOGC: u64 = 100;
/// The smallest heap goal.
const HEAP_MINIMUM: u64 = 256 << 10;
/// Allocation is reported to the pacer a span at a time.
const SPAN_BYTES: u64 = 8 << 10;

/// A tree node: two pointers, 16 bytes, as in the benchmarks game.
struct Node {
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

const NODE_BYTES: u64 = std::mem::size_of::<Node>() as u64;

/// The nodes of a tree of `depth`.
fn nodes_of(depth: u32) -> u64 {
    (1 << (depth + 1)) - 1
}

/// A broken invariant of the binary trees themselves.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A checked tree did not have the nodes of its depth.
    #[error("alloc: a binary tree of depth {depth} has {found} nodes, expected {expected}")]
    WrongTree {
        /// Its depth.
        depth: u32,
        /// Nodes a tree of that depth has.
        expected: u64,
        /// Nodes the check counted.
        found: u64,
    },
}

/// What `alloc` measured.
#[derive(Clone, Copy, Debug)]
pub struct AllocReport {
    /// The long-lived tree's depth.
    pub tree_depth: u32,
    /// Binary-trees goroutines.
    pub mutators: usize,
    /// Nodes allocated.
    pub nodes: u64,
    /// Bytes allocated.
    pub bytes: u64,
    /// How long the goroutines allocated.
    pub elapsed: Duration,
    /// The pacer's heap goal at the end, in bytes.
    pub heap_goal: u64,
}

impl AllocReport {
    /// Bytes allocated per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nodes allocated per second.
    pub fn allocs_per_sec(&self) -> f64 {
        self.nodes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for AllocReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  alloc            binary-trees of depth {} on {} goroutine(s): {} nodes ({:.1} MB) in {:.2} s",
            self.tree_depth,
            self.mutators,
            self.nodes,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "    allocation rate  {:.2} M allocs/s, {:.1} MB/s; heap goal {} KiB (GOGC {GOGC})",
            self.allocs_per_sec() / 1e6,
            self.bytes_per_sec() / 1e6,
            self.heap_goal >> 10
        )
    }
}

/// What the binary-trees goroutines and the requester share.
struct Shared {
    gc: Arc<Gc>,
    pacer: Pacer,
    /// Bytes in trees that are built and not yet freed: what a cycle marks.
    live: AtomicU64,
    nodes: AtomicU64,
    failure: Mutex<Option<AllocError>>,
}

/// The running workload.
pub(super) struct Alloc {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    done: WaitGroup,
    started: Instant,
    mutators: usize,
    tree_depth: u32,
}

/// The requester's side: the GC goroutine that runs the cycles the pacer triggers.
pub(super) struct Paced(Arc<Shared>);

impl Alloc {
    pub(super) fn start(rt: &Runtime, params: &WorkloadParams) -> Alloc {
        let procs = rt.procs();
        let shared = Arc::new(Shared {
            gc: Gc::start(rt, procs.div_ceil(4)),
            pacer: Pacer::new(GOGC, HEAP_MINIMUM),
            live: AtomicU64::new(0),
            nodes: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        let alloc = Alloc {
            shared,
            stop: Arc::new(AtomicBool::new(false)),
            done: WaitGroup::new(),
            started: Instant::now(),
            mutators: (procs - 1).max(1),
            tree_depth: params.tree_depth.max(MIN_DEPTH),
        };
        for _ in 0..alloc.mutators {
            let (shared, stop, done) = (
                Arc::clone(&alloc.shared),
                Arc::clone(&alloc.stop),
                alloc.done.clone(),
            );
            let depth = alloc.tree_depth;
            done.add(1);
            rt.spawn("binary-trees", move || {
                let result = binary_trees(&shared, depth, &stop);
                if let Err(e) = result {
                    shared.failure.lock().get_or_insert(e);
                }
                done.done();
            });
        }
        alloc
    }

    pub(super) fn paced(&self) -> Paced {
        Paced(Arc::clone(&self.shared))
    }

    /// Stops the goroutines, runs the last cycle and checks the run's total.
    pub(super) fn stop(self, rt: &Runtime, summary: GcSummary) -> Result<WorkloadReport, RunError> {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        let elapsed = self.started.elapsed();
        let summary = final_gc_cycle(rt, &self.shared.gc, summary);
        if let Some(e) = self.shared.failure.lock().take() {
            return Err(e.into());
        }
        let nodes = self.shared.nodes.load(Ordering::Relaxed);
        Ok(WorkloadReport {
            work_units: nodes,
            elapsed,
            eintrs: 0,
            gc: Some(summary?),
            metric: Some(WorkloadMetric::Alloc(AllocReport {
                tree_depth: self.tree_depth,
                mutators: self.mutators,
                nodes,
                bytes: nodes * NODE_BYTES,
                elapsed,
                heap_goal: self.shared.pacer.goal(),
            })),
        })
    }
}

impl Paced {
    /// The main phase: runs the cycles the pacer triggers until their barriers (two each)
    /// reach `barriers`, or the deadline passes.
    pub(super) fn cycles(
        &self,
        barriers: u64,
        deadline: Option<Instant>,
        tally: &mut BarrierTally,
    ) -> Result<GcSummary, GcError> {
        let Paced(shared) = self;
        let mut summary = GcSummary::new();
        while summary.cycles * 2 < barriers && deadline.is_none_or(|d| Instant::now() < d) {
            shared.pacer.wait_for_trigger();
            let cycle = shared.gc.cycle()?;
            shared.pacer.cycle_done(shared.live.load(Ordering::Relaxed));
            summary.add(&cycle);
            tally.add(None, &cycle.mark_done);
            tally.add(None, &cycle.mark_termination);
        }
        Ok(summary)
    }
}

/// One goroutine's binary-trees, until `stop`.
fn binary_trees(shared: &Shared, depth: u32, stop: &AtomicBool) -> Result<(), AllocError> {
    let gc = shared.gc.mutator();
    let mut heap = Heap {
        gc: &gc,
        pacer: &shared.pacer,
        in_span: 0,
        nodes: 0,
    };
    let long_lived = heap.tree(depth);
    let long_lived_bytes = nodes_of(depth) * NODE_BYTES;
    shared.live.fetch_add(long_lived_bytes, Ordering::Relaxed);
    let result = 'run: loop {
        for d in (MIN_DEPTH..=depth).step_by(2) {
            for _ in 0..1u64 << (depth - d + MIN_DEPTH) {
                if stop.load(Ordering::Relaxed) {
                    break 'run checked(&long_lived, depth);
                }
                let tree = heap.tree(d);
                let bytes = nodes_of(d) * NODE_BYTES;
                shared.live.fetch_add(bytes, Ordering::Relaxed);
                let checked = checked(&tree, d);
                gc.update_roots(heap.nodes);
                free(Some(tree));
                shared.live.fetch_sub(bytes, Ordering::Relaxed);
                if checked.is_err() {
                    break 'run checked;
                }
            }
        }
    };
    free(Some(long_lived));
    shared.live.fetch_sub(long_lived_bytes, Ordering::Relaxed);
    shared.nodes.fetch_add(heap.nodes, Ordering::Relaxed);
    result
}

/// A mutator's allocator: the GC's per-P cache and write barrier, and the pacer.
struct Heap<'a> {
    gc: &'a GcMutator,
    pacer: &'a Pacer,
    /// Bytes allocated in the current span.
    in_span: u64,
    nodes: u64,
}

impl Heap<'_> {
    /// Go's `bottomUpTree`.
    fn tree(&mut self, depth: u32) -> Box<Node> {
        let node = if depth == 0 {
            Node {
                left: None,
                right: None,
            }
        } else {
            let (left, right) = (self.tree(depth - 1), self.tree(depth - 1));
            // The parent's two pointer stores.
            self.gc.record();
            self.gc.record();
            Node {
                left: Some(left),
                right: Some(right),
            }
        };
        self.gc.allocate();
        self.nodes += 1;
        self.in_span += NODE_BYTES;
        if self.in_span >= SPAN_BYTES {
            self.in_span = 0;
            if self.pacer.allocated(SPAN_BYTES) {
                // Let the GC goroutine start the cycle, as Go's `gcStart` runs on the
                // allocating goroutine.
                runtime::yield_now();
            }
        }
        Box::new(node)
    }
}

/// The benchmark's `check`: the tree's node count, with a safe point at each call, as a
/// function prologue has.
fn check(node: &Node) -> u64 {
    runtime::poll();
    1 + node.left.as_deref().map_or(0, check) + node.right.as_deref().map_or(0, check)
}

fn checked(tree: &Node, depth: u32) -> Result<(), AllocError> {
    let (expected, found) = (nodes_of(depth), check(tree));
    if found == expected {
        Ok(())
    } else {
        Err(AllocError::WrongTree {
            depth,
            expected,
            found,
        })
    }
}

/// Frees a tree node by node, with a safe point at each, as Go's sweeper would reclaim it.
fn free(tree: Option<Box<Node>>) {
    if let Some(node) = tree {
        let Node { left, right } = *node;
        free(left);
        free(right);
        runtime::poll();
    }
}
