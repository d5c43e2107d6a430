//! The requester's wait for the last acknowledgement of a barrier, written once.
//!
//! The protocol never sees the futex: it runs over the two small traits of
//! [`crate::futex`], [`Word`] (the atomic word) and [`Wake`] (sleep on the word while it
//! holds a value; wake a sleeper). The strategies plug in `std`'s `AtomicU32` and
//! [`Futex`](crate::futex::Futex); the loom model in `tests/loom_pending_count.rs` plugs in
//! loom's atomics and a mutex-and-condvar futex, and checks every interleaving of this same
//! code for a lost wake-up.
//!
//! The futex strategy's README gives the steps of each side and the argument; the polling
//! strategy runs the same protocol after a spin phase.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::futex::{WaitResult, Wake, Word};

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

    /// Whether every P has acknowledged (acquire: their writes are now visible).
    pub fn is_zero(&self) -> bool {
        self.word.load(Ordering::Acquire) & !SLEEPING == 0
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
    // A load first: when the requester served every P itself (one P, or all parked), the
    // count is already zero, and no read-modify-write is needed to find it so.
    if count.is_zero() {
        return;
    }
    while let Some(expected) = count.announce_sleep() {
        woke(wake.wait(count.word(), expected, timeout));
    }
}

/// Spins `2^i` times in round `i`, for `rounds` rounds, until every P has acknowledged;
/// returns whether they all did (acquire: their writes are visible). The caller sleeps with
/// [`wait_for_acks`] if not. Spinning pays only when every P has a CPU of its own: a
/// requester that spins keeps a CPU from the P it waits for.
pub fn spin_for_acks<W: Word>(count: &PendingCount<W>, rounds: u32) -> bool {
    for round in 0..rounds {
        if count.is_zero() {
            return true;
        }
        for _ in 0..(1u32 << round) {
            std::hint::spin_loop();
        }
    }
    count.is_zero()
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
