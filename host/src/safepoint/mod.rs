//! The safe `for_each_p` wrapper (Go's `forEachP`), the poll's slow path, worldsema, the
//! host's exactly-once check and the safepoint timeout.
//!
//! The protocol, as `README.md` beside this file describes it:
//!
#![doc = include_str!("README.md")]

mod handshake;
mod host;
pub(crate) mod log;
mod served;
mod timeout;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use safepoint_abi::{Capabilities, PId, PluginError, StrategyBox};

use crate::runtime::trace::{self, EventKind, ReachedBy};
use crate::runtime::{
    P, Shared, WaitReason, current_g, current_p, poll_bits, waiting_on_system_stack,
};
use crate::sys;

pub use handshake::{HandshakeReport, handshake};
pub(crate) use host::Tally;
use host::counted_fn;
pub(crate) use host::host_ref;
pub(crate) use served::Gate;
pub use served::{ServedPs, ServedPsStats};
pub(crate) use timeout::{InFlight, SafepointConfig, check_timeout};
pub use timeout::{LateP, OnTimeout, TIMEOUT_EXIT_STATUS, TimeoutReport};

/// A barrier's function, shared between the threads that run it for each P.
pub type BarrierFn = Arc<dyn Fn(PId) + Send + Sync>;

/// The strategy a runtime uses now.
pub(crate) struct ActiveStrategy {
    pub(crate) name: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) object: StrategyBox,
}

/// The poll's slow path and every scheduler transition: if a strategy armed `p`, call its
/// `on_poll`, and return true. The caller is `p`'s M, outside any non-preemptible region.
///
/// A caller that goes on running goroutines next calls [`give_way`] or
/// [`give_way_on_goroutine`]; one that parks the P (idle, syscall) frees its CPU anyway.
pub(crate) fn serve(shared: &Shared, p: &P, how: ReachedBy) -> bool {
    if p.poll.word.load(std::sync::atomic::Ordering::Acquire) & poll_bits::SAFEPOINT == 0 {
        return false;
    }
    let on_poll = || {
        shared.with_strategy(|strategy| {
            // On the P's own M, maybe with stderr closed: a line that cannot panic or
            // block, and not one per poll if the strategy fails at every poll.
            if let Err(e) = strategy.object.on_poll(p.id).into_result() {
                shared.log_limit.write_line(
                    sys::monotonic_nanos(),
                    format_args!(
                        "safepoint: strategy {} failed at a safe point of {}: {e}",
                        strategy.name, p.id
                    ),
                );
            }
        });
    };
    if shared.trace.is_some() {
        trace::reaching(how, on_poll);
    } else {
        on_poll();
    }
    true
}

/// The served-P policy (see `served.rs`), on `p`'s M in the scheduler, after [`serve`].
pub(crate) fn give_way(shared: &Shared, p: &P) {
    shared.served.give_way(p);
}

/// The served-P policy on `p`'s M at a goroutine's poll, after [`serve`]: a wait happens on
/// the system stack with the goroutine in `Waiting(waiting for forEachP)`, so that a GC stack
/// scan can proceed meanwhile.
pub(crate) fn give_way_on_goroutine(shared: &Shared, p: &P) {
    if shared.served.must_wait(p).is_some() {
        waiting_on_system_stack(WaitReason::ForEachPServed, || shared.served.give_way(p));
    } else {
        shared.served.give_way(p);
    }
}

/// Evidence that the holder owns worldsema (Go's `semacquire(&worldsema)`): at most one
/// barrier is in flight. Released on drop.
#[must_use = "worldsema is released when the guard drops"]
pub struct WorldGuard {
    shared: Arc<Shared>,
    // Not Send (it is released by the goroutine that took it), but Sync.
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

/// Takes worldsema, parking the calling goroutine until it is free.
///
/// # Panics
///
/// If not called on a goroutine.
pub fn acquire_world() -> WorldGuard {
    let shared = crate::runtime::shared_of_current()
        .filter(|_| current_g().is_some())
        .expect("acquire_world: not called on a goroutine");
    shared.worldsema.acquire(WaitReason::StoppingTheWorld);
    WorldGuard {
        shared,
        _not_send: PhantomData,
    }
}

impl Drop for WorldGuard {
    fn drop(&mut self) {
        self.shared.worldsema.release();
    }
}

/// What one barrier did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierReport {
    /// Wall time of the strategy's `for_each_p_internal`.
    pub duration: Duration,
    /// CPU time the requester's thread spent in it; zero if the runtime was built with
    /// `measure_requester_cpu(false)`.
    pub requester_cpu: Duration,
    /// Ps that `f` ran for.
    pub ps: u32,
    /// Ps whose own M ran `f` at a safe point.
    pub by_themselves: u32,
    /// Ps the requester ran `f` for, on their behalf (idle, syscall).
    pub by_requester: u32,
}

