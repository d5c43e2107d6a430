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
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::config::Signal;
use crate::state::State;

use super::{getpid, gettid, set_signal_blocked, tgkill};

// ---------------------------------------------------------------------------------------
// The registry of live strategies.

/// At most this many signal strategies live at once in a process.
const MAX_STRATEGIES: usize = 64;

/// One registered strategy.
struct Slot {
    /// Handlers currently reading `state` through this slot.
    readers: AtomicUsize,
    /// The strategy, or null.
    state: AtomicPtr<State>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            readers: AtomicUsize::new(0),
            state: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Enters the slot: the state it names stays alive until the guard drops. `None` for an
    /// empty slot. Async-signal-safe.
    fn enter(&self) -> Option<Entered<'_>> {
        // Sequentially consistent, against `Registered::unregister`'s store-then-load: either we
        // see null, or it sees our increment and waits for us.
        self.readers.fetch_add(1, Ordering::SeqCst);
        let state = self.state.load(Ordering::SeqCst);
        if state.is_null() {
            self.readers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Entered { slot: self, state })
    }
}

struct Entered<'a> {
    slot: &'a Slot,
    state: *const State,
}

impl Entered<'_> {
    fn state(&self) -> &State {
        // SAFETY: `state` was non-null in the slot after we counted ourselves a reader. It
        // points into the box of a `Registered`, which nulls the slot and waits until no
        // reader is left before the box can be freed or moved out.
        unsafe { &*self.state }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.slot.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

static SLOTS: [Slot; MAX_STRATEGIES] = [const { Slot::new() }; MAX_STRATEGIES];
/// One past the highest slot ever used, so the handler scans only those.
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);
/// Serialises registration (never taken by the handler).
static REGISTRY: Mutex<()> = Mutex::new(());

/// A strategy's state, registered so that the handler finds it. The state stays at its
/// address (boxed) until the value is dropped, and the entry is removed first (by
/// [`Registered::unregister`] or on drop): the handler never reads freed state.
pub(crate) struct Registered {
    state: Box<State>,
    /// The slot, or [`UNREGISTERED`].
    index: AtomicUsize,
}

const UNREGISTERED: usize = usize::MAX;

/// Makes `state` visible to the handler.
pub(crate) fn register(state: Box<State>) -> Result<Registered, String> {
    let _serialised = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let index = SLOTS
        .iter()
        .position(|slot| slot.state.load(Ordering::SeqCst).is_null())
        .ok_or_else(|| format!("more than {MAX_STRATEGIES} signal strategies in one process"))?;
    SLOTS[index].state.store(
        std::ptr::from_ref::<State>(&state).cast_mut(),
        Ordering::SeqCst,
    );
    SLOTS_USED.fetch_max(index + 1, Ordering::SeqCst);
    Ok(Registered {
        state,
        index: AtomicUsize::new(index),
    })
}

impl Registered {
    /// Removes the entry, and waits until no handler reads it. Idempotent.
    pub(crate) fn unregister(&self) {
        let index = self.index.swap(UNREGISTERED, Ordering::SeqCst);
        let Some(slot) = SLOTS.get(index) else {
            return;
        };
        // Held until the slot is drained, so that no new strategy moves in meanwhile.
        let _serialised = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        slot.state.store(std::ptr::null_mut(), Ordering::SeqCst);
        // Handlers in the slot are finishing (no barrier is in flight, so none waits for a
        // requester): a few instructions each.
        while slot.readers.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

impl std::ops::Deref for Registered {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.unregister();
    }
}

// ---------------------------------------------------------------------------------------
// Installation.

/// Signal numbers are below this (Linux: 1 to 64).
const NSIG: usize = 65;

/// Serialises installations and uninstallations (never taken by the handler).
static INSTALLING: Mutex<()> = Mutex::new(());

/// Per signal, whether our handler is installed and why: an [`Installed`] word.
static INSTALLED: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];

/// The disposition found when our handler was installed, per signal. Leaked and immutable.
static PREVIOUS: [AtomicPtr<libc::sigaction>; NSIG] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; NSIG];

/// The installation word of one signal: the strategies that use it, the signals of ours in
/// flight (marks set, see `crate::marks`), and two flags. Our handler stays installed while
/// either count is nonzero: a signal of ours still on its way must find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Installed(u64);

impl Installed {
    const IN_FLIGHT_ONE: u64 = 1;
    const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
    const USER_ONE: u64 = 1 << 32;
    const USERS_MASK: u64 = 0xFFFF << 32;
    /// Our handler is the disposition we installed, and `PREVIOUS` holds what it replaced.
    const ON: u64 = 1 << 62;
    /// Someone is putting the previous disposition back: an install waits.
    const RESTORING: u64 = 1 << 63;

    fn is_on(self) -> bool {
        self.0 & Self::ON != 0
    }

    fn is_restoring(self) -> bool {
        self.0 & Self::RESTORING != 0
    }

