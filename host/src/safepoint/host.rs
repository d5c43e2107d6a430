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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};

use crate::runtime::lock::Mutex;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RStr};
use safepoint_abi::{
    AbiVersion, Host, Host_TO, HostRef, LogLevel, OsThread, PId, PStatus, SafePointFn,
    SafePointFn_TO, SafePointFnArc,
};

use super::BarrierFn;
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
    fn p(&self, id: PId) -> Option<&'static P> {
        let p = self.shared.ps.get(id.index());
        if p.is_none() {
            self.log(
                LogLevel::Error,
                RStr::from_str(&format!(
                    "strategy named {id}, but this runtime has {} Ps",
                    self.shared.ps.len()
                )),
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
            self.log(
                LogLevel::Error,
                RStr::from_str(&format!(
                    "strategy released {}, which it had not stopped (it is {status})",
                    p.id
                )),
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
        sys::write_stderr(format!("safepoint: {level}: {message}\n").as_bytes());
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
}

/// Per-barrier bookkeeping of the host: how often `f` ran for each P, and by whom.
pub(crate) struct Tally {
    pub(crate) counts: Box<[AtomicU32]>,
    /// The runtime's Ps, to record in each that this barrier served it.
    ps: &'static [P],
    /// The barrier's number (see `served.rs`).
    barrier: u32,
    /// The requester's own P.
    pub(crate) own_p: Option<PId>,
    /// `f` ran on the P's own M, at its safe point.
    pub(crate) by_self: AtomicU32,
    /// `f` ran on another thread (the requester), on the P's behalf.
    pub(crate) by_requester: AtomicU32,
    /// The first panic of the user's `f`, with its P.
    pub(crate) panicked: Mutex<Option<(PId, String)>>,
    /// A call for a P that does not exist.
    pub(crate) bad_p: Mutex<Option<PId>>,
}

impl Tally {
    pub(crate) fn new(ps: &'static [P], barrier: u32, own_p: Option<PId>) -> Tally {
        Tally {
            counts: ps.iter().map(|_| AtomicU32::new(0)).collect(),
            ps,
            barrier,
            own_p,
            by_self: AtomicU32::new(0),
            by_requester: AtomicU32::new(0),
            panicked: Mutex::new(None),
            bad_p: Mutex::new(None),
        }
    }

    pub(crate) fn count(&self, p: PId) -> u32 {
        self.counts[p.index()].load(Ordering::Acquire)
    }
}

/// The user's function, as the strategy sees it: counted and panic-proof.
#[derive(Clone)]
struct CountedFn {
    tally: Arc<Tally>,
    f: BarrierFn,
}

pub(crate) fn counted_fn(tally: &Arc<Tally>, f: BarrierFn) -> SafePointFnArc {
    install_quiet_panic_hook();
    SafePointFn_TO::from_ptr(
        RArc::new(CountedFn {
            tally: Arc::clone(tally),
            f,
        }),
        TD_Opaque,
    )
}

impl SafePointFn for CountedFn {
    fn call(&self, p: PId) {
        let Some(count) = self.tally.counts.get(p.index()) else {
            self.tally.bad_p.lock().get_or_insert(p);
            return;
        };
        count.fetch_add(1, Ordering::AcqRel);
        self.tally.ps[p.index()]
            .served_in
            .store(self.tally.barrier, Ordering::Relaxed);
        if self.tally.own_p != Some(p) {
            let by = if current_p().is_some_and(|cur| cur.id == p) {
                &self.tally.by_self
            } else {
                &self.tally.by_requester
            };
            by.fetch_add(1, Ordering::Relaxed);
        }
        let outer = enter_barrier_fn(true);
        let result = catch_unwind(AssertUnwindSafe(|| (self.f)(p)));
        enter_barrier_fn(outer);
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
