//! Every syscall and raw FFI call of the host, and the coroutine switch.
//!
//! The rest of the crate is `#![deny(unsafe_code)]`; each `unsafe` block here says why it is
//! sound.

mod altstack;
mod coroutine;
pub(crate) mod dl;
pub(crate) mod signal;

pub(crate) use altstack::AltStack;
pub(crate) use coroutine::{GStack, Resumed, Suspender};

use safepoint_abi::OsThread;

/// The calling thread's kernel id and `pthread_t`.
pub(crate) fn current_os_thread() -> OsThread {
    // SAFETY: gettid and pthread_self have no preconditions and cannot fail.
    let (tid, pthread) = unsafe { (libc::gettid(), libc::pthread_self()) };
    OsThread { tid, pthread }
}

fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clocks used here exist on every Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Caps glibc's malloc at `arenas` arenas (`mallopt(M_ARENA_MAX)`); false if it refused.
/// Call it before threads allocate: an arena, once made, stays.
pub(crate) fn cap_malloc_arenas(arenas: i32) -> bool {
    // SAFETY: mallopt takes plain integers and has no other precondition; M_ARENA_MAX only
    // limits arenas made from now on.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

/// The effective user id: whose files a loaded plugin may be.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Writes `bytes` to the standard error file descriptor with `write(2)`, without the lock of
/// `std::io::stderr()`: a goroutine stopped in a signal handler in the middle of a
/// `println!` may hold that lock for the whole barrier. A short write is finished; an
/// error is dropped (there is nowhere to report it).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice of `bytes.len()` readable bytes.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[(n as usize).min(bytes.len())..];
        } else if n == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds. Async-signal-safe.
pub(crate) fn monotonic_nanos() -> u64 {
    clock_nanos(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the last timer tick's time (a few ms of
/// resolution), read from the vDSO at a fraction of the fine clock's cost. Async-signal-safe.
pub(crate) fn coarse_monotonic_nanos() -> u64 {
    clock_nanos(libc::CLOCK_MONOTONIC_COARSE)
}

/// CPU time consumed by the calling thread, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu_nanos() -> u64 {
    clock_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `nanosleep` for `duration`, without retrying: returns how many times a signal
/// interrupted it (EINTR), for the EINTR count of the syscall workload.
pub(crate) fn sleep_counting_interrupts(duration: std::time::Duration) -> u32 {
    let mut request = libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(duration.subsec_nanos() as i32),
    };
    let mut interrupts = 0;
    loop {
        let mut remaining = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both pointers are to valid timespecs owned by this frame.
        if unsafe { libc::nanosleep(&request, &mut remaining) } == 0 {
            return interrupts;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return interrupts;
        }
        interrupts += 1;
        request = remaining;
    }
}
