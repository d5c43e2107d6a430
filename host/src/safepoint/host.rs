//! The host's side of the ABI: the [`Host`] vtable a strategy calls, and the wrapped
//! barrier function it runs for each P.
//!
//! Nothing here may panic: these functions are called from plugin code through `extern "C"`
//! shims, where an unwinding panic would end the process. A bad argument from a plugin
//! (a P that does not exist, releasing a P it did not stop) is logged and ignored.
//!
//! Nothing here takes a process-global lock either, on the paths a plugin calls during a
//! barrier and around `f`: a goroutine stopped in a signal handler may hold one (the stderr
//! lock in the middle of a `println!`, the backtrace lock of a panic hook) for the whole
//! barrier. The log writes with one `write(2)`; a panic of `f` is recorded without the panic
//! hook's output ([`install_quiet_panic_hook`]).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};

use crate::runtime::lock::Mutex;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RStr};
use safepoint_abi::{
    AbiVersion, CachePadded, Host, Host_TO, HostRef, LogLevel, OsThread, PId, PStatus, SafePointFn,
    SafePointFn_TO, SafePointFnArc,
};

use crate::runtime::trace::{EventKind, Tracer};
use crate::runtime::{self, P, Shared, current_p, poll_bits};
use crate::sys;

/// A new [`HostRef`] for the runtime behind `shared`.
pub(crate) fn host_ref(shared: &Arc<Shared>) -> HostRef {
    Host_TO::from_ptr(
        RArc::new(HostHandle {
            shared: Arc::clone(shared),
        }),
        TD_Opaque,
    )
}

#[derive(Clone)]
struct HostHandle {
    shared: Arc<Shared>,
}

impl HostHandle {
    /// The P `id` names; `None`, logged, if none. No allocation and no lock on either
    /// path: the async-signal-safe methods go through here.
    fn p(&self, id: PId) -> Option<&'static P> {
        let p = self.shared.ps.get(id.index());
        if p.is_none() {
            self.shared.log_limit.write_line(
                sys::monotonic_nanos(),
                format_args!(
                    "safepoint: error: strategy named {id}, but this runtime has {} Ps",
                    self.shared.ps.len()
                ),
            );
        }
        p
    }
}

impl Host for HostHandle {
    fn procs(&self) -> u32 {
        self.shared.ps.len() as u32
    }

    fn p_status(&self, p: PId) -> PStatus {
        self.p(p).map_or(PStatus::Dead, |p| p.status.load())
    }

    fn current_p(&self) -> ROption<PId> {
        // A thread's P may belong to another runtime in the same process.
        current_p()
            .filter(|p| {
                self.shared
                    .ps
                    .get(p.id.index())
                    .is_some_and(|mine| std::ptr::eq(mine, *p))
            })
            .map(|p| p.id)
            .into()
    }

    fn arm_poll(&self, p: PId) {
        if let Some(p) = self.p(p) {
            // Before the arm: the P may reach its safe point, and trace it, at once.
            if let Some(trace) = &self.shared.trace {
                trace.p(p.id, EventKind::Armed);
            }
            p.poke();
        }
    }

    fn disarm_poll(&self, p: PId) {
        if let Some(p) = self.p(p) {
            p.disarm(poll_bits::SAFEPOINT);
        }
    }

    fn try_stop_parked_p(&self, p: PId) -> bool {
        self.p(p).is_some_and(P::try_stop_parked)
    }

    fn release_p(&self, p: PId) {
        if let Some(p) = self.p(p)
            && let Err(status) = p.release_stopped()
        {
            self.shared.log_limit.write_line(
                sys::monotonic_nanos(),
                format_args!(
                    "safepoint: error: strategy released {}, which it had not stopped (it is \
                     {status})",
                    p.id
                ),
            );
        }
    }

    fn p_thread(&self, p: PId) -> ROption<OsThread> {
        self.p(p)
            .and_then(P::m)
            .and_then(|m| self.shared.m_by_id(m))
            .and_then(|m| m.thread.get().copied())
            .into()
    }

