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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::runtime::lock::Mutex;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RStr};
use safepoint_abi::{
    AbiVersion, Host, Host_TO, HostRef, LogLevel, MId, OsThread, PId, PStatus, PluginError,
    SafePointFn, SafePointFn_TO, SafePointFnArc,
};
use safepoint_kit::CachePadded;

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
            self.shared
                .tally
                .record_breach(Breach::ReleasedUnstopped { p: p.id, status });
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

    fn stopped_in_handler(&self, p: PId, stopped: bool) -> bool {
        // Only for the caller's own P: a strategy cannot declare another P stopped.
        let Some(mine) = self.shared.ps.get(p.index()) else {
            return false;
        };
        if !current_p().is_some_and(|cur| std::ptr::eq(cur, mine)) {
            return false;
        }
        // Release: the requester that finds the stop (through the strategy's own
        // acquire) sees this before it calls `f`.
        mine.stopped_in_handler.store(stopped, Ordering::Release);
        true
    }
}

/// The host's bookkeeping of the barrier in flight: how often `f` ran for each P, and by
/// whom, and every breach of the contract the calls showed. One per runtime, reset by the
/// requester as each barrier begins, so the requester's path allocates nothing for it; each
/// P's slot is on a line of its own, so a served P writes no line another P writes.
///
/// A barrier *opens* the tally ([`Tally::reset`]: a new epoch, odd) and *closes* it when the
/// strategy returns ([`Tally::close`]: the epoch plus one, in every slot). A call of `f`
/// counts only if its slot carries the epoch of its `f`: a call after the close, or of an
/// older barrier's `f`, runs nothing and is recorded as late ([`LateCalls`]). The close
/// also waits for the call that ran `f` to finish, so `f` never runs after the barrier
/// returned.
pub(crate) struct Tally {
    slots: Box<[CachePadded<Slot>]>,
    /// The runtime's Ps, to check who owns them and to record that this barrier served them.
    ps: &'static [P],
    /// The epoch of the barrier in flight (odd), or of the last (closed: even + 1 in the
    /// slots). Written by the requester only.
    epoch: AtomicU32,
    /// The first panic of the user's `f`, with its P.
    pub(crate) panicked: Mutex<Option<(PId, String)>>,
    /// The first breach of ownership or of the P range (see [`Breach`]), packed.
    breach: AtomicU64,
    /// The first error a strategy's entry point returned on a P's M during the barrier
    /// (`on_poll`), and how many it returned in all.
    pub(crate) entry_error: Mutex<Option<(PId, PluginError)>>,
    pub(crate) entry_errors: AtomicU64,
    /// Calls after their barrier returned; shared with the runtime's handshakes.
    pub(crate) late: Arc<LateCalls>,
}

/// One P's part of the tally.
#[derive(Default)]
struct Slot {
    /// The epoch (upper 32 bits) and the times `f` was called for the P in it (lower 32
    /// bits). Only the first call runs `f`; the others are counted, for the report.
    word: AtomicU64,
    /// The first call has finished running `f`.
    ran: AtomicBool,
    /// The last call ran on the P's own M, at its safe point.
    by_self: AtomicBool,
    /// The P was not `Dead` as the barrier began.
    live: AtomicBool,
}

/// A breach of the contract seen in a call of `f` or a host call, as the barrier reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breach {
    /// `f` was called for a P the caller did not own; `f` did not run.
    Unowned {
        p: PId,
        status: PStatus,
        held_by: Option<MId>,
    },
    /// `f` was called for a P that does not exist.
    NoSuchP { p: PId },
    /// `release_p` for a P the caller had not stopped.
    ReleasedUnstopped { p: PId, status: PStatus },
}

impl Breach {
    // Packed as kind (8 bits) | status (8) | P (16) | M + 1 (32, 0 for none); 0 is "none".
    fn pack(self) -> u64 {
        let (kind, status, p, m) = match self {
            Breach::Unowned { p, status, held_by } => (
                1,
                status as u64,
                p.0,
                held_by.map_or(0, |m| u64::from(m.0) + 1),
            ),
            Breach::NoSuchP { p } => (2, 0, p.0, 0),
            Breach::ReleasedUnstopped { p, status } => (3, status as u64, p.0, 0),
        };
        kind << 56 | status << 48 | u64::from(p.min(0xffff)) << 32 | (m & 0xffff_ffff)
    }

    fn unpack(word: u64) -> Option<Breach> {
        let status = PStatus::from_u8((word >> 48) as u8).unwrap_or(PStatus::Dead);
        let p = PId(((word >> 32) & 0xffff) as u32);
        let m = (word & 0xffff_ffff) as u32;
        match word >> 56 {
            1 => Some(Breach::Unowned {
                p,
                status,
                held_by: m.checked_sub(1).map(MId),
            }),
            2 => Some(Breach::NoSuchP { p }),
            3 => Some(Breach::ReleasedUnstopped { p, status }),
            _ => None,
        }
    }
}

