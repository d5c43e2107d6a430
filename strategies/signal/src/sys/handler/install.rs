//! Installing our handler, counted per signal with the signals of ours in flight, and
//! putting the saved disposition back.

use std::ffi::c_void;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::on_signal;
use crate::config::Signal;

/// Signal numbers are below this (Linux: 1 to 64).
pub(super) const NSIG: usize = 65;

/// Serialises installations and uninstallations (never taken by the handler).
pub(super) static INSTALLING: Mutex<()> = Mutex::new(());

/// Per signal, whether our handler is installed and why: an [`Installed`] word.
pub(super) static INSTALLED: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];

/// The disposition found when our handler was installed, per signal. Leaked and immutable.
pub(super) static PREVIOUS: [AtomicPtr<libc::sigaction>; NSIG] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; NSIG];

/// The installation word of one signal: the strategies that use it, the signals of ours in
/// flight (marks set, see `crate::marks`), and two flags. Our handler stays installed while
/// either count is nonzero: a signal of ours still on its way must find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Installed(u64);

impl Installed {
    const IN_FLIGHT_ONE: u64 = 1;
    const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
    const USER_ONE: u64 = 1 << 32;
    const USERS_MASK: u64 = 0xFFFF << 32;
    /// Our handler is the disposition we installed, and `PREVIOUS` holds what it replaced.
    const ON: u64 = 1 << 62;
    /// Someone is putting the previous disposition back: an install waits.
    const RESTORING: u64 = 1 << 63;

    pub(super) fn is_on(self) -> bool {
        self.0 & Self::ON != 0
    }

    pub(super) fn is_restoring(self) -> bool {
        self.0 & Self::RESTORING != 0
    }

    /// Installed, and neither used nor awaited: time to put the previous disposition back.
    pub(super) fn is_idle(self) -> bool {
        self.0 == Self::ON
    }

    pub(super) fn users(self) -> u64 {
        (self.0 & Self::USERS_MASK) >> 32
    }

    pub(super) fn in_flight(self) -> u64 {
        self.0 & Self::IN_FLIGHT_MASK
    }
}

/// The installation word of `signal`, if it is a signal number.
pub(super) fn installed(signal: libc::c_int) -> Option<&'static AtomicU64> {
    usize::try_from(signal).ok().and_then(|i| INSTALLED.get(i))
}

pub(super) type SigactionFn = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);
pub(super) type SighandlerFn = extern "C" fn(libc::c_int);

pub(super) fn our_handler() -> libc::sighandler_t {
    on_signal as SigactionFn as libc::sighandler_t
}

/// The current disposition of `signal`. Async-signal-safe.
pub(super) fn query(signal: libc::c_int) -> io::Result<libc::sigaction> {
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
pub(super) fn set(signal: libc::c_int, action: &libc::sigaction) -> io::Result<()> {
    // SAFETY: `action` is a fully initialised sigaction whose handler, if any, is a valid
    // function of the right signature (ours, or one the process installed before).
    if unsafe { libc::sigaction(signal, action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn same_disposition(a: &libc::sigaction, b: &libc::sigaction) -> bool {
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
pub(super) fn install_ours(signal: libc::c_int) -> io::Result<()> {
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
        crate::sys::fatal(b"safepoint-signal: a signal in flight was counted out twice\n");
    }
    if Installed(before.0 - Installed::IN_FLIGHT_ONE).is_idle() {
        // Nowhere to report a failure from a handler; a later install tries again.
        let _ = restore(signal, word);
    }
}

/// Puts the saved disposition of `signal` back, if `word` still says that our handler is
/// installed and idle; only one caller does. Async-signal-safe: atomics and `sigaction`.
pub(super) fn restore(signal: libc::c_int, word: &AtomicU64) -> io::Result<()> {
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