/// Why a barrier failed.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// `for_each_p` needs a goroutine to move to `Waiting`.
    #[error("for_each_p: not called on a goroutine; run it inside Runtime::spawn or block_on")]
    NotOnGoroutine,
    /// The strategy returned without running `f` for a P.
    #[error(
        "strategy {strategy} broke the for_each_p contract: f did not run for {p} \
         ({missing} P(s) missed in all)"
    )]
    Skipped {
        /// The strategy's name.
        strategy: String,
        /// The first P it missed.
        p: PId,
        /// How many it missed.
        missing: usize,
    },
    /// The strategy ran `f` more than once for a P.
    #[error("strategy {strategy} broke the for_each_p contract: f ran {times} times for {p}")]
    Repeated {
        /// The strategy's name.
        strategy: String,
        /// The P.
        p: PId,
        /// How often `f` ran for it.
        times: u32,
    },
    /// The strategy ran `f` for a P that does not exist.
    #[error(
        "strategy {strategy} broke the for_each_p contract: f ran for {p}, which does not exist"
    )]
    NoSuchP {
        /// The strategy's name.
        strategy: String,
        /// The P it named.
        p: PId,
    },
    /// The strategy returned an error.
    #[error("strategy {strategy} failed in for_each_p_internal: {error}")]
    Strategy {
        /// The strategy's name.
        strategy: String,
        /// What it returned.
        #[source]
        error: PluginError,
    },
    /// A feature needs a capability the strategy lacks.
    #[error(
        "strategy {strategy} cannot do {feature}: it lacks the {capability} capability; \
         choose a strategy that has it (`safepoint list` shows each one's capabilities)"
    )]
    MissingCapability {
        /// The strategy's name.
        strategy: String,
        /// The missing capability (`single-p-handshake`).
        capability: Capabilities,
        /// What needed it.
        feature: &'static str,
    },
    /// A handshake ran `f` for another P than its own.
    #[error(
        "strategy {strategy} broke the handshake contract: a handshake for {target} ran f \
         for {p}"
    )]
    HandshakeStray {
        /// The strategy's name.
        strategy: String,
        /// The handshake's P.
        target: PId,
        /// The P `f` also ran for.
        p: PId,
    },
    /// The barrier's function panicked.
    #[error("the barrier function panicked for {p}: {message}")]
    FnPanicked {
        /// The P it ran for.
        p: PId,
        /// The panic message.
        message: String,
    },
}

/// Go's `forEachP`: runs `f` once for every P at a safe point of that P, and returns when
/// all have run. Everything each P wrote before its safe point happens-before the return.
///
/// The caller holds worldsema (`world`). On the system stack, the calling goroutine goes to
/// `Waiting(reason)` for the duration, so that a GC stack scan that waits for it can proceed
/// (Go change 533455); then it is `Running` again. `f` must not refer to the caller's stack,
/// hence `'static`.
///
/// ```
/// # use safepoint_host::{plugin, runtime::{Runtime, WaitReason}, safepoint};
/// # let polling = plugin::load("polling", &plugin::SearchPath::default()).unwrap();
/// let rt = Runtime::builder().procs(2).build(&polling, "").unwrap();
/// let report = rt.block_on(|| {
///     let world = safepoint::acquire_world();
///     safepoint::for_each_p(&world, WaitReason::GcMarkTermination, |p| {
///         // flush p's buffers...
///         let _ = p;
///     })
/// });
/// assert_eq!(report.unwrap().ps, 2);
/// ```
///
/// A closure that borrows the caller's stack is refused:
///
/// ```compile_fail
/// # use safepoint_host::{runtime::WaitReason, safepoint};
/// let world = safepoint::acquire_world();
/// let local = vec![1, 2, 3];
/// safepoint::for_each_p(&world, WaitReason::GcMarkTermination, |_| drop(local.len()));
/// ```
#[doc(alias = "forEachP")]
pub fn for_each_p<F>(
    world: &WorldGuard,
    reason: WaitReason,
    f: F,
) -> Result<BarrierReport, BarrierError>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    waiting_for(world, reason, move |shared| run_barrier(shared, reason, f))
}

