//! P: a logical processor. An M must hold one to run goroutines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::lock::Mutex;
use safepoint_abi::{MId, PId, PStatus};

use super::current;
use super::g::{G, NO_M};
use super::status::PStatusWord;

/// The poll word's bits. The mutator's `poll()` tests the whole word against zero.
pub(crate) mod poll_bits {
    /// A strategy asks the P to call `Strategy::on_poll` at its next safe point.
    pub(crate) const SAFEPOINT: u32 = 1 << 0;
    /// The scheduler asks the running goroutine to yield (sysmon, shutdown).
    pub(crate) const PREEMPT: u32 = 1 << 1;
}

use safepoint_kit::CachePadded;

pub(crate) struct P {
    pub(crate) id: PId,
    pub(crate) status: PStatusWord,
    /// The status a requester stopped the P from (`Idle` or `Syscall`), restored on release.
    stopped_from: AtomicU8,
    /// The poll word, with the requester's record of arming it on the same line: a
    /// barrier's requester writes no other line of the P.
    pub(crate) poll: CachePadded<PollLine>,
    pub(crate) runq: Mutex<VecDeque<Arc<G>>>,
    /// The M that holds the P, or `NO_M`.
    m: AtomicU32,
    /// Incremented on every blocking section; sysmon retakes a P whose tick stands still.
    pub(crate) syscall_tick: AtomicU64,
    /// Incremented on every goroutine switch-in; sysmon preempts a P whose tick stands still.
    pub(crate) sched_tick: AtomicU64,
    /// The number of the last barrier that ran `f` for this P (see `served.rs`).
    pub(crate) served_in: AtomicU32,
    /// The P's M sleeps on the served-P gate until its barrier ends.
    pub(crate) giving_way: AtomicBool,
    /// The P's own M is inside the host's safe-point path for it (the poll's slow path, or
    /// the requester's barrier for its own P): `f(p)` may run there. Written and read only
    /// by that M.
    pub(crate) at_safe_point: AtomicBool,
    /// The thread that stopped the P ([`current::thread_token`]), 0 if none: while the P is
    /// `GcStop`, that thread owns it.
    stopped_by: AtomicUsize,
    /// The P's M is stopped in a signal handler (`Host::stopped_in_handler`, ABI 2.2): a
    /// requester may run `f(p)` on its behalf.
    pub(crate) stopped_in_handler: AtomicBool,
}

/// A P's poll word and the record of its arming.
#[derive(Default)]
pub(crate) struct PollLine {
    /// What the poll tests: [`poll_bits`] armed for the P.
    pub(crate) word: AtomicU32,
    /// How often a strategy has armed the safe-point bit, and when it last did
    /// ([`crate::sys::coarse_monotonic_nanos`]): for timeout reports.
    pub(crate) pokes: AtomicU64,
    pub(crate) last_poke_nanos: AtomicU64,
}

impl P {
    pub(crate) fn new(id: PId) -> P {
        P {
            id,
            status: PStatusWord::new(PStatus::Idle),
            stopped_from: AtomicU8::new(PStatus::Idle as u8),
            poll: CachePadded::default(),
            runq: Mutex::new(VecDeque::new()),
            m: AtomicU32::new(NO_M),
            syscall_tick: AtomicU64::new(0),
            sched_tick: AtomicU64::new(0),
            served_in: AtomicU32::new(0),
            giving_way: AtomicBool::new(false),
            at_safe_point: AtomicBool::new(false),
            stopped_by: AtomicUsize::new(0),
            stopped_in_handler: AtomicBool::new(false),
        }
    }

    pub(crate) fn m(&self) -> Option<MId> {
        match self.m.load(Ordering::Acquire) {
            NO_M => None,
            m => Some(MId(m)),
        }
    }

    pub(crate) fn set_m(&self, m: Option<MId>) {
        self.m.store(m.map_or(NO_M, |m| m.0), Ordering::Release);
    }

    pub(crate) fn arm(&self, bits: u32) {
        self.poll.word.fetch_or(bits, Ordering::SeqCst);
    }

    /// A strategy's request to reach a safe point: arms the bit and counts the poke.
    pub(crate) fn poke(&self) {
        self.arm(poll_bits::SAFEPOINT);
        self.poll.pokes.fetch_add(1, Ordering::Relaxed);
        self.poll
            .last_poke_nanos
            .store(crate::sys::coarse_monotonic_nanos(), Ordering::Relaxed);
    }

    pub(crate) fn disarm(&self, bits: u32) {
        self.poll.word.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Whether a strategy has armed the safe-point bit; sequentially consistent, for the
    /// parking race (see `safepoint/README.md`).
    pub(crate) fn safepoint_armed(&self) -> bool {
        self.poll.word.load(Ordering::SeqCst) & poll_bits::SAFEPOINT != 0
    }

    /// `Host::try_stop_parked_p`: takes an idle or syscall P into `GcStop`. Retries while
    /// the P stays parked, so sysmon moving it from `Syscall` to `Idle` meanwhile cannot
    /// make the stop fail.
    pub(crate) fn try_stop_parked(&self) -> bool {
        loop {
            let from = self.status.load();
            if !matches!(from, PStatus::Idle | PStatus::Syscall) {
                return false;
            }
            if self.status.cas(from, PStatus::GcStop).is_ok() {
                self.stopped_from.store(from as u8, Ordering::Relaxed);
                self.stopped_by
                    .store(current::thread_token(), Ordering::Release);
                return true;
            }
        }
    }

    /// `Host::release_p`: gives a stopped P back in the status it was stopped from. Fails,
    /// naming the status found, if the P is not stopped, or not by the calling thread.
    pub(crate) fn release_stopped(&self) -> Result<(), PStatus> {
        if !self.stopped_by_this_thread() {
            return Err(self.status.load());
        }
        let from =
            PStatus::from_u8(self.stopped_from.load(Ordering::Relaxed)).unwrap_or(PStatus::Idle);
        // Before the status: a thread that sees the P stopped again sees this or the new
        // stopper's token, never its own stale one.
        self.stopped_by.store(0, Ordering::Release);
        self.status.cas(PStatus::GcStop, from)
    }

    /// On the P's own M: it enters the host's safe-point path for the P. Returns the
    /// previous setting, for [`P::leave_safe_point`]. Plain load and store: only this M
    /// writes it.
    pub(crate) fn enter_safe_point(&self) -> bool {
        let outer = self.at_safe_point.load(Ordering::Relaxed);
        self.at_safe_point.store(true, Ordering::Relaxed);
        outer
    }

    pub(crate) fn leave_safe_point(&self, outer: bool) {
        self.at_safe_point.store(outer, Ordering::Relaxed);
    }

    /// Whether the calling thread stopped the P and holds it in `GcStop`.
    pub(crate) fn stopped_by_this_thread(&self) -> bool {
        self.status.load() == PStatus::GcStop
            && self.stopped_by.load(Ordering::Acquire) == current::thread_token()
    }
}
