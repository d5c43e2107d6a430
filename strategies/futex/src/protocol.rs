//! The wait and wake protocol of the pending-count word, written once.
//!
//! The protocol never sees the futex: it runs over two small traits, [`Word`] (the atomic
//! word) and [`Wake`] (sleep on the word while it holds a value; wake a sleeper). The strategy
//! plugs in `std`'s `AtomicU32` and the `futex(2)` system call; the loom model in
//! `tests/loom_protocol.rs` plugs in loom's atomics and a mutex-and-condvar futex, and checks
//! every interleaving of this same code for a lost wake-up.
//!
//! See the crate's README for the steps of each side and the argument.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The atomic operations the protocol needs, on a 32-bit word (a futex word is 32 bits).
pub trait Word: Sync {
    /// A new word holding `value`.
    fn new(value: u32) -> Self;
    /// `AtomicU32::store`.
    fn store(&self, value: u32, order: Ordering);
    /// `AtomicU32::fetch_or`.
    fn fetch_or(&self, bits: u32, order: Ordering) -> u32;
    /// `AtomicU32::fetch_sub`.
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
}

impl Word for AtomicU32 {
    fn new(value: u32) -> AtomicU32 {
        AtomicU32::new(value)
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
}

/// Why [`Wake::wait`] returned. The caller re-checks the word in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// A [`Wake::wake`] woke it (possibly one meant for an earlier barrier).
    Woken,
    /// The word no longer held the expected value when the wait began (`EAGAIN`).
    Changed,
    /// The timeout passed with no wake (`ETIMEDOUT`).
    TimedOut,
    /// A signal interrupted the wait (`EINTR`).
    Interrupted,
}

/// Sleeping on a word and waking its sleeper: `futex(2)`'s `FUTEX_WAIT` and `FUTEX_WAKE`.
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

/// The bit of the pending-count word that says the requester sleeps, or is about to.
const SLEEPING: u32 = 1 << 31;

/// The pending-count word: how many Ps have still to acknowledge (low 31 bits), and whether
/// the requester is sleeping on it (the top bit).
///
/// One word holds both so that an acknowledgement learns, in the same atomic step that
/// counts it, whether it is the last and whether the requester sleeps.
pub struct PendingCount<W> {
    word: W,
}

/// What an acknowledgement found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the last acknowledgement may have to wake the requester"]
pub enum Ack {
    /// Other Ps have still to acknowledge.
    NotLast,
    /// It was the last, and the requester does not sleep.
    Last,
    /// It was the last, and the requester sleeps or is about to: wake it.
    LastWithSleeper,
}

impl<W: Word> PendingCount<W> {
    /// No barrier in flight: nothing pending, nobody sleeping.
    pub fn new() -> PendingCount<W> {
        PendingCount { word: W::new(0) }
    }

    /// Requester, before it arms any P: `n` Ps have to acknowledge, and it is awake. Relaxed:
    /// arming (sequentially consistent) publishes it to the Ps.
    ///
    /// # Panics
    ///
    /// If `n` does not fit in 31 bits.
    pub fn reset(&self, n: u32) {
        assert!(n < SLEEPING, "{n} Ps do not fit the pending count");
        self.word.store(n, Ordering::Relaxed);
    }

    /// One P's acknowledgement, after its `f` ran (release: what the P wrote before it is
    /// visible to the requester that sees the count reach zero).
    pub fn ack(&self) -> Ack {
        let old = self.word.fetch_sub(1, Ordering::Release);
        debug_assert!(old & !SLEEPING != 0, "acknowledgement with nothing pending");
        match (old & !SLEEPING == 1, old & SLEEPING != 0) {
            (false, _) => Ack::NotLast,
            (true, false) => Ack::Last,
            (true, true) => Ack::LastWithSleeper,
        }
    }

    /// The requester's acknowledgement for a parked P it served. The requester is the only
    /// sleeper, so it has nobody to wake.
    pub fn ack_by_requester(&self) {
        let _ = self.ack();
    }

    /// Requester: announces that it is going to sleep. `None` if every P has acknowledged
    /// (acquire: their writes are now visible); otherwise the word's value to sleep on.
    fn announce_sleep(&self) -> Option<u32> {
        let old = self.word.fetch_or(SLEEPING, Ordering::Acquire);
        (old & !SLEEPING != 0).then_some(old | SLEEPING)
    }

    /// The futex word itself.
    pub fn word(&self) -> &W {
        &self.word
    }
}

impl<W: Word> Default for PendingCount<W> {
    fn default() -> PendingCount<W> {
        PendingCount::new()
    }
}

/// The requester's wait: sleeps on `count` until every P has acknowledged. Each sleep lasts
/// at most `timeout`; `woke` is told why each one ended (it re-pokes the late Ps after
/// [`WaitResult::TimedOut`], and may acknowledge for them with [`PendingCount::ack`]).
///
/// Returns with the count at zero, read with acquire ordering.
pub fn wait_for_acks<K: Wake>(
    wake: &K,
    count: &PendingCount<K::Word>,
    timeout: Option<Duration>,
    mut woke: impl FnMut(WaitResult),
) {
    while let Some(expected) = count.announce_sleep() {
        woke(wake.wait(count.word(), expected, timeout));
    }
}

/// A P's acknowledgement at its safe point, after its `f` ran: the last one wakes the
/// requester if it sleeps. Returns whether it called [`Wake::wake`].
pub fn acknowledge<K: Wake>(wake: &K, count: &PendingCount<K::Word>) -> bool {
    let woke = count.ack() == Ack::LastWithSleeper;
    if woke {
        wake.wake(count.word());
    }
    woke
}
