//! In-flight marks: one per attached M's thread and strategy, in a static table that
//! outlives every strategy, saying which signal of ours is on its way to that thread.
//!
//! Each signal we send carries the value of its mark (`si_value`, sent with
//! `rt_tgsigqueueinfo`): a tag that names this copy of the library, the mark's slot and a
//! sequence number. The handler recognises our signals by the tag alone, whatever strategy
//! is live (or none), and takes the mark by comparing the exact value, so that a signal
//! from an earlier use of the slot can never take a later mark.
//!
//! Every mark that is set is counted in its signal's installation state
//! (`sys::handler::in_flight_added` / `in_flight_removed`): our handler stays installed
//! while any is set, even after every strategy using the signal has retired. A mark is
//! cleared by whoever *takes* it, once:
//!
//! - the handler, when the signal it names arrives;
//! - the requester, when the signal could not be sent, or when it has stood for a few
//!   re-signal intervals and is no longer pending on its thread ([`Mark::settle`]): the
//!   kernel discarded it (the application ignored the signal for a moment, or took it with
//!   `sigwait` or a `signalfd`), and another is sent;
//! - a retiring strategy, for a signal no longer pending on its thread ([`Mark::settle`]):
//!   delivered (our handler runs for it, whatever the disposition is by then) or discarded;
//! - the M's own thread as it stops, after blocking the signal: what is pending dies with
//!   the thread.
//!
//! A slot is *attached* while its strategy uses it. Detached with a mark set, it is
//! *orphaned*: it stays allocated until the mark is taken, so the count stays right.
//!
//! Everything the handler calls here ([`from_value`], [`Mark::take`]) is atomics only.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// Slots: threads attached to a signal strategy at once (a swap between two signal
/// strategies attaches every M twice), plus orphans.
const SLOTS: usize = 1024;

const FREE: u8 = 0;
const ATTACHED: u8 = 1;
const ORPHANED: u8 = 2;

/// A value is `tag:20 | slot:12 | sequence:32`.
const SLOT_BITS: u32 = 12;
const SEQUENCE_BITS: u32 = 32;
const _: () = assert!(SLOTS <= 1 << SLOT_BITS);

/// One slot of the table.
#[derive(Debug)]
pub(crate) struct Mark {
    owner: AtomicU8,
    /// The value of the signal in flight, or 0.
    value: AtomicU64,
    /// When it was sent (monotonic nanoseconds); only the requester reads it.
    sent_at: AtomicU64,
    tid: AtomicI32,
    signal: AtomicI32,
}

impl Mark {
    const fn new() -> Mark {
        Mark {
            owner: AtomicU8::new(FREE),
            value: AtomicU64::new(0),
            sent_at: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            signal: AtomicI32::new(0),
        }
    }
}

static TABLE: [Mark; SLOTS] = [const { Mark::new() }; SLOTS];

/// Numbers the signals sent, so that no two values of a slot are alike.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// This copy of the library's tag: bits of the table's address. A copy loaded from another
/// file has its own table, elsewhere, and so its own tag; a signal of the other copy is not
/// ours and is forwarded to its handler.
fn tag() -> u64 {
    let page = std::ptr::from_ref(&TABLE) as u64 >> 12;
    // Never zero, so that no value of ours is zero.
    (page & 0xF_FFFF) | 1
}

/// The signal in flight to a thread, as [`Mark::in_flight`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub(crate) value: u64,
    pub(crate) sent_at: u64,
}

/// Whether `value`'s signal has left its thread's pending set, per [`Mark::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Taken: the signal had been delivered or discarded.
    Gone,
    /// Still pending on its thread (which blocks it, or has not run since).
    Pending,
    /// The mark was taken meanwhile, or holds another value.
    Moved,
    /// The kernel cannot say (no `/proc`): left as it is.
    Unknown,
}