/// Calls of `f` after their barrier or handshake returned: none of them ran `f`. The first
/// one's P and barrier are kept, packed, for the report. Lock-free.
#[derive(Default)]
pub(crate) struct LateCalls {
    count: AtomicU64,
    /// P (upper 32 bits) + 1, and the epoch of the `f` called (lower 32 bits); 0: none.
    first: AtomicU64,
}

impl LateCalls {
    fn record(&self, p: PId, epoch: u32) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self.first.compare_exchange(
            0,
            (u64::from(p.0) + 1) << 32 | u64::from(epoch),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The late calls since the last take: the first one's P, and how many.
    pub(crate) fn take(&self) -> Option<(PId, u64)> {
        let first = self.first.swap(0, Ordering::Relaxed);
        let count = self.count.swap(0, Ordering::Relaxed);
        let p = (first >> 32).checked_sub(1)?;
        Some((PId(p as u32), count.max(1)))
    }
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

/// How the caller of `f(p)` owns `p` (DESIGN.md, contract 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// `p`'s own M, in the host's safe-point path for `p`.
    Itself,
    /// The thread that stopped `p` (`GcStop`).
    Stopper,
    /// A requester, for a `p` whose M is stopped in a signal handler.
    ForHandler,
}

/// Who owns `p`, for a call of `f(p)` on this thread; `None`: the caller does not.
/// A few loads and one thread-local read.
fn owner_of(p: &P) -> Option<Owner> {
    let mine = current_p().is_some_and(|cur| std::ptr::eq(cur, p));
    if mine {
        return p
            .at_safe_point
            .load(Ordering::Relaxed)
            .then_some(Owner::Itself);
    }
    if p.stopped_by_this_thread() {
        return Some(Owner::Stopper);
    }
    p.stopped_in_handler
        .load(Ordering::Acquire)
        .then_some(Owner::ForHandler)
}

/// For the fast-path bench, which guards the cost of the check: `iters` ownership checks of
/// a requester that stopped an idle P of `rt` (`try_stop_parked_p`), the path a barrier takes
/// for every parked P, and their wall time. `None` if no P of `rt` is idle to stop.
#[doc(hidden)]
pub fn time_ownership_check(rt: &runtime::Runtime, iters: u64) -> Option<Duration> {
    let p = rt.shared.ps.iter().find(|p| p.try_stop_parked())?;
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(owner_of(std::hint::black_box(p)));
    }
    let took = start.elapsed();
    let _ = p.release_stopped();
    Some(took)
}

fn epoch_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn calls_of(word: u64) -> u32 {
    word as u32
}

impl Tally {
    pub(crate) fn new(ps: &'static [P], late: Arc<LateCalls>) -> Tally {
        Tally {
            slots: ps.iter().map(|_| CachePadded::default()).collect(),
            ps,
            epoch: AtomicU32::new(0),
            panicked: Mutex::new(None),
            breach: AtomicU64::new(0),
            entry_error: Mutex::new(None),
            entry_errors: AtomicU64::new(0),
            late,
        }
    }

    /// Opens the tally for a new barrier, with the Ps not `Dead` as it begins. Returns the
    /// runnable Ms: those that run a P, and those asleep until the last barrier's end, which
    /// its wake-up has made runnable (their Ps are `Idle` meanwhile, see `served.rs`). The
    /// caller holds worldsema and hands [`Tally::epoch`] to the barrier's `f`.
    pub(crate) fn reset(&self) -> usize {
        let epoch = (self.epoch.load(Ordering::Relaxed) | 1).wrapping_add(2);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.breach.store(0, Ordering::Relaxed);
        let mut runnable = 0;
        for (slot, p) in self.slots.iter().zip(self.ps) {
            let status = p.status.load();
            slot.by_self.store(false, Ordering::Relaxed);
            slot.ran.store(false, Ordering::Relaxed);
            slot.live.store(status != PStatus::Dead, Ordering::Relaxed);
            // Release: a call that finds this epoch sees the resets above.
            slot.word.store(u64::from(epoch) << 32, Ordering::Release);
            if status == PStatus::Running || p.giving_way.load(Ordering::Relaxed) {
                runnable += 1;
            }
        }
        runnable
    }

