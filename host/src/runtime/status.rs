//! Goroutine and P status words, and Go's wait reasons.
//!
//! Every change of a G's status goes through [`GStatusWord::cas`] (Go's `casgstatus`), which
//! refuses transitions that Go's scheduler never makes. A P's status changes through
//! [`PStatusWord::cas`]; only the P's owner, a requester stopping a parked P, and sysmon
//! retaking a syscall P ever change it.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use safepoint_abi::PStatus;

/// Why a goroutine is waiting, with Go's strings (`runtime2.go`, `waitReasonStrings`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// No reason given.
    Zero = 0,
    /// Parked in a channel receive.
    ChanReceive,
    /// Parked in a channel send.
    ChanSend,
    /// Parked in `sleep`.
    Sleep,
    /// Parked on a semaphore.
    SemAcquire,
    /// Parked in `WaitGroup::wait`.
    SyncWaitGroupWait,
    /// Stopping the world.
    StoppingTheWorld,
    /// In `for_each_p` from `gc_mark_done`.
    GcMarkTermination,
    /// In `for_each_p` from `gc_mark_termination`.
    FlushProcCaches,
    /// A GC background mark worker waiting for work.
    GcWorkerIdle,
    /// Waiting for a goroutine to reach a safe point so its stack can be scanned.
    PreemptedForScan,
    /// Waiting on a generic runtime event (tests, demos).
    Event,
    /// A GC mark worker scanning stacks, on its system stack.
    GcWorkerActive,
    /// Its P has been served by the barrier in flight; its M gives the CPU to the late Ps
    /// until the barrier ends (the served-P policy `wait`).
    ForEachPServed,
}

impl WaitReason {
    const ALL: [WaitReason; 14] = [
        WaitReason::Zero,
        WaitReason::ChanReceive,
        WaitReason::ChanSend,
        WaitReason::Sleep,
        WaitReason::SemAcquire,
        WaitReason::SyncWaitGroupWait,
        WaitReason::StoppingTheWorld,
        WaitReason::GcMarkTermination,
        WaitReason::FlushProcCaches,
        WaitReason::GcWorkerIdle,
        WaitReason::PreemptedForScan,
        WaitReason::Event,
        WaitReason::GcWorkerActive,
        WaitReason::ForEachPServed,
    ];

