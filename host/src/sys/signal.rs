//! A signal round trip, for the signal floor: a handler that only counts.
//!
//! The handler does one thing, a relaxed atomic increment of a static, which is
//! async-signal-safe: no allocation, no lock, no thread-local, no panic.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use safepoint_abi::OsThread;

/// Handler entries since the process started.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count(_signal: libc::c_int) {
    RECEIVED.fetch_add(1, Ordering::Release);
}

/// Signals the floor handler has received so far.
pub(crate) fn received() -> u64 {
    RECEIVED.load(Ordering::Acquire)
}

/// The signal the floor uses: a real-time one no strategy claims.
pub(crate) fn floor_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// Installs the counting handler for the floor signal, once per process.
pub(crate) fn install_counter() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = count as extern "C" fn(libc::c_int) as usize;
    // SA_RESTART: a syscall the signal interrupts restarts instead of failing with EINTR.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is fully initialised and its handler is async-signal-safe.
    if unsafe { libc::sigaction(floor_signal(), &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends the floor signal to `thread` of this process (`tgkill`).
pub(crate) fn send(thread: OsThread) -> io::Result<()> {
    // SAFETY: tgkill with our own pid and a tid of ours; an exited thread yields ESRCH.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), thread.tid, floor_signal()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
