//! The strategy's state that its signal handler reads: everything here is atomics, or
//! immutable after construction, so the handler can use it without a lock.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use safepoint_abi::{Counter, HostRef};
use safepoint_kit::{CachePadded, PendingPs};

use std::time::Duration;

use crate::config::{Config, DEFAULT_GRACE, SPIN_ROUNDS_FITTING, SPIN_ROUNDS_OVERSUBSCRIBED};
use crate::park::{ParkWord, Wakeup};
use crate::threads::ThreadTable;

/// Re-signal intervals after which a signal still in flight is looked at again.
const STALE_AFTER_RESIGNALS: u64 = 4;

/// A counter for the run summary; relaxed, async-signal-safe.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the run summary shows.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Signals sent (`rt_tgsigqueueinfo`s that succeeded).
    pub(crate) signals_sent: Count,
    /// Times the handler ran on an M of this strategy, ours or not.
    pub(crate) handler_entries: Count,
    /// Ps that the requester ran `f` for while their M waited in the handler.
    pub(crate) async_stops: Count,
    /// Ps that ran `f` themselves at a poll or scheduler transition (`on_poll`).
    pub(crate) poll_stops: Count,
    /// Our signal found the P where it must not stop (a non-preemptible region, a runtime
    /// lock, the scheduler, the C library): left to its next poll.
    pub(crate) left_to_poll: Count,
    /// Signals on our Ms that were not ours, handed to the previous handler.
    pub(crate) forwarded: Count,
    /// Ps reached at a poll while their thread blocked our signal, which was pending there.
    pub(crate) blocked: Count,
    /// Our signal interrupted a syscall that then failed with EINTR (one without
    /// `SA_RESTART` semantics, such as `nanosleep`).
    pub(crate) eintr: Count,
    /// Times the requester armed and signalled late Ps again.
    pub(crate) resignal_rounds: Count,
    /// Signals sent again because the last one had been discarded: its mark had stood for
    /// [`State::stale_after`] and the signal was no longer pending on its thread.
    pub(crate) stale_resent: Count,
    /// Barriers whose running Ps all polled within the grace period: no signal sent.
    pub(crate) polled_in_grace: Count,
    /// Times the requester slept on its futex.
    pub(crate) requester_sleeps: Count,
}

impl Counters {
    /// The counters, after the barriers and handshakes that `pending` began.
    pub(crate) fn report(&self, pending: &PendingPs) -> Vec<Counter> {
        let rounds = [
            Counter::new("barriers", pending.barriers()),
            Counter::new("handshakes", pending.handshakes()),
        ];
        let counts = [
            ("signals sent", &self.signals_sent),
            ("handler entries", &self.handler_entries),
            ("stops at async safe points", &self.async_stops),
            ("stops at polls", &self.poll_stops),
            ("signals left to the poll", &self.left_to_poll),
            ("signals forwarded", &self.forwarded),
            ("polls with the signal blocked", &self.blocked),
            ("EINTRs caused", &self.eintr),
            ("re-signal rounds", &self.resignal_rounds),
            ("discarded signals sent again", &self.stale_resent),
            (
                "barriers reached in the grace period",
                &self.polled_in_grace,
            ),
            ("requester sleeps", &self.requester_sleeps),
        ]
        .map(|(name, count)| Counter::new(name, count.get()));
        rounds.into_iter().chain(counts).collect()
    }
}

/// The state of one signal strategy, at a fixed address for its whole life (the handler
/// finds it through a registry of raw pointers).
pub(crate) struct State {
    pub(crate) host: HostRef,
    pub(crate) config: Config,
    /// Our process id, the target of our signals.
    pub(crate) pid: i32,
    /// How long a signal of ours may stay in flight (its mark set) before the requester
    /// looks whether the kernel discarded it: a few re-signal intervals, in nanoseconds.
    pub(crate) stale_after: u64,
    /// Which Ps `f` has yet to run for in the barrier in flight, and `f`.
    pub(crate) pending: PendingPs,
    /// Ps still to acknowledge; the requester waits for zero.
    remaining: CachePadded<AtomicUsize>,
    /// Per P: its stop in the handler.
    pub(crate) parked: Box<[CachePadded<ParkWord>]>,
    /// The Ms' threads.
    pub(crate) threads: ThreadTable,
    /// What the requester sleeps on.
    pub(crate) wakeup: Wakeup,
    /// Code where a thread must never be stopped asynchronously: the C library, the dynamic
    /// loader and the unwinder, whose internal locks goroutine code may hold there.
    pub(crate) locking_code: Box<[Range<usize>]>,
    pub(crate) counters: Counters,
    /// Spin rounds of the requester before it sleeps (round `i` spins `2^i` times), when
    /// the Ps fit the CPUs; none otherwise (see [`State::spin_rounds`]).
    spin_rounds: u32,
}

impl State {
    /// Starts counting the acknowledgements of `n` Ps.
    pub(crate) fn expect_acknowledgements(&self, n: usize) {
        self.remaining.store(n, Ordering::Relaxed);
    }

    /// One P's acknowledgement (release: what its `f` wrote happens-before the requester's
    /// return). Returns true for the last one. Async-signal-safe.
    pub(crate) fn acknowledge(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::Release) == 1
    }

    /// Ps still to acknowledge (acquire). Async-signal-safe.
    pub(crate) fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }

    /// Spin rounds of the requester for the barrier in flight: the configured ones, or by
    /// default none when the host says the runtime is oversubscribed (a waiter that spins
    /// keeps a CPU from the thread it waits for). Async-signal-safe.
    pub(crate) fn spin_rounds(&self) -> u32 {
        match self.config.spin_rounds {
            Some(rounds) => rounds,
            None if self.host.oversubscribed() => SPIN_ROUNDS_OVERSUBSCRIBED,
            None => self.spin_rounds,
        }
    }

    /// How long running Ps may take to poll before the requester signals them: the
    /// configured grace, or by default none when the runtime is oversubscribed.
    pub(crate) fn grace(&self) -> Duration {
        match self.config.grace {
            Some(grace) => grace,
            None if self.host.oversubscribed() => Duration::ZERO,
            None => DEFAULT_GRACE,
        }
    }

    /// Pauses of a P stopped in its handler before it sleeps: as many as the requester's
    /// rounds add up to. Async-signal-safe.
    pub(crate) fn handler_spins(&self) -> u32 {
        (1u32 << self.spin_rounds()) - 1
    }

    pub(crate) fn new(host: HostRef, config: Config, locking_code: Vec<Range<usize>>) -> State {
        let procs = host.procs() as usize;
        State {
            host,
            config,
            pid: crate::sys::getpid(),
            stale_after: STALE_AFTER_RESIGNALS * config.resignal.as_nanos() as u64,
            pending: PendingPs::new(procs as u32),
            remaining: CachePadded(AtomicUsize::new(0)),
            parked: (0..procs).map(|_| CachePadded::default()).collect(),
            threads: ThreadTable::default(),
            wakeup: Wakeup::default(),
            locking_code: locking_code.into_boxed_slice(),
            counters: Counters::default(),
            spin_rounds: SPIN_ROUNDS_FITTING,
        }
    }
}