    fn now_nanos(&self) -> u64 {
        sys::monotonic_nanos()
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let level = match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warning",
            LogLevel::Info => "info",
        };
        // Rate-limited, formatted on the stack, one write(2), EPIPE ignored: a plugin may
        // log from anywhere, and `| head` may have closed stderr.
        self.shared.log_limit.write_line(
            sys::monotonic_nanos(),
            format_args!("safepoint: {level}: {}", message.as_str()),
        );
    }

    fn at_async_safe_point(&self) -> bool {
        runtime::at_async_safe_point()
    }

    fn oversubscribed(&self) -> bool {
        self.shared.served.oversubscribed()
    }

    fn give_way(&self, p: PId) {
        // Only for the caller's own P: a strategy cannot make another P's M wait.
        if let Some(mine) = self.shared.ps.get(p.index())
            && current_p().is_some_and(|cur| std::ptr::eq(cur, mine))
        {
            self.shared.served.give_way(mine);
        }
    }

    fn abi_version(&self) -> AbiVersion {
        safepoint_abi::ABI_VERSION
    }

    fn trace_signal(&self, p: PId, resend: bool) {
        if let Some(trace) = &self.shared.trace {
            trace.p(p, EventKind::Signal { resend });
        }
    }
}

/// The host's bookkeeping of the barrier in flight: how often `f` ran for each P, and by
/// whom. One per runtime, reset by the requester as each barrier begins, so the requester's
/// path allocates nothing for it; each P's slot is on a line of its own, so a served P
/// writes no line another P writes.
pub(crate) struct Tally {
    slots: Box<[CachePadded<Slot>]>,
    /// The runtime's Ps, to record in each that this barrier served it.
    ps: &'static [P],
    /// The number of the barrier in flight (see `served.rs`); a call of an older barrier's
    /// `f` (a strategy that kept it past its return) counts for nothing.
    barrier: AtomicU32,
    /// The first panic of the user's `f`, with its P.
    pub(crate) panicked: Mutex<Option<(PId, String)>>,
    /// A call for a P that does not exist.
    pub(crate) bad_p: Mutex<Option<PId>>,
}

/// One P's part of the tally.
#[derive(Default)]
struct Slot {
    /// Times `f` ran for the P in this barrier.
    calls: AtomicU32,
    /// The last call ran on the P's own M, at its safe point.
    by_self: AtomicBool,
    /// The P was not `Dead` as the barrier began.
    live: AtomicBool,
}

/// Who ran `f` for the Ps of a barrier, as [`Tally::summary`] finds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TallySummary {
    pub(crate) live: u32,
    pub(crate) by_self: u32,
    pub(crate) by_requester: u32,
    /// The first live P that `f` did not run for, and how many were missed.
    pub(crate) missed: Option<(PId, usize)>,
    /// The first P that `f` ran for more than once, and how often.
    pub(crate) repeated: Option<(PId, u32)>,
}

impl Tally {
    pub(crate) fn new(ps: &'static [P]) -> Tally {
        Tally {
            slots: ps.iter().map(|_| CachePadded::default()).collect(),
            ps,
            barrier: AtomicU32::new(0),
            panicked: Mutex::new(None),
            bad_p: Mutex::new(None),
        }
    }

    /// Resets the tally, with the Ps not `Dead` as the barrier begins. Returns the runnable
    /// Ms: those that run a P, and those asleep until the last barrier's end, which its
    /// wake-up has made runnable (their Ps are `Idle` meanwhile, see `served.rs`). The caller
    /// holds worldsema, and next calls [`Tally::open`].
    pub(crate) fn reset(&self) -> usize {
        let mut runnable = 0;
        for (slot, p) in self.slots.iter().zip(self.ps) {
            let status = p.status.load();
            slot.calls.store(0, Ordering::Relaxed);
            slot.by_self.store(false, Ordering::Relaxed);
            slot.live.store(status != PStatus::Dead, Ordering::Relaxed);
            if status == PStatus::Running || p.giving_way.load(Ordering::Relaxed) {
                runnable += 1;
            }
        }
        runnable
    }

    /// From now on, the calls of barrier `barrier`'s `f` count.
    pub(crate) fn open(&self, barrier: u32) {
        // Release: published to the Ps with the strategy's arm, which follows.
        self.barrier.store(barrier, Ordering::Release);
    }

    pub(crate) fn count(&self, p: PId) -> u32 {
        self.slots[p.index()].calls.load(Ordering::Acquire)
    }

    /// Whether the last call of `f` for `p` ran on `p`'s own M, at its safe point.
    pub(crate) fn ran_by_itself(&self, p: PId) -> bool {
        self.slots[p.index()].by_self.load(Ordering::Relaxed)
    }

