//! The safe `for_each_p` wrapper (Go's `forEachP`), single-P handshakes, and the checks
//! of every barrier: the layer above the runtime, which owns the strategy slot, the poll's
//! slow path, worldsema, the host's vtable with its exactly-once tally, the served-P policy
//! and the safepoint timeout.
//!
//! The protocol, as `README.md` beside this file describes it:
//!
#![doc = include_str!("README.md")]

mod handshake;

use std::sync::Arc;
use std::time::Duration;

use safepoint_abi::{Capabilities, MId, PId, PStatus, PluginError};

use crate::runtime::host::{Breach, Tally, counted_fn};
use crate::runtime::trace::EventKind;
use crate::runtime::{P, Shared, WaitReason, current_p, waiting_on_system_stack};
use crate::sys;

#[doc(hidden)]
pub use crate::runtime::host::time_ownership_check;
pub use crate::runtime::{
    LateP, OnTimeout, ServedPs, ServedPsStats, TIMEOUT_EXIT_STATUS, TimeoutReport, WorldGuard,
    acquire_world,
};
pub use handshake::{HandshakeReport, handshake};

/// A barrier's function, shared between the threads that run it for each P.
pub type BarrierFn = Arc<dyn Fn(PId) + Send + Sync>;

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
    /// The strategy called `f` more than once for a P; it ran the first time only.
    #[error(
        "strategy {strategy} broke the for_each_p contract: it called f {times} times for {p}; \
         f ran the first time only"
    )]
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
    /// The strategy called `f` for a P it did not own (contract 5); `f` did not run.
    #[error(
        "strategy {strategy} broke the for_each_p contract: it called f for {p}, which it did \
         not own ({p} was {status}, held by {}); f did not run. Only {p}'s own M at its safe \
         point (on_poll), a requester that stopped it (try_stop_parked_p, on that thread), or \
         a requester serving it stopped in a signal handler (Host::stopped_in_handler) may run \
         f for it",
        held_by.map_or_else(|| "no M".to_owned(), |m| m.to_string())
    )]
    Unowned {
        /// The strategy's name.
        strategy: String,
        /// The P.
        p: PId,
        /// Its status at the call.
        status: PStatus,
        /// The M that held it.
        held_by: Option<MId>,
    },
    /// The strategy released a P it had not stopped.
    #[error(
        "strategy {strategy} broke the for_each_p contract: it released {p}, which it had not \
         stopped on that thread ({p} was {status}); release_p gives back only a P that \
         try_stop_parked_p stopped"
    )]
    ReleasedUnstopped {
        /// The strategy's name.
        strategy: String,
        /// The P.
        p: PId,
        /// Its status at the release.
        status: PStatus,
    },
    /// The strategy called a barrier's `f` after the barrier returned; `f` did not run.
    #[error(
        "strategy {strategy} broke the for_each_p contract: it called f for {p} after its \
         barrier had returned ({calls} late call(s) in all); f did not run. A strategy must \
         not keep f, or a helper thread that calls it, past for_each_p_internal's return"
    )]
    LateCall {
        /// The strategy's name.
        strategy: String,
        /// The P of the first late call.
        p: PId,
        /// How many late calls.
        calls: u64,
    },
    /// An entry point of the strategy returned an error (or panicked) on a P's M during the
    /// barrier: the first one, which was printed as it happened.
    #[error(
        "strategy {strategy} failed in {} for {p}: {} ({times} failure(s) in this barrier)",
        error.entry_point.as_str(),
        error.message.as_str()
    )]
    EntryPoint {
        /// The strategy's name.
        strategy: String,
        /// The P whose M called it.
        p: PId,
        /// What it returned.
        #[source]
        error: PluginError,
        /// How many times an entry point failed in the barrier.
        times: u64,
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
    let own = current_p().filter(|p| std::ptr::eq(shared.p(p.id), *p));
    let own_p = own.map(|p| p.id);
    let runnable = shared.tally.reset();
    let barrier = BarrierInFlight::begin(shared, runnable);
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
    shared.in_flight.prepare(shared, &strategy);
    // The requester's own P is at a safe point for the whole barrier: its goroutine waits.
    let outer = own.map(P::enter_safe_point);
    // The strategy's reference, taken before the window (the strategy drops it inside).
    let f_for_strategy = f.clone();
    let start = sys::monotonic_nanos();
    shared.in_flight.started(start);
    let result = strategy
        .object
        .for_each_p_internal(f_for_strategy)
        .into_result();
    let duration = Duration::from_nanos(sys::monotonic_nanos().saturating_sub(start));
    if let Some(trace) = &shared.trace {
        trace.requester(EventKind::BarrierEnd);
    }
    // After the measured window, as the rest of the host's bookkeeping: the check that no
    // call of `f` runs on, and waking the served Ps, are not part of reaching them.
    shared.tally.close();
    if let (Some(p), Some(outer)) = (own, outer) {
        p.leave_safe_point(outer);
    }
    drop(barrier);
    let requester_cpu = Duration::from_nanos(cpu_clock().saturating_sub(cpu_start));
    shared.in_flight.end(f);
    let tally = &shared.tally;
    let panicked = tally.panicked.lock().take();
    let name = || strategy.name.clone();
    result.map_err(|error| BarrierError::Strategy {
        strategy: name(),
        error,
    })?;
    check_breaches(tally, tally, &strategy.name)?;
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

/// The breaches a closed tally recorded, most telling first: an entry point's error, a call
/// of `f` for a P the caller did not own or that does not exist, a release of a P the
/// caller had not stopped, a call after its barrier returned. `runtime` is the runtime's
/// own tally, which the host calls record into (the same as `tally` for a barrier).
pub(crate) fn check_breaches(
    runtime: &Tally,
    tally: &Tally,
    strategy: &str,
) -> Result<(), BarrierError> {
    let strategy = strategy.to_owned();
    if let Some((p, error, times)) = runtime.take_entry_error() {
        return Err(BarrierError::EntryPoint {
            strategy,
            p,
            error,
            times,
        });
    }
    let late = tally.late.take();
    let breach = runtime.take_breach();
    match tally.take_breach().or(breach) {
        Some(Breach::Unowned { p, status, held_by }) => Err(BarrierError::Unowned {
            strategy,
            p,
            status,
            held_by,
        }),
        Some(Breach::NoSuchP { p }) => Err(BarrierError::NoSuchP { strategy, p }),
        Some(Breach::ReleasedUnstopped { p, status }) => Err(BarrierError::ReleasedUnstopped {
            strategy,
            p,
            status,
        }),
        None => match late {
            Some((p, calls)) => Err(BarrierError::LateCall { strategy, p, calls }),
            None => Ok(()),
        },
    }
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