    /// Go's string for the reason, as the goroutine dump prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Zero => "waiting",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::ChanSend => "chan send",
            WaitReason::Sleep => "sleep",
            WaitReason::SemAcquire => "semacquire",
            WaitReason::SyncWaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::StoppingTheWorld => "stopping the world",
            WaitReason::GcMarkTermination => "GC mark termination",
            WaitReason::FlushProcCaches => "flushing proc caches",
            WaitReason::GcWorkerIdle => "GC worker (idle)",
            WaitReason::PreemptedForScan => "preempted",
            WaitReason::Event => "event",
            WaitReason::GcWorkerActive => "GC worker (active)",
            WaitReason::ForEachPServed => "waiting for forEachP",
        }
    }

    pub(crate) fn from_u8(v: u8) -> WaitReason {
        WaitReason::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(WaitReason::Zero)
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A goroutine's status, Go's `_Gidle` ... `_Gdead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GStatus {
    /// Just allocated, not yet initialised.
    Idle,
    /// On a run queue, not executing.
    Runnable,
    /// Executing on an M that holds a P.
    Running,
    /// Executing a blocking section on an M; not running goroutine code.
    Syscall,
    /// Blocked, for the given reason; its stack may be scanned in place.
    Waiting(WaitReason),
    /// Finished.
    Dead,
}

impl GStatus {
    fn code(self) -> u32 {
        match self {
            GStatus::Idle => 0,
            GStatus::Runnable => 1,
            GStatus::Running => 2,
            GStatus::Syscall => 3,
            GStatus::Waiting(reason) => 4 | (u32::from(reason as u8) << REASON_SHIFT),
            GStatus::Dead => 6,
        }
    }

    fn from_code(code: u32) -> GStatus {
        match code & STATE_MASK {
            0 => GStatus::Idle,
            1 => GStatus::Runnable,
            2 => GStatus::Running,
            3 => GStatus::Syscall,
            4 => GStatus::Waiting(WaitReason::from_u8((code >> REASON_SHIFT) as u8)),
            _ => GStatus::Dead,
        }
    }

    /// Whether Go's scheduler ever makes the transition `self -> to`.
    pub fn can_become(self, to: GStatus) -> bool {
        use GStatus::*;
        matches!(
            (self, to),
            (Idle, Runnable)
                | (Runnable, Running)
                | (Running, Runnable)
                | (Running, Waiting(_))
                | (Running, Syscall)
                | (Running, Dead)
                | (Syscall, Running)
                | (Syscall, Runnable)
                | (Waiting(_), Runnable)
                | (Waiting(_), Running)
        )
    }

    /// Go's name for the dump: the wait reason for a waiting G, else the state.
    pub fn dump_name(self) -> &'static str {
        match self {
            GStatus::Idle => "idle",
            GStatus::Runnable => "runnable",
            GStatus::Running => "running",
            GStatus::Syscall => "syscall",
            GStatus::Waiting(reason) => reason.as_str(),
            GStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for GStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GStatus::Waiting(reason) => write!(f, "waiting({reason})"),
            other => f.write_str(other.dump_name()),
        }
    }
}

const STATE_MASK: u32 = 0x7;
/// Go's `_Gscan`: set while a GC worker scans the stack; the status cannot change meanwhile.
const SCAN_BIT: u32 = 0x8;
const REASON_SHIFT: u32 = 8;

/// A G's packed status word: state, scan bit and wait reason.
pub(crate) struct GStatusWord(AtomicU32);

impl GStatusWord {
    pub(crate) fn new(status: GStatus) -> GStatusWord {
        GStatusWord(AtomicU32::new(status.code()))
    }

    /// The current status, ignoring the scan bit.
    pub(crate) fn load(&self) -> GStatus {
        GStatus::from_code(self.0.load(Ordering::Acquire))
    }

    /// Whether a scanner holds the scan bit.
    pub(crate) fn is_scanning(&self) -> bool {
        self.0.load(Ordering::Acquire) & SCAN_BIT != 0
    }

    /// Go's `casgstatus`: changes `from` to `to`, waiting while a scanner holds the scan bit.
    ///
    /// # Panics
    ///
    /// If `from -> to` is not a transition Go makes, or if the G is not in `from`; both are
    /// runtime bugs, and the message names both states.
    pub(crate) fn cas(&self, goid: u64, from: GStatus, to: GStatus) {
        assert!(
            from.can_become(to),
            "casgstatus: goroutine {goid}: invalid transition from {from} to {to}"
        );
        let (old, new) = (from.code(), to.code());
        let mut spins = 0u32;
        loop {
            match self
                .0
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(cur) if cur == old | SCAN_BIT || cur == old => {
                    // A scanner holds the G for a moment (or a spurious failure): wait.
                    backoff(&mut spins);
                }
                Err(cur) => panic!(
                    "casgstatus: goroutine {goid}: expected {from} for transition to {to}, found {}",
                    GStatus::from_code(cur)
                ),
            }
        }
    }
}

impl GStatusWord {
    /// Go's `castogscanstatus`: sets the scan bit if the G is in `expected` and no scanner
    /// holds it. While the bit is set the status cannot change.
    pub(crate) fn try_begin_scan(&self, expected: GStatus) -> bool {
        let old = expected.code();
        self.0
            .compare_exchange(old, old | SCAN_BIT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Clears the scan bit taken with [`GStatusWord::try_begin_scan`].
    pub(crate) fn end_scan(&self) {
        let prev = self.0.fetch_and(!SCAN_BIT, Ordering::Release);
        debug_assert!(prev & SCAN_BIT != 0, "end_scan without the scan bit");
    }
}

/// Spins a little, then yields the thread: for waits known to be short. Async-signal-safe
/// (`sched_yield` as a bare system call).
pub(crate) fn backoff(spins: &mut u32) {
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        safepoint_kit::sched::yield_now();
    }
    *spins = spins.saturating_add(1);
}

/// A P's status word, with Go's states.
pub(crate) struct PStatusWord(AtomicU8);

impl PStatusWord {
    pub(crate) fn new(status: PStatus) -> PStatusWord {
        PStatusWord(AtomicU8::new(status as u8))
    }

    pub(crate) fn load(&self) -> PStatus {
        PStatus::from_u8(self.0.load(Ordering::SeqCst)).expect("corrupt P status word")
    }

    /// Changes `from` to `to`. Sequentially consistent: it pairs with the poll-word check that
    /// follows it (see `safepoint/README.md`, "the parking race").
    pub(crate) fn cas(&self, from: PStatus, to: PStatus) -> Result<(), PStatus> {
        debug_assert!(
            Self::can_become(from, to),
            "P status: invalid transition from {from} to {to}"
        );
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .map(drop)
            .map_err(|cur| PStatus::from_u8(cur).expect("corrupt P status word"))
    }

    /// Stores `to` unconditionally; for the owner of a P giving it back.
    pub(crate) fn store(&self, to: PStatus) {
        self.0.store(to as u8, Ordering::SeqCst);
    }

    fn can_become(from: PStatus, to: PStatus) -> bool {
        use PStatus::*;
        matches!(
            (from, to),
            (Idle, Running)
                | (Idle, GcStop)
                | (Running, Idle)
                | (Running, Syscall)
                | (Syscall, Running)
                | (Syscall, Idle)
                | (Syscall, GcStop)
                | (GcStop, Idle)
                | (GcStop, Syscall)
                | (Idle, Dead)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_word() {
        for reason in WaitReason::ALL {
            let s = GStatus::Waiting(reason);
            assert_eq!(GStatus::from_code(s.code()), s);
        }
        for s in [
            GStatus::Idle,
            GStatus::Runnable,
            GStatus::Running,
            GStatus::Syscall,
            GStatus::Dead,
        ] {
            assert_eq!(GStatus::from_code(s.code()), s);
        }
    }

    #[test]
    #[should_panic(expected = "invalid transition from dead to running")]
    fn illegal_transition_panics_naming_both_states() {
        let w = GStatusWord::new(GStatus::Dead);
        w.cas(1, GStatus::Dead, GStatus::Running);
    }

    #[test]
    #[should_panic(expected = "expected running for transition to waiting(sleep), found runnable")]
    fn wrong_current_state_panics_naming_it() {
        let w = GStatusWord::new(GStatus::Runnable);
        w.cas(1, GStatus::Running, GStatus::Waiting(WaitReason::Sleep));
    }

    #[test]
    fn the_scan_bit_excludes_a_second_scanner_and_holds_the_status() {
        let w = GStatusWord::new(GStatus::Waiting(WaitReason::Sleep));
        assert!(w.try_begin_scan(GStatus::Waiting(WaitReason::Sleep)));
        assert!(!w.try_begin_scan(GStatus::Waiting(WaitReason::Sleep)));
        assert!(w.is_scanning());
        assert_eq!(w.load(), GStatus::Waiting(WaitReason::Sleep));
        w.end_scan();
        assert!(!w.is_scanning());
        w.cas(1, GStatus::Waiting(WaitReason::Sleep), GStatus::Runnable);
        assert_eq!(w.load(), GStatus::Runnable);
    }
}
