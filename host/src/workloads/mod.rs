//! The workloads `safepoint run` and `safepoint compare` drive barriers against, the driver,
//! and the run summary.
//!
//! Five synthetic workloads (`poll`, `idle`, `syscall`, `mixed`, `nopoll`) run one loop on
//! every P but the requester's; three realistic ones have the shapes runtime engineers judge
//! a safe-point mechanism on: `alloc` (binary-trees under a paced GC), `server` (a goroutine
//! server over real sockets) and `compute` (a numeric kernel with compiler-style polls).
//! Each workload is a file of this module; `driver.rs` runs one (with `background.rs`, the
//! GC cycles and strategy swaps beside it), and `summary.rs` is what it reports.
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
mod background;
mod compute;
mod driver;
mod idle;
mod mixed;
mod mutators;
mod nopoll;
mod poll;
mod server;
mod soak;
mod summary;
mod syscall;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use safepoint_abi::Capabilities;

pub use alloc::{AllocError, AllocReport};
pub(crate) use background::final_gc_cycle;
pub use compute::{ComputeError, ComputeReport, KernelRate, Matmul, Polls};
pub(crate) use driver::{BarrierTally, Phase, PhaseFlag, Phases, WorkloadReport};
pub use driver::{Rotation, RunError, RunOptions, run};
pub use mutators::{MutatorReport, Mutators};
pub use server::{ServerError, ServerReport};
pub use soak::{MALLOC_ARENAS, RSS_SLACK_KIB, SoakReport, cap_malloc_arenas, soak};
pub(crate) use summary::quantiles;
pub use summary::{
    GcSummary, HandshakeSummary, RunSummary, SwapSummary, WorkloadMetric, latency_histogram,
};

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