    /// The epoch of the barrier in flight.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The strategy returned: from now on no call of this barrier's `f` counts, and the one
    /// that ran `f` for each P has finished when this returns. One CAS per P, after the
    /// barrier's measured window.
    pub(crate) fn close(&self) {
        let closed = u64::from(self.epoch().wrapping_add(1)) << 32;
        for slot in self.slots.iter() {
            // Keeps the count, changes the epoch: a call either counted before (and is
            // waited for below) or finds the epoch changed and runs nothing.
            let mut word = slot.word.load(Ordering::Relaxed);
            while let Err(now) = slot.word.compare_exchange_weak(
                word,
                closed | u64::from(calls_of(word)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                word = now;
            }
            let mut spins = 0u32;
            while calls_of(word) != 0 && !slot.ran.load(Ordering::Acquire) {
                crate::runtime::backoff(&mut spins);
            }
        }
    }

    pub(crate) fn count(&self, p: PId) -> u32 {
        calls_of(self.slots[p.index()].word.load(Ordering::Acquire))
    }

    /// Whether the last call of `f` for `p` ran on `p`'s own M, at its safe point.
    pub(crate) fn ran_by_itself(&self, p: PId) -> bool {
        self.slots[p.index()].by_self.load(Ordering::Relaxed)
    }

    /// The first breach seen since [`Tally::reset`] or the last take.
    pub(crate) fn take_breach(&self) -> Option<Breach> {
        Breach::unpack(self.breach.swap(0, Ordering::AcqRel))
    }

    /// Records `breach` if it is the first. Lock-free, for host calls from plugin code.
    pub(crate) fn record_breach(&self, breach: Breach) {
        let _ = self
            .breach
            .compare_exchange(0, breach.pack(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Records an error of a strategy's entry point on a P's M; true if it is the first
    /// of this barrier (the caller prints it).
    pub(crate) fn record_entry_error(&self, p: PId, error: &PluginError) -> bool {
        if self.entry_errors.fetch_add(1, Ordering::AcqRel) != 0 {
            return false;
        }
        self.entry_error.lock().get_or_insert((p, error.clone()));
        true
    }

    /// The first entry-point error since the last take, and how many there were. Kept across
    /// barriers: an error after the P's part of a barrier (a panic on the way out of
    /// `on_poll`) may land after that barrier's check, and fails the next barrier or handshake.
    pub(crate) fn take_entry_error(&self) -> Option<(PId, PluginError, u64)> {
        if self.entry_errors.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (p, error) = self.entry_error.lock().take()?;
        Some((p, error, self.entry_errors.swap(0, Ordering::Relaxed)))
    }

    /// The first entry-point error not yet taken, for a timeout report.
    pub(crate) fn peek_entry_error(&self) -> Option<String> {
        let guard = self.entry_error.lock();
        let (p, error) = guard.as_ref()?;
        Some(format!(
            "{} for {p}: {}",
            error.entry_point.as_str(),
            error.message.as_str()
        ))
    }

    /// After the strategy returned: who ran `f` for whom. `own_p` is the requester's P.
    pub(crate) fn summary(&self, own_p: Option<PId>) -> TallySummary {
        let mut summary = TallySummary::default();
        let mut missed = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let p = PId(i as u32);
            let calls = calls_of(slot.word.load(Ordering::Acquire));
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

/// The user's function, as the strategy sees it: counted, checked and panic-proof. (The
/// ABI's `SafePointFn` is `Clone`, which the user's closure need not be, hence its `Arc`.)
struct CountedFn<F> {
    tally: Arc<Tally>,
    trace: Option<Arc<Tracer>>,
    /// The tally's epoch for this barrier.
    epoch: u32,
    /// The barrier's number for the served-P gate (0 for a handshake).
    barrier: u32,
    f: Arc<F>,
}

impl<F> Clone for CountedFn<F> {
    fn clone(&self) -> Self {
        CountedFn {
            tally: Arc::clone(&self.tally),
            trace: self.trace.clone(),
            epoch: self.epoch,
            barrier: self.barrier,
            f: Arc::clone(&self.f),
        }
    }
}

/// The barrier function a strategy gets for barrier `barrier`, counted in `tally` (which the
/// caller has just reset). Traced in `trace`, if the runtime traces.
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
            epoch: tally.epoch(),
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
        let tally = &*self.tally;
        let (Some(slot), Some(host_p)) = (tally.slots.get(p.index()), tally.ps.get(p.index()))
        else {
            tally.record_breach(Breach::NoSuchP { p });
            return;
        };
        let mut word = slot.word.load(Ordering::Acquire);
        if epoch_of(word) != self.epoch {
            tally.late.record(p, self.epoch);
            return;
        }
        let Some(owner) = owner_of(host_p) else {
            tally.record_breach(Breach::Unowned {
                p,
                status: host_p.status.load(),
                held_by: host_p.m(),
            });
            return;
        };
        // Counts the call unless the barrier closed meanwhile (see `Tally::close`).
        while let Err(now) =
            slot.word
                .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            if epoch_of(now) != self.epoch {
                tally.late.record(p, self.epoch);
                return;
            }
            word = now;
        }
        if calls_of(word) != 0 {
            // A repeated call: counted, so the barrier reports it, but `f` runs once.
            return;
        }
        let on_own_m = owner == Owner::Itself;
        if on_own_m {
            slot.by_self.store(true, Ordering::Relaxed);
        }
        host_p.served_in.store(self.barrier, Ordering::Relaxed);
        if let Some(trace) = &self.trace {
            trace.reached(host_p, on_own_m);
        }
        let outer = enter_barrier_fn(true);
        let result = catch_unwind(AssertUnwindSafe(|| (self.f)(p)));
        enter_barrier_fn(outer);
        if let Some(trace) = &self.trace {
            trace.p(p, EventKind::FnEnd);
        }
        if let Err(payload) = result {
            let msg = safepoint_kit::panic::message(&*payload);
            tally.panicked.lock().get_or_insert((p, msg));
        }
        slot.ran.store(true, Ordering::Release);
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