    /// Installed, and neither used nor awaited: time to put the previous disposition back.
    fn is_idle(self) -> bool {
        self.0 == Self::ON
    }

    fn users(self) -> u64 {
        (self.0 & Self::USERS_MASK) >> 32
    }

    fn in_flight(self) -> u64 {
        self.0 & Self::IN_FLIGHT_MASK
    }
}

/// The installation word of `signal`, if it is a signal number.
fn installed(signal: libc::c_int) -> Option<&'static AtomicU64> {
    usize::try_from(signal).ok().and_then(|i| INSTALLED.get(i))
}

type SigactionFn = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);
type SighandlerFn = extern "C" fn(libc::c_int);

fn our_handler() -> libc::sighandler_t {
    on_signal as SigactionFn as libc::sighandler_t
}

/// The current disposition of `signal`. Async-signal-safe.
fn query(signal: libc::c_int) -> io::Result<libc::sigaction> {
    // SAFETY: sigaction is plain data; a null new action makes the call a query that fills
    // `current`.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(current)
}

/// Sets the disposition of `signal`. Async-signal-safe.
fn set(signal: libc::c_int, action: &libc::sigaction) -> io::Result<()> {
    // SAFETY: `action` is a fully initialised sigaction whose handler, if any, is a valid
    // function of the right signature (ours, or one the process installed before).
    if unsafe { libc::sigaction(signal, action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn same_disposition(a: &libc::sigaction, b: &libc::sigaction) -> bool {
    a.sa_sigaction == b.sa_sigaction
        && a.sa_flags == b.sa_flags
        && (1..NSIG as libc::c_int).all(|s| {
            // SAFETY: both masks are initialised sigsets and `s` a valid signal number.
            unsafe { libc::sigismember(&a.sa_mask, s) == libc::sigismember(&b.sa_mask, s) }
        })
}

/// Our handler installed for one signal; give it back with [`Installation::uninstall`].
#[derive(Debug)]
pub(crate) struct Installation {
    signal: libc::c_int,
}

/// Installs [`on_signal`] for `signal`, saving the disposition it replaces, unless it is
/// installed already (another strategy uses the signal, or signals of ours are still in
/// flight after the last one retired).
pub(crate) fn install(signal: Signal) -> io::Result<Installation> {
    let number = signal.number;
    let word = installed(number)
        .filter(|_| number > 0)
        .ok_or_else(|| io::Error::other(format!("signal {number} out of range")))?;
    let _serialised = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let current = Installed(word.load(Ordering::SeqCst));
        if current.is_restoring() {
            // A handler is putting the previous disposition back: a few syscalls.
            std::thread::yield_now();
            continue;
        }
        if current.is_on() {
            if word
                .compare_exchange(
                    current.0,
                    current.0 + Installed::USER_ONE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                return Ok(Installation { signal: number });
            }
            continue;
        }
        // Off: no strategy uses the signal and none of ours is in flight, so nothing else
        // changes the word meanwhile.
        install_ours(number)?;
        word.store(Installed::ON | Installed::USER_ONE, Ordering::SeqCst);
        return Ok(Installation { signal: number });
    }
}

/// Saves the current disposition of `signal` (unless it is ours already) and installs ours.
fn install_ours(signal: libc::c_int) -> io::Result<()> {
    let index = signal as usize;
    let current = query(signal)?;
    if current.sa_sigaction != our_handler() {
        let saved = PREVIOUS[index].load(Ordering::Acquire);
        // SAFETY: a non-null saved record is a leaked, immutable sigaction.
        let unchanged = !saved.is_null() && same_disposition(unsafe { &*saved }, &current);
        if !unchanged {
            PREVIOUS[index].store(Box::into_raw(Box::new(current)), Ordering::Release);
        }
    }
    // SAFETY: sigaction is plain data; the fields that matter are set below.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = our_handler();
    // SA_SIGINFO: the handler takes (signal, siginfo, ucontext): it needs the signal's value
    //   (to tell ours from anyone else's) and the interrupted registers (the PC for the
    //   safe-point check, the syscall result for EINTR accounting).
    // SA_RESTART: a syscall the signal interrupts (read, write, futex without timeout)
    //   restarts instead of failing with EINTR, so mutators do not see spurious
    //   failures. Calls the kernel never restarts (nanosleep, poll, epoll_wait, calls
    //   with a timeout) still fail: the strategy counts those EINTRs.
    // SA_ONSTACK: run on the thread's alternate signal stack: a goroutine runs on a small
    //   coroutine stack that has no room for the handler's frames (and forwarding may
    //   call the application's handler on top).
    // Not SA_NODEFER: the signal stays blocked while its handler runs, so a second one
    //   waits instead of nesting on the same stack.
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: `sa_mask` is plain data owned by `ours`.
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    set(signal, &ours)
}

impl Installation {
    /// Drops this strategy's use of the signal. Once no strategy uses it and no signal of
    /// ours is in flight, the saved disposition goes back (now, or when the handler takes
    /// the last mark), unless someone installed another handler over ours meanwhile.
    pub(crate) fn uninstall(self) -> io::Result<()> {
        let Some(word) = installed(self.signal) else {
            return Ok(());
        };
        let _serialised = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        let after = Installed(word.fetch_sub(Installed::USER_ONE, Ordering::SeqCst))
            .0
            .wrapping_sub(Installed::USER_ONE);
        if Installed(after).is_idle() {
            restore(self.signal, word)?;
        }
        Ok(())
    }
}

/// A signal of ours is about to be sent: our handler must stay. For the requester, whose
/// strategy uses the signal, so that it is installed.
pub(crate) fn in_flight_added(signal: libc::c_int) {
    if let Some(word) = installed(signal) {
        let before = Installed(word.fetch_add(Installed::IN_FLIGHT_ONE, Ordering::SeqCst));
        debug_assert!(before.is_on() && before.users() > 0, "{before:?}");
    }
}

/// A signal of ours is no longer on its way. If it was the last, and no strategy uses the
/// signal any more, puts the previous disposition back. Async-signal-safe.
pub(crate) fn in_flight_removed(signal: libc::c_int) {
    let Some(word) = installed(signal) else {
        return;
    };
    let before = Installed(word.fetch_sub(Installed::IN_FLIGHT_ONE, Ordering::SeqCst));
    if before.in_flight() == 0 {
        super::fatal(b"safepoint-signal: a signal in flight was counted out twice\n");
    }
    if Installed(before.0 - Installed::IN_FLIGHT_ONE).is_idle() {
        // Nowhere to report a failure from a handler; a later install tries again.
        let _ = restore(signal, word);
    }
}

/// Puts the saved disposition of `signal` back, if `word` still says that our handler is
/// installed and idle; only one caller does. Async-signal-safe: atomics and `sigaction`.
fn restore(signal: libc::c_int, word: &AtomicU64) -> io::Result<()> {
    if word
        .compare_exchange(
            Installed::ON,
            Installed::ON | Installed::RESTORING,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_err()
    {
        // Used again, or someone else restores it.
        return Ok(());
    }
    let result = (|| {
        if query(signal)?.sa_sigaction != our_handler() {
            // Someone installed another handler over ours: it stays.
            return Ok(());
        }
        let saved = PREVIOUS
            .get(signal as usize)
            .map_or(std::ptr::null_mut(), |p| p.load(Ordering::Acquire));
        if saved.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null saved record is a leaked, immutable sigaction.
        set(signal, unsafe { &*saved })
    })();
    word.store(0, Ordering::SeqCst);
    result
}

// ---------------------------------------------------------------------------------------
// The handler.

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
    super::fatal(
        b"safepoint-signal: a forwarded signal's default action did not end the process\n",
    );
}

// ---------------------------------------------------------------------------------------
// The interrupted context.

/// The PC of the interrupted code.
fn interrupted_pc(context: *const c_void) -> Option<usize> {
    if context.is_null() {
        return None;
    }
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: with SA_SIGINFO the third argument is the interrupted ucontext_t.
        let pc = unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] };
        Some(pc as usize)
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        let pc = unsafe { (*context).uc_mcontext.pc };
        Some(pc as usize)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        None
    }
}

