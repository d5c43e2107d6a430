//! The signal handler, quarantined: its installation, the registry through which it finds
//! the strategies, and everything it runs.
//!
//! # What the handler does
//!
//! [`on_signal`] runs on the interrupted thread, on that thread's alternate signal stack if
//! it has one (every M has: `attach_thread` gives it one), with the signal blocked. In
//! order:
//!
//! 1. **Saves `errno`**, and restores it as it returns: the futex and `gettid` syscalls
//!    below may change it under the interrupted code. (`__errno_location` is a pure
//!    accessor.)
//! 2. **Decides whether the signal is ours**: its `siginfo` says this process sent it with
//!    `SI_QUEUE` and a value that carries this library's tag ([`crate::marks::from_value`]:
//!    a few integer operations). If so, it takes the in-flight mark the value names (a
//!    compare-and-swap of the exact value) once it knows what it does with the signal: right
//!    after parking, if it stops the P (step 4), so that a re-signal round sees either a
//!    signal in flight or a stopped P; otherwise before it returns. A new signal may be sent
//!    from then on, and waits, blocked, until this handler returns. Taking the last mark of a
//!    signal that no strategy uses any more puts the saved disposition back
//!    ([`in_flight_removed`]: atomics and `sigaction`).
//! 3. **Finds the strategy this thread belongs to**: `gettid()` (a syscall), then for each
//!    registered strategy using this signal, a lookup of the tid in its thread table. Each
//!    registry slot is entered by incrementing its reader count before loading its pointer
//!    ([`Slot::enter`]), so the strategy cannot be freed while the handler reads it.
//!    Atomic loads and read-modify-writes only. A signal of ours on a thread of no live
//!    strategy (it arrived after its strategy retired) is absorbed: it ends here.
//! 4. If it is ours and its thread's strategy is live:
//!    - counts an `EINTR` it caused: the interrupted context shows a syscall about to
//!      return `-EINTR` ([`caused_eintr`]: reads two registers of the `ucontext` and the
//!      instruction bytes before the interrupted PC, which is mapped since execution resumes
//!      there);
//!    - asks the host for the thread's P (`Host::current_p`) and whether the P is pending in
//!      the barrier ([`PendingPs::is_pending`](safepoint_kit::PendingPs::is_pending)): both
//!      async-signal-safe by their contracts;
//!    - asks whether the interrupted code is at an asynchronous safe point
//!      (`Host::at_async_safe_point`, async-signal-safe by contract) and whether its PC lies
//!      outside the C library, the dynamic loader and the unwinder (a comparison against
//!      ranges computed at construction);
//!    - if so, **stops the P**: tells the host (`Host::stopped_in_handler`, async-signal-safe
//!      by contract: an atomic store), publishes it parked (an atomic store), wakes the requester (an
//!      atomic increment and at most one `FUTEX_WAKE`), and waits until the requester has run
//!      `f` on its behalf (a bounded spin, then `FUTEX_WAIT`); then applies the host's
//!      served-P policy (`Host::give_way`, async-signal-safe by contract: when Ps outnumber
//!      CPUs it sleeps on the host's futex until the barrier ends, so that a late P's thread
//!      gets this CPU to run its handler);
//!    - if not, returns at once and leaves the P to its next poll: its poll word is armed.
//! 5. **Forwards a signal that is not ours** to the handler that was installed before ours
//!    ([`forward`]), unless this thread is already forwarding this signal: the saved
//!    handler chains back to ours (an application installed it while ours was in place,
//!    and a later installation saved it), and forwarding again would loop until the
//!    alternate stack overflows. The guard is an entry keyed by thread and signal in a
//!    fixed static table ([`Forwarding`]: atomics). Forwarding calls that handler's
//!    `sa_sigaction` or `sa_handler` as its `SA_SIGINFO` flag says, with its `sa_mask` added
//!    to the thread's mask for the call (`pthread_sigmask`, async-signal-safe). If that disposition was `SIG_IGN`, nothing; if
//!    it was `SIG_DFL`, the default action: nothing for signals ignored by default (SIGURG,
//!    SIGWINCH), otherwise the handler resets the disposition, unblocks the signal and sends
//!    it to its own thread, which ends the process as the default action would have
//!    (`sigaction`, `pthread_sigmask`, `tgkill`: all async-signal-safe).
//!
//! # What it never does
//!
//! Every call it makes is in POSIX's list of async-signal-safe functions (`sigaction`,
//! `pthread_sigmask`, `getpid`, `write`, `abort`), or a bare Linux syscall that touches no
//! library state (`gettid`, `tgkill`, `futex`: see [`super`]).
//!
//! It allocates nothing, takes no lock (the `Mutex` below guards installation only and is
//! never touched here), reads no thread-local of this library (a `dlopen`ed library's TLS
//! may be allocated on first use), and cannot panic: every index is checked with `get`,
//! arithmetic cannot overflow, and a path that cannot go on writes with `write(2)` and
//! aborts ([`super::fatal`]). The barrier function `f` never runs here: the requester runs
//! it, so `f` need not be async-signal-safe.
//!
//! # Installation
//!
//! [`install`] is counted per signal number, in one atomic word ([`Installed`]) with the
//! signals of ours in flight: the first strategy to use a signal saves the disposition it
//! finds and installs [`on_signal`]; the saved disposition goes back once no strategy uses
//! the signal *and* no signal of ours is still on its way (see "Retirement" in the README):
//! at the last [`Installation::uninstall`], or later in the handler that takes the last
//! mark. Someone who replaced ours meanwhile keeps theirs. Several runtimes with a signal
//! strategy can so share one process. Saved dispositions are leaked, immutable records: a
//! handler still forwarding under an earlier installation never reads one that is being
//! rewritten.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Signal;
use crate::state::State;