    /// After the strategy returned: who ran `f` for whom. `own_p` is the requester's P.
    pub(crate) fn summary(&self, own_p: Option<PId>) -> TallySummary {
        let mut summary = TallySummary::default();
        let mut missed = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let p = PId(i as u32);
            let calls = slot.calls.load(Ordering::Acquire);
            if slot.live.load(Ordering::Relaxed) {
                summary.live += 1;
                if calls == 0 {
                    missed += 1;
                    summary.missed.get_or_insert((p, 0));
                }
            }
            if calls > 1 && summary.repeated.is_none() {
                summary.repeated = Some((p, calls));
            }
            if calls > 0 && own_p != Some(p) {
                if slot.by_self.load(Ordering::Relaxed) {
                    summary.by_self += 1;
                } else {
                    summary.by_requester += 1;
                }
            }
        }
        if let Some((_, n)) = &mut summary.missed {
            *n = missed;
        }
        summary
    }
}

/// The user's function, as the strategy sees it: counted and panic-proof. (The ABI's
/// `SafePointFn` is `Clone`, which the user's closure need not be, hence its `Arc`.)
struct CountedFn<F> {
    tally: Arc<Tally>,
    trace: Option<Arc<Tracer>>,
    barrier: u32,
    f: Arc<F>,
}

impl<F> Clone for CountedFn<F> {
    fn clone(&self) -> Self {
        CountedFn {
            tally: Arc::clone(&self.tally),
            trace: self.trace.clone(),
            barrier: self.barrier,
            f: Arc::clone(&self.f),
        }
    }
}

/// The barrier function a strategy gets for barrier `barrier`, counted in `tally`.
/// Traced in `trace`, if the runtime traces.
pub(crate) fn counted_fn<F>(
    tally: &Arc<Tally>,
    trace: Option<Arc<Tracer>>,
    barrier: u32,
    f: F,
) -> SafePointFnArc
where
    F: Fn(PId) + Send + Sync + 'static,
{
    install_quiet_panic_hook();
    SafePointFn_TO::from_ptr(
        RArc::new(CountedFn {
            tally: Arc::clone(tally),
            trace,
            barrier,
            f: Arc::new(f),
        }),
        TD_Opaque,
    )
}

impl<F> SafePointFn for CountedFn<F>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    fn call(&self, p: PId) {
        if self.tally.barrier.load(Ordering::Acquire) != self.barrier {
            return;
        }
        let Some(slot) = self.tally.slots.get(p.index()) else {
            self.tally.bad_p.lock().get_or_insert(p);
            return;
        };
        slot.calls.fetch_add(1, Ordering::AcqRel);
        let on_own_m = current_p().is_some_and(|cur| cur.id == p);
        if on_own_m {
            slot.by_self.store(true, Ordering::Relaxed);
        }
        let the_p = &self.tally.ps[p.index()];
        the_p.served_in.store(self.barrier, Ordering::Relaxed);
        if let Some(trace) = &self.trace {
            trace.reached(the_p, on_own_m);
        }
        let outer = enter_barrier_fn(true);
        let result = catch_unwind(AssertUnwindSafe(|| (self.f)(p)));
        enter_barrier_fn(outer);
        if let Some(trace) = &self.trace {
            trace.p(p, EventKind::FnEnd);
        }
        if let Err(payload) = result {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            self.tally.panicked.lock().get_or_insert((p, msg));
        }
    }
}

thread_local! {
    /// The thread runs the user's barrier function: a panic there is recorded by
    /// [`CountedFn`], and the panic hook stays silent.
    static IN_BARRIER_FN: Cell<bool> = const { Cell::new(false) };
}

/// Sets whether the thread runs the barrier function; returns the previous setting. Not
/// inlined, as every runtime thread-local access (see `runtime::current`).
#[inline(never)]
fn enter_barrier_fn(on: bool) -> bool {
    IN_BARRIER_FN.with(|b| b.replace(on))
}

#[inline(never)]
fn in_barrier_fn() -> bool {
    IN_BARRIER_FN.with(Cell::get)
}

/// Installs, once per process, a panic hook that does nothing for a panic inside the
/// barrier function and hands every other panic to the hook it replaced. The default hook
/// takes the backtrace lock and writes to stderr, either of which a goroutine stopped in its
/// handler may hold while `f` runs for its P; the message is recorded from the payload
/// instead. A hook the application sets later replaces this one (and chains or not, as it
/// chooses).
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !in_barrier_fn() {
                previous(info);
            }
        }));
    });
}