/// Whether the interrupted code is a syscall instruction that is about to return `-EINTR`
/// because of this signal (with SA_RESTART, restartable calls are rewound instead, and show
/// their syscall number, not `-EINTR`).
fn caused_eintr(context: *const c_void) -> bool {
    let Some(pc) = interrupted_pc(context) else {
        return false;
    };
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // `syscall` is 0f 05. The check never reads across a page boundary: the page of
        // `pc` is mapped (execution resumes there), the one before it may not be.
        const SYSCALL: [u8; 2] = [0x0f, 0x05];
        // SAFETY: as in `interrupted_pc`.
        let result = unsafe { (*context).uc_mcontext.gregs[libc::REG_RAX as usize] };
        result == -i64::from(libc::EINTR)
            && pc % 4096 >= SYSCALL.len()
            // SAFETY: `pc - 2` lies in the mapped page of `pc`, checked above.
            && unsafe { std::ptr::read((pc - SYSCALL.len()) as *const [u8; 2]) } == SYSCALL
    }
    #[cfg(target_arch = "aarch64")]
    {
        // `svc #0` is d4000001.
        const SVC: u32 = 0xd400_0001;
        // SAFETY: as in `interrupted_pc`.
        let result = unsafe { (*context).uc_mcontext.regs[0] } as i64;
        result == -i64::from(libc::EINTR)
            && pc % 4096 >= 4
            // SAFETY: `pc - 4` is an aligned instruction in the mapped page of `pc`.
            && unsafe { std::ptr::read((pc - 4) as *const u32) } == SVC
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (pc, context);
        false
    }
}

/// The interrupted code's `errno`.
struct Errno(libc::c_int);

impl Errno {
    fn save() -> Errno {
        // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
        Errno(unsafe { *libc::__errno_location() })
    }

    fn restore(self) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = self.0 };
    }
}