use super::{getpid, gettid, set_signal_blocked, tgkill};

mod context;
mod install;
mod registry;

use context::{Errno, caused_eintr, interrupted_pc};
pub(crate) use install::{Installation, in_flight_added, in_flight_removed, install};
use install::{PREVIOUS, SigactionFn, SighandlerFn, set};

use registry::{MAX_STRATEGIES, SLOTS, SLOTS_USED};
pub(crate) use registry::{Registered, register};

/// The handler installed for the strategy's signal. See the module documentation for each
/// step and why it is async-signal-safe.
extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let errno = Errno::save();
    if dispatch(signal, info, context) {
        match Forwarding::enter(gettid(), signal) {
            // Called again by the handler we forward to, for the same signal: the saved
            // handler chains back to ours. The signal has been through both; forwarding
            // once more would loop until the stack overflows.
            Err(Reentered) => {}
            Ok(_forwarding) => forward(signal, info, context),
        }
    }
    errno.restore();
}

/// Threads forwarding a signal, as `tid << 8 | signal`; 0 for a free entry. The handler
/// cannot use a thread-local of this library, hence a fixed table searched by key.
static FORWARDING: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// [`Forwarding::enter`] found this thread already forwarding this signal.
struct Reentered;

/// This thread forwards a signal while it lives. `None` inside when the table is full (256 threads forwarding at
/// once): the signal is forwarded unguarded.
struct Forwarding(Option<&'static AtomicU64>);

impl Forwarding {
    /// Async-signal-safe: atomics over a static table.
    fn enter(tid: i32, signal: libc::c_int) -> Result<Forwarding, Reentered> {
        let key = u64::from(tid as u32) << 8 | u64::from(signal as u8);
        if FORWARDING.iter().any(|e| e.load(Ordering::Acquire) == key) {
            return Err(Reentered);
        }
        // Only this thread uses `key`, and it runs one handler at a time or nested ones
        // that finish first: no other entry with `key` can appear meanwhile.
        let entry = FORWARDING.iter().find(|e| {
            e.compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        Ok(Forwarding(entry))
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(entry) = self.0 {
            entry.store(0, Ordering::Release);
        }
    }
}

/// Steps 2 to 4; returns whether to forward the signal (step 5).
fn dispatch(signal: libc::c_int, info: *const libc::siginfo_t, context: *const c_void) -> bool {
    // SAFETY: `info` is what the kernel passed to our SA_SIGINFO handler.
    let value = unsafe { super::queued_value(info, getpid()) };
    let ours = value.and_then(|v| crate::marks::from_value(v).map(|mark| (mark, v)));
    // Taken once the handler knows what it does with the signal, not as it returns: a
    // stopped P's handler may linger after the requester released it (until its thread is
    // scheduled again), and the next barrier's signal must not be held back meanwhile. It
    // waits, blocked, until this handler returns. (Taking fails for a signal whose mark was
    // settled meanwhile, or that was sent to a slot's earlier user: still ours.)
    let mut mark = TakeMark(ours);
    let tid = gettid();
    let used = SLOTS_USED.load(Ordering::SeqCst).min(MAX_STRATEGIES);
    for slot in SLOTS.iter().take(used) {
        let Some(entered) = slot.enter() else {
            continue;
        };
        let state = entered.state();
        if state.config.signal.number != signal || state.threads.find(tid).is_none() {
            continue;
        }
        state.counters.handler_entries.add();
        if ours.is_some() {
            stop_if_safe(state, context, &mut mark);
            return false;
        }
        state.counters.forwarded.add();
        return true;
    }
    // A thread of no live strategy: the application's own threads, or a signal of ours
    // that arrives after its strategy retired (absorbed: it was never the application's).
    ours.is_none()
}

/// The in-flight mark a signal of ours names, taken when [`TakeMark::now`] is called or,
/// at the latest, when dropped.
struct TakeMark(Option<(&'static crate::marks::Mark, u64)>);

impl TakeMark {
    fn now(&mut self) {
        if let Some((mark, value)) = self.0.take() {
            mark.take(value);
        }
    }
}

impl Drop for TakeMark {
    fn drop(&mut self) {
        self.now();
    }
}

/// Step 4: the P takes part in the barrier from here, or is left to its poll. The mark is
/// taken only once the P is parked, if it parks: until then a re-signal round sees a signal
/// in flight, and afterwards a stopped P, and sends none.
fn stop_if_safe(state: &State, context: *const c_void, mark: &mut TakeMark) {
    if caused_eintr(context) {
        state.counters.eintr.add();
    }
    let Some(p) = state.host.current_p().into_option() else {
        return;
    };
    if !state.pending.is_pending(p) {
        return;
    }
    let safe = state.host.at_async_safe_point()
        && interrupted_pc(context)
            .is_some_and(|pc| !state.locking_code.iter().any(|code| code.contains(&pc)));
    let Some(word) = state.parked.get(p.index()).filter(|_| safe) else {
        state.counters.left_to_poll.add();
        return;
    };
    // Before the park that publishes the stop: the requester that takes it may run `f`
    // for `p` (the host checks ownership on every call).
    state.host.stopped_in_handler(p, true);
    word.0.park();
    mark.now();
    if !state.pending.is_open() && word.0.unpark() {
        // The barrier was abandoned (a panic in the requester) as we parked.
        state.host.stopped_in_handler(p, false);
        return;
    }
    state.wakeup.notify();
    word.0.wait_released(state.handler_spins());
    state.host.stopped_in_handler(p, false);
    // Other Ps may be late and waiting for this CPU (a signalled thread runs its handler
    // only once scheduled): the host's served-P policy decides whether to wait here until
    // the barrier ends.
    state.host.give_way(p);
}

/// Step 5: hands the signal to the disposition saved when ours was installed.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let saved = usize::try_from(signal)
        .ok()
        .and_then(|i| PREVIOUS.get(i))
        .map_or(std::ptr::null_mut(), |p| p.load(Ordering::Acquire));
    if saved.is_null() {
        return default_action(signal);
    }
    // SAFETY: a non-null saved record is a leaked, immutable sigaction.
    let previous = unsafe { &*saved };
    match previous.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => default_action(signal),
        handler => {
            // The kernel would have blocked the previous handler's mask while it ran.
            // SAFETY: both sets are initialised; `old` is filled by the call.
            let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &previous.sa_mask, &mut old) };
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the process installed `handler` with SA_SIGINFO, so it is a
                // three-argument signal handler; we pass it what the kernel passed us.
                let handler: SigactionFn = unsafe { std::mem::transmute(handler) };
                handler(signal, info, context);
            } else {
                // SAFETY: installed without SA_SIGINFO, `handler` takes the signal number.
                let handler: SighandlerFn = unsafe { std::mem::transmute(handler) };
                handler(signal);
            }
            // SAFETY: `old` is the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        }
    }
}

/// The default action of `signal`, from inside its handler.
fn default_action(signal: libc::c_int) {
    if (Signal { number: signal }).ignored_by_default() {
        return;
    }
    // SAFETY: sigaction is plain data; SIG_DFL with an empty mask is a valid disposition.
    let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    if set(signal, &default).is_ok() {
        set_signal_blocked(signal, false);
        // Delivered as the syscall returns: the default action ends the process.
        let _ = tgkill(getpid(), gettid(), signal);
    }
    crate::sys::fatal(
        b"safepoint-signal: a forwarded signal's default action did not end the process\n",
    );
}