/// Takes a free slot for thread `tid` and `signal`. Not for a signal handler.
pub(crate) fn attach(tid: i32, signal: libc::c_int) -> Result<&'static Mark, String> {
    let mark = TABLE
        .iter()
        .find(|m| {
            m.owner
                .compare_exchange(FREE, ATTACHED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or_else(|| {
            format!(
                "more than {SLOTS} threads attached to signal strategies at once \
                 (or whose signals are still on their way)"
            )
        })?;
    mark.tid.store(tid, Ordering::Relaxed);
    mark.signal.store(signal, Ordering::Relaxed);
    Ok(mark)
}

/// The mark `value` names, if it is a value of ours. Async-signal-safe.
pub(crate) fn from_value(value: u64) -> Option<&'static Mark> {
    if value >> (SLOT_BITS + SEQUENCE_BITS) != tag() {
        return None;
    }
    at((value >> SEQUENCE_BITS) as usize & ((1 << SLOT_BITS) - 1))
}

/// Takes the mark of every orphaned slot of `signal` whose signal is no longer pending on
/// its thread ([`Mark::settle`]), freeing the slot. Called as a strategy of the signal starts
/// and as one retires, so orphans do not pile up: a standard signal sent while another is
/// pending on its thread is discarded, and its mark, orphaned at a retirement while the other
/// was still pending, is never taken by a handler. Reads `/proc`: not for a handler.
///
/// A thread that blocks a standard signal for good keeps one pending, and every later
/// strategy's signal to it is discarded: their marks would never settle. At most two of
/// ours are on their way to one thread (one in its handler, which blocks the signal, and
/// one pending), so all but two of that thread's orphans are taken as well, and the two
/// left keep the handler installed.
pub(crate) fn settle_orphans(signal: libc::c_int) {
    let coalesces = signal < libc::SIGRTMIN();
    let mut still_pending: Vec<i32> = Vec::new();
    for mark in orphans(signal) {
        let Some(in_flight) = mark.in_flight() else {
            continue;
        };
        if mark.settle(in_flight) == Settled::Pending && coalesces {
            let tid = mark.tid();
            if still_pending.iter().filter(|&&t| t == tid).count() < 2 {
                still_pending.push(tid);
            } else {
                mark.take(in_flight.value);
            }
        }
    }
}

/// How many orphaned slots of `signal` were attached for one of `tids`.
pub(crate) fn orphans_of(signal: libc::c_int, tids: &[i32]) -> usize {
    orphans(signal).filter(|m| tids.contains(&m.tid())).count()
}

fn orphans(signal: libc::c_int) -> impl Iterator<Item = &'static Mark> {
    TABLE.iter().filter(move |m| {
        m.owner.load(Ordering::Acquire) == ORPHANED && m.signal.load(Ordering::Relaxed) == signal
    })
}

/// The mark in slot `slot`. Async-signal-safe.
pub(crate) fn at(slot: usize) -> Option<&'static Mark> {
    TABLE.get(slot)
}

impl Mark {
    /// The slot's number: an element of `TABLE`, so its offset is an index below `SLOTS`.
    pub(crate) fn slot(&self) -> usize {
        (std::ptr::from_ref(self) as usize - TABLE.as_ptr() as usize) / size_of::<Mark>()
    }