/// Runs `request` on the system stack with the calling goroutine in `Waiting(reason)`
/// (Go change 533455): the transition every request of the world makes.
fn waiting_for<R: Send>(
    world: &WorldGuard,
    reason: WaitReason,
    request: impl FnOnce(&Arc<Shared>) -> Result<R, BarrierError> + Send,
) -> Result<R, BarrierError> {
    let shared = Arc::clone(&world.shared);
    waiting_on_system_stack(reason, move || request(&shared)).ok_or(BarrierError::NotOnGoroutine)?
}

/// Go's `forEachPInternal`, without the goroutine-status transition: calls the strategy
/// directly, on the caller's stack, with the caller's goroutine still `Running`.
///
/// For tests and demos that reproduce the deadlock `for_each_p` prevents.
///
/// # Safety
///
/// As Go's `forEachPInternal`: no GC may run while it does, or the caller's goroutine must
/// already be preemptible. Otherwise a GC worker that waits for the caller's goroutine to
/// reach a safe point (to scan its stack) deadlocks with the barrier, which waits for the
/// worker's P. Nothing memory-unsafe follows, but the program hangs.
#[allow(unsafe_code)]
#[doc(alias = "forEachPInternal")]
pub unsafe fn for_each_p_unchecked<F>(
    world: &WorldGuard,
    f: F,
) -> Result<BarrierReport, BarrierError>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    run_barrier(&world.shared, WaitReason::Zero, f)
}

/// Runs the strategy's barrier and checks the contract.
///
/// The requester's path allocates once, for `f` with its count (the tally, the live-P list
/// and the in-flight record are the runtime's, reset here), and reads the wall clock twice.
fn run_barrier<F>(
    shared: &Arc<Shared>,
    reason: WaitReason,
    f: F,
) -> Result<BarrierReport, BarrierError>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    let strategy = shared.strategy();
    let own_p = current_p().map(|p| p.id);
    let runnable = shared.tally.reset();
    let barrier = BarrierInFlight::begin(shared, runnable);
    shared.tally.open(barrier.number);
    let f = counted_fn(&shared.tally, shared.trace.clone(), barrier.number, f);
    // The thread CPU clock is a system call (hundreds of ns): read it outside the window
    // that `duration` measures.
    let cpu_clock = || {
        if shared.safepoint.requester_cpu {
            sys::thread_cpu_nanos()
        } else {
            0
        }
    };
    let cpu_start = cpu_clock();
    if let Some(trace) = &shared.trace {
        trace.barrier_begin(reason, &strategy.name);
    }
    let mut watch = shared.in_flight.lock();
    watch.prepare(shared, &strategy);
    let start = Instant::now();
    watch.started(start);
    drop(watch);
    let result = strategy.object.for_each_p_internal(f.clone()).into_result();
    let duration = start.elapsed();
    if let Some(trace) = &shared.trace {
        trace.requester(EventKind::BarrierEnd);
    }
    // After the measured window: waking the served Ps is not part of reaching them.
    drop(barrier);
    let requester_cpu = Duration::from_nanos(cpu_clock().saturating_sub(cpu_start));
    shared.in_flight.lock().end(f);
    let tally = &shared.tally;
    let (bad_p, panicked) = (tally.bad_p.lock().take(), tally.panicked.lock().take());
    let name = || strategy.name.clone();
    result.map_err(|error| BarrierError::Strategy {
        strategy: name(),
        error,
    })?;
    if let Some(p) = bad_p {
        return Err(BarrierError::NoSuchP {
            strategy: name(),
            p,
        });
    }
    let summary = tally.summary(own_p);
    if let Some((p, missing)) = summary.missed {
        return Err(BarrierError::Skipped {
            strategy: name(),
            p,
            missing,
        });
    }
    if let Some((p, times)) = summary.repeated {
        return Err(BarrierError::Repeated {
            strategy: name(),
            p,
            times,
        });
    }
    if let Some((p, message)) = panicked {
        return Err(BarrierError::FnPanicked { p, message });
    }
    Ok(BarrierReport {
        duration,
        requester_cpu,
        ps: summary.live,
        by_themselves: summary.by_self,
        by_requester: summary.by_requester,
    })
}

/// The barrier in flight, as the served-P gate knows it; its end wakes the Ms that wait for
/// it, on every path out of `run_barrier`.
struct BarrierInFlight<'a> {
    shared: &'a Shared,
    number: u32,
}

impl<'a> BarrierInFlight<'a> {
    fn begin(shared: &'a Shared, runnable: usize) -> BarrierInFlight<'a> {
        BarrierInFlight {
            shared,
            number: shared.served.begin(runnable),
        }
    }
}

impl Drop for BarrierInFlight<'_> {
    fn drop(&mut self) {
        self.shared.served.end();
    }
}
