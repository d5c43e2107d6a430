//! Private futexes (`FUTEX_PRIVATE_FLAG`: every word is shared only between threads of
//! this process), through rustix's raw system calls. Async-signal-safe.
//!
//! The protocols built on futexes never call the system call directly: they are written over
//! [`Word`] (the atomic word) and [`Wake`] (sleep on the word while it holds a value, wake a
//! sleeper), which [`Futex`] implements with the kernel and a loom model implements with a
//! mutex and a condition variable.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex::{self as sys, Flags, Timespec};

/// The atomic operations the protocols need, on a 32-bit word (a futex word is 32 bits).
pub trait Word: Sync {
    /// A new word holding `value`.
    fn new(value: u32) -> Self;
    /// `AtomicU32::load`.
    fn load(&self, order: Ordering) -> u32;
    /// `AtomicU32::store`.
    fn store(&self, value: u32, order: Ordering);
    /// `AtomicU32::fetch_or`.
    fn fetch_or(&self, bits: u32, order: Ordering) -> u32;
    /// `AtomicU32::fetch_sub`.
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
    /// `AtomicU32::swap`.
    fn swap(&self, value: u32, order: Ordering) -> u32;
    /// `AtomicU32::compare_exchange`.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
}

impl Word for AtomicU32 {
    fn new(value: u32) -> AtomicU32 {
        AtomicU32::new(value)
    }

    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }

    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order);
    }

    fn fetch_or(&self, bits: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_or(self, bits, order)
    }

    fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, value, order)
    }

    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }

    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
}

/// Why a wait returned. The caller re-checks its condition in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// A wake woke it (possibly one meant for an earlier round).
    Woken,
    /// The word no longer held the expected value when the wait began (`EAGAIN`).
    Changed,
    /// The timeout passed with no wake (`ETIMEDOUT`).
    TimedOut,
    /// A signal interrupted the wait (`EINTR`).
    Interrupted,
}

/// Sleeping on a word and waking its sleeper: `FUTEX_WAIT` and `FUTEX_WAKE`.
pub trait Wake {
    /// The word the sleeper sleeps on.
    type Word: Word;

    /// Sleeps while `word` holds `expected`, until [`Wake::wake`] or `timeout` (`None`: no
    /// timeout). Checking the word and going to sleep are one atomic step with respect to
    /// `wake`: a `wake` that follows a change of the word cannot fall between them. May return
    /// early for any [`WaitResult`].
    fn wait(&self, word: &Self::Word, expected: u32, timeout: Option<Duration>) -> WaitResult;

    /// Wakes the thread sleeping on `word`, if one is.
    fn wake(&self, word: &Self::Word);
}

/// The kernel's futex, as the protocols' [`Wake`]; its `wake` wakes one sleeper.
#[derive(Clone, Copy, Debug, Default)]
pub struct Futex;

impl Wake for Futex {
    type Word = AtomicU32;

    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitResult {
        wait(word, expected, timeout)
    }

    fn wake(&self, word: &AtomicU32) {
        wake(word, 1);
    }
}

/// Sleeps while `word` holds `expected`, for at most `timeout` (a relative time, as
/// `FUTEX_WAIT` takes it). Async-signal-safe.
///
/// # Panics
///
/// If the kernel refuses the call for a reason other than the four of [`WaitResult`]
/// (`EFAULT`, `EINVAL`, `ENOSYS`): a bug here, or a kernel without futexes. The message is
/// static; nothing is formatted.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitResult {
    let timespec = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match sys::wait(word, Flags::PRIVATE, expected, timespec.as_ref()) {
        Ok(()) => WaitResult::Woken,
        Err(Errno::AGAIN) => WaitResult::Changed,
        Err(Errno::TIMEDOUT) => WaitResult::TimedOut,
        Err(Errno::INTR) => WaitResult::Interrupted,
        Err(_) => panic!("FUTEX_WAIT failed: a bad word or a kernel without futexes"),
    }
}

/// Wakes at most `n` threads sleeping on `word`; returns how many it woke.
/// Async-signal-safe.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    // FUTEX_WAKE fails only for a bad address or operation: neither can happen with a
    // reference and a constant operation.
    sys::wake(word, Flags::PRIVATE, n).unwrap_or(0)
}

/// Wakes every thread sleeping on `word`, with one system call. Async-signal-safe.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_wait_returns_at_once_on_a_changed_word_and_times_out_on_an_unchanged_one() {
        let word = AtomicU32::new(1);
        assert_eq!(
            wait(&word, 2, Some(Duration::from_secs(60))),
            WaitResult::Changed
        );
        assert_eq!(
            wait(&word, 1, Some(Duration::from_micros(100))),
            WaitResult::TimedOut
        );
        assert_eq!(wake(&word, 1), 0, "a wake with no sleeper wakes nobody");
    }

    /// The protocol in miniature: the waker changes the word, then wakes; the sleepers check
    /// the word and sleep on the value they saw. One `wake_all` ends every sleep. Bounded by
    /// a watchdog.
    #[test]
    fn one_wake_all_after_a_change_ends_every_sleep() {
        let word = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleepers: Vec<_> = (0..4)
            .map(|_| {
                let (word, tx) = (Arc::clone(&word), tx.clone());
                std::thread::spawn(move || {
                    while word.load(Ordering::Acquire) == 0 {
                        let result = wait(&word, 0, None);
                        assert!(matches!(result, WaitResult::Woken | WaitResult::Changed));
                    }
                    tx.send(()).expect("report");
                })
            })
            .collect();
        word.store(1, Ordering::Release);
        wake_all(&word);
        for _ in 0..4 {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("watchdog: a sleeper was not woken");
        }
        for s in sleepers {
            s.join().expect("sleeper");
        }
    }
}
