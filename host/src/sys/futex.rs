//! Private futexes, for the futex floor.

use std::sync::atomic::AtomicU32;

/// Sleeps while `word` holds `expected` (`FUTEX_WAIT_PRIVATE`). Returns on a wake, a signal,
/// or at once if the word differs; callers re-check.
pub(crate) fn wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; a null timeout
    // means wait without limit.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread sleeping on `word` (`FUTEX_WAKE_PRIVATE`).
pub(crate) fn wake_one(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; waking has no other precondition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}
