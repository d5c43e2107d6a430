//! The two waits of the protocol, each on a futex word: a P stopped in the signal handler
//! waiting for the requester ([`ParkWord`]), and the requester waiting for Ps
//! (`Wakeup`). Everything a signal handler calls here is async-signal-safe: atomics and
//! the futex syscall.
//!
//! [`ParkWord`] is written over the kit's [`Word`] and [`Wake`], so that its loom model
//! (`tests/loom_park.rs`) runs this very code.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use safepoint_kit::futex::{self, Futex, Wake, Word};

/// The state of one P's stop in the signal handler, as a futex word.
///
/// ```text
///  IDLE --handler: park--> PARKED --requester: try_take--> CLAIMED --requester: release--> RELEASED
///    ^                                                                                        |
///    +------------------------------- handler: wait_released returns ---------------------------+
/// ```
///
/// The handler may add the `SLEEPING` bit to `PARKED` or `CLAIMED` before it sleeps on the
/// word; `release` wakes it if the bit is set.
pub struct ParkWord<K: Wake = Futex> {
    word: K::Word,
    futex: K,
}

impl<K: Wake + Default> Default for ParkWord<K> {
    fn default() -> Self {
        ParkWord::new(K::default())
    }
}

const IDLE: u32 = 0;
const PARKED: u32 = 1;
const CLAIMED: u32 = 2;
const RELEASED: u32 = 3;
const SLEEPING: u32 = 1 << 2;

impl<K: Wake> ParkWord<K> {
    /// An idle word, whose handler sleeps and is woken through `futex`.
    pub fn new(futex: K) -> Self {
        ParkWord {
            word: K::Word::new(IDLE),
            futex,
        }
    }

    /// Handler: publishes that the P waits in the handler for the requester to run `f` on
    /// its behalf. Release: everything the interrupted code wrote happens-before the
    /// requester's `try_take`, and so before `f`. Async-signal-safe.
    ///
    /// Sequentially consistent: the handler then checks that the round is still open, and
    /// the requester closes the round before [`ParkWord::release_abandoned`]; at least one
    /// of them sees the other's write.
    pub fn park(&self) {
        self.word.store(PARKED, Ordering::SeqCst);
    }

    /// Whether the P waits in its handler for the requester: parked, or taken and not yet
    /// released.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self.word.load(Ordering::SeqCst) & !SLEEPING,
            PARKED | CLAIMED
        )
    }

    /// Handler, after [`ParkWord::park`], when the round has closed meanwhile: takes the
    /// park back. False if the requester took it first; then wait for the release.
    /// Async-signal-safe.
    pub fn unpark(&self) -> bool {
        self.word
            .compare_exchange(PARKED, IDLE, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Requester, once the round has closed: releases the P if it is parked here, or taken
    /// and not yet released (a panic between [`ParkWord::try_take`] and
    /// [`ParkWord::release`]).
    pub fn release_abandoned(&self) {
        let current = self.word.load(Ordering::SeqCst) & !SLEEPING;
        if current == CLAIMED || (current == PARKED && self.try_take()) {
            self.release();
        }
    }

    /// Requester: takes a P parked in its handler; true if there was one. The requester then
    /// owns the P until [`ParkWord::release`].
    pub fn try_take(&self) -> bool {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & !SLEEPING != PARKED {
                return false;
            }
            match self.word.compare_exchange(
                current,
                CLAIMED | (current & SLEEPING),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Requester: lets the handler return. Release: `f`'s effects happen-before the P
    /// resumes.
    pub fn release(&self) {
        if self.word.swap(RELEASED, Ordering::Release) & SLEEPING != 0 {
            self.futex.wake(&self.word);
        }
    }

    /// Handler: waits until [`ParkWord::release`], spinning `spins` times before it sleeps
    /// on the futex, then resets the word for the next barrier. Async-signal-safe.
    pub fn wait_released(&self, spins: u32) {
        let mut spun = 0;
        loop {
            let current = self.word.load(Ordering::Acquire);
            if current == RELEASED {
                self.word.store(IDLE, Ordering::Relaxed);
                return;
            }
            if spun < spins {
                spun += 1;
                std::hint::spin_loop();
                continue;
            }
            let sleeping = current | SLEEPING;
            if current & SLEEPING == 0
                && self
                    .word
                    .compare_exchange(current, sleeping, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            self.futex.wait(&self.word, sleeping, None);
        }
    }
}

/// An event count the requester sleeps on while it waits for Ps: the last acknowledgement
/// and every P parking in its handler bump it.
///
/// The requester reads [`Wakeup::current`], checks its conditions, and sleeps only if the
/// count has not moved since; a notifier changes the condition, then bumps the count, then
/// wakes the requester if it sleeps. All sequentially consistent, so either the requester
/// sees the change or the notifier sees it sleeping (and the futex compares the count
/// atomically with going to sleep).
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    seq: AtomicU32,
    sleeping: AtomicBool,
}

impl Wakeup {
    /// The current count; pass it to [`Wakeup::sleep`].
    pub(crate) fn current(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Whether the count has moved since `seen`.
    pub(crate) fn moved(&self, seen: u32) -> bool {
        self.current() != seen
    }

    /// Wakes the requester if it sleeps. Async-signal-safe.
    pub(crate) fn notify(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            futex::wake(&self.seq, 1);
        }
    }

    /// Requester: sleeps for at most `timeout` unless the count has moved since `seen`.
    pub(crate) fn sleep(&self, seen: u32, timeout: Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        if !self.moved(seen) {
            futex::wait(&self.seq, seen, Some(timeout));
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_parked_word_is_taken_once_and_released_to_its_waiter() {
        let word = Arc::new(ParkWord::<Futex>::default());
        assert!(!word.try_take(), "nothing parked yet");
        word.park();
        let waiter = {
            let word = Arc::clone(&word);
            // Spins 0 times: sleeps on the futex at once, so release must wake it.
            std::thread::spawn(move || word.wait_released(0))
        };
        assert!(word.try_take());
        assert!(!word.try_take(), "taken once");
        word.release();
        waiter.join().expect("waiter");
        assert!(!word.try_take(), "idle again");
    }

    #[test]
    fn a_notify_before_sleep_is_not_lost() {
        let wakeup = Wakeup::default();
        let seen = wakeup.current();
        wakeup.notify();
        // Would sleep for an hour if the notification were lost.
        wakeup.sleep(seen, Duration::from_secs(3600));
        assert!(wakeup.moved(seen));
    }
}
