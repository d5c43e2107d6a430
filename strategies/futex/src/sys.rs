//! The `futex(2)` system call: the only unsafe code of this crate.
//!
//! Private futexes (`FUTEX_PRIVATE_FLAG`): the word is only ever shared between threads of
//! this process, so the kernel can key it by address alone.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::protocol::{WaitResult, Wake};

/// `FUTEX_WAIT_PRIVATE`.
const FUTEX_WAIT_PRIVATE: libc::c_int = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
/// `FUTEX_WAKE_PRIVATE`.
const FUTEX_WAKE_PRIVATE: libc::c_int = libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG;

/// `futex(word, op, value, timeout)`, for `op` `FUTEX_WAIT_PRIVATE` or `FUTEX_WAKE_PRIVATE`
/// only: the syscall's result, or its `errno`.
fn futex(
    word: &AtomicU32,
    op: libc::c_int,
    value: u32,
    timeout: Option<&libc::timespec>,
) -> Result<libc::c_long, i32> {
    debug_assert!(op == FUTEX_WAIT_PRIVATE || op == FUTEX_WAKE_PRIVATE);
    let timeout = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the whole call (we borrow it). FUTEX_WAIT
    // reads it atomically and FUTEX_WAKE uses only its address, as the key of its waiters;
    // neither writes it. `timeout` is null or points to a timespec borrowed for the call
    // (FUTEX_WAKE ignores it). The last two arguments are unused by both operations.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            value,
            timeout,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or_default())
    } else {
        Ok(rc)
    }
}

/// The kernel's futex, as the protocol's [`Wake`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Futex;

impl Wake for Futex {
    type Word = AtomicU32;

    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitResult {
        // A relative timeout, as FUTEX_WAIT takes it; the caller passes a fresh one each time.
        let timespec = timeout.map(|t| libc::timespec {
            tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9: fits a c_long.
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        match futex(word, FUTEX_WAIT_PRIVATE, expected, timespec.as_ref()) {
            Ok(_) => WaitResult::Woken,
            Err(libc::EAGAIN) => WaitResult::Changed,
            Err(libc::ETIMEDOUT) => WaitResult::TimedOut,
            Err(libc::EINTR) => WaitResult::Interrupted,
            // EFAULT, EINVAL or ENOSYS: a bug here, or a kernel without futexes.
            Err(errno) => panic!("futex wait failed: errno {errno}"),
        }
    }

    fn wake(&self, word: &AtomicU32) {
        // Wake one: the requester is the only waiter. FUTEX_WAKE fails only for a bad address
        // or operation, both bugs here.
        let woken = futex(word, FUTEX_WAKE_PRIVATE, 1, None);
        debug_assert!(woken.is_ok(), "futex wake failed: {woken:?}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn a_wait_returns_at_once_on_a_changed_word_and_times_out_on_an_unchanged_one() {
        let word = AtomicU32::new(1);
        let wait = |expected, timeout| Futex.wait(&word, expected, Some(timeout));
        assert_eq!(wait(2, Duration::from_secs(60)), WaitResult::Changed);
        assert_eq!(wait(1, Duration::from_micros(100)), WaitResult::TimedOut);
        // A wake with no sleeper is harmless.
        Futex.wake(&word);
    }

    /// The protocol in miniature: the waker changes the word, then wakes; the sleeper checks
    /// the word and sleeps on the value it saw. Bounded by a watchdog.
    #[test]
    fn a_wake_after_a_change_ends_the_sleep() {
        let word = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                while word.load(Ordering::Acquire) == 0 {
                    let result = Futex.wait(&word, 0, None);
                    assert!(matches!(result, WaitResult::Woken | WaitResult::Changed));
                }
                tx.send(()).expect("report");
            })
        };
        word.store(1, Ordering::Release);
        Futex.wake(&word);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("watchdog: the sleeper was not woken");
        sleeper.join().expect("sleeper");
    }
}