    /// The thread this slot was attached for.
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }

    /// The signal in flight, if any.
    pub(crate) fn in_flight(&self) -> Option<InFlight> {
        match self.value.load(Ordering::Acquire) {
            0 => None,
            value => Some(InFlight {
                value,
                sent_at: self.sent_at.load(Ordering::Relaxed),
            }),
        }
    }

    /// Requester: marks a signal in flight, counted before it is visible, and returns the
    /// value to send with it; `None` if one already is (at most one per thread, Go issue
    /// 37741). The caller's strategy uses the signal, so the handler is installed.
    pub(crate) fn start(&self, now: u64) -> Option<u64> {
        if self.value.load(Ordering::Acquire) != 0 {
            return None;
        }
        let sequence = u64::from(SEQUENCE.fetch_add(1, Ordering::Relaxed));
        let value =
            tag() << (SLOT_BITS + SEQUENCE_BITS) | (self.slot() as u64) << SEQUENCE_BITS | sequence;
        let signal = self.signal.load(Ordering::Relaxed);
        sys::handler::in_flight_added(signal);
        self.sent_at.store(now, Ordering::Relaxed);
        if self
            .value
            .compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            sys::handler::in_flight_removed(signal);
            return None;
        }
        Some(value)
    }

    /// Requester: the signal in flight was sent long ago and is still pending; look again
    /// only after another while.
    pub(crate) fn touch(&self, now: u64) {
        self.sent_at.store(now, Ordering::Relaxed);
    }

    /// Takes the mark if it still holds `value`: the signal named by `value` is no longer on
    /// its way. True for exactly one taker per value. Frees an orphaned slot. The last mark
    /// of a signal that no strategy uses any more puts its previous disposition back.
    /// Async-signal-safe.
    pub(crate) fn take(&self, value: u64) -> bool {
        if self
            .value
            .compare_exchange(value, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // Read before the slot may be freed and attached anew.
        let signal = self.signal.load(Ordering::Relaxed);
        // Against `detach`'s store-then-load: one of us sees the other and frees the slot.
        if self.owner.load(Ordering::SeqCst) == ORPHANED {
            self.free_orphan();
        }
        sys::handler::in_flight_removed(signal);
        true
    }

    /// Requester or retirement, for a signal in flight: if it is no longer pending on its
    /// thread (delivered, so our handler runs for it whatever the disposition is now; or
    /// discarded; or its thread is gone), takes the mark. Reads `/proc`: not for a handler.
    pub(crate) fn settle(&self, in_flight: InFlight) -> Settled {
        match sys::pending_on_thread(self.tid(), self.signal.load(Ordering::Relaxed)) {
            Some(true) => Settled::Pending,
            Some(false) if self.take(in_flight.value) => Settled::Gone,
            Some(false) => Settled::Moved,
            None => Settled::Unknown,
        }
    }

    /// Its strategy stops using the slot: free, or orphaned until the signal in flight is
    /// taken.
    pub(crate) fn detach(&self) {
        self.owner.store(ORPHANED, Ordering::SeqCst);
        if self.value.load(Ordering::SeqCst) == 0 {
            self.free_orphan();
        }
    }

    fn free_orphan(&self) {
        let _ = self
            .owner
            .compare_exchange(ORPHANED, FREE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use super::*;
    use crate::config::Signal;
    use crate::sys::{getpid, gettid, handler, queue_signal, set_signal_blocked};

    /// A thread that blocks a signal until told to unblock it, then exits when told.
    struct BlockingThread {
        tid: i32,
        commands: mpsc::Sender<()>,
        done: mpsc::Receiver<i32>,
        thread: JoinHandle<()>,
    }

    impl BlockingThread {
        fn spawn(signal: libc::c_int) -> BlockingThread {
            let (commands, received) = mpsc::channel::<()>();
            let (to_test, done) = mpsc::channel::<i32>();
            let thread = std::thread::spawn(move || {
                set_signal_blocked(signal, true);
                to_test.send(gettid()).expect("send");
                if received.recv().is_ok() {
                    set_signal_blocked(signal, false);
                    to_test.send(0).expect("send");
                    let _ = received.recv();
                }
            });
            let tid = done.recv().expect("tid");
            BlockingThread {
                tid,
                commands,
                done,
                thread,
            }
        }

        /// Unblocking delivers the pending signal to our handler, which takes its mark.
        fn unblock(&self) {
            self.commands.send(()).expect("unblock");
            self.done.recv().expect("unblocked");
        }

        fn exit(self) {
            drop(self.commands);
            self.thread.join().expect("thread");
        }
    }

    /// A strategy sends `signal` to `tid` with a new mark, then retires: the mark is orphaned.
    fn send_and_retire(tid: i32, signal: libc::c_int) {
        let mark = attach(tid, signal).expect("a free slot");
        let value = mark.start(1).expect("nothing in flight yet");
        queue_signal(getpid(), tid, signal, value).expect("queue");
        mark.detach();
    }

    /// Two signals sent to a thread that blocks the signal. The second is discarded, as a
    /// standard signal pending already; both marks are orphaned while the first is still
    /// pending. Once the thread takes the first, the second must be settled, or its slot is
    /// lost for good. (Orphan counts are by signal and thread: a test beside this one may
    /// attach a freed slot again.)
    #[test]
    fn an_orphan_whose_signal_was_discarded_is_settled_once_its_thread_has_nothing_pending() {
        // Not SIGURG or SIGWINCH, which other tests of this crate send.
        let signal = libc::SIGUSR2;
        let installation = handler::install(Signal { number: signal }).expect("install");
        let thread = BlockingThread::spawn(signal);
        let tid = thread.tid;
        send_and_retire(tid, signal);
        send_and_retire(tid, signal);
        settle_orphans(signal);
        assert_eq!(
            orphans_of(signal, &[tid]),
            2,
            "the first signal is still pending"
        );
        thread.unblock();
        assert_eq!(
            orphans_of(signal, &[tid]),
            1,
            "the handler took the first mark only"
        );
        settle_orphans(signal);
        assert_eq!(
            orphans_of(signal, &[tid]),
            0,
            "the discarded signal's mark was settled"
        );
        thread.exit();
        installation.uninstall().expect("restore SIGUSR2");
    }

    /// A thread that never unblocks a standard signal: of the orphans of the signals sent to
    /// it by one strategy after another (the first still pending, the rest discarded), the
    /// settling keeps two and frees the others, so swaps cannot use up the table.
    #[test]
    fn a_thread_that_blocks_the_signal_for_good_keeps_two_orphans_at_most() {
        // Not SIGURG, SIGWINCH or SIGUSR2, which other tests of this crate use.
        let signal = libc::SIGUSR1;
        let installation = handler::install(Signal { number: signal }).expect("install");
        let thread = BlockingThread::spawn(signal);
        let tid = thread.tid;
        for strategy in 0..6 {
            send_and_retire(tid, signal);
            settle_orphans(signal);
            assert_eq!(orphans_of(signal, &[tid]), (strategy + 1).min(2));
        }
        // Exiting, the thread takes its pending signal with it, and the last two settle.
        thread.exit();
        settle_orphans(signal);
        assert_eq!(orphans_of(signal, &[tid]), 0);
        installation.uninstall().expect("restore SIGUSR1");
    }
}
