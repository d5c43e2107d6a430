//! What a served P does while its barrier is still in flight: the served-P policy.
//!
//! When runnable Ms outnumber CPUs, a P that has run `f` and goes on computing keeps the
//! CPU that a late P's thread needs, and the kernel hands it over only at the end of a time
//! slice (milliseconds). Go's stop-the-world and HotSpot's safepoint avoid that: a stopped
//! thread sleeps until the world restarts. Here the host does the same for every strategy:
//! after `on_poll` served a P (and, through `Host::give_way`, after a signal handler's stop),
//! the P's M waits on one futex word, the [`Gate`], until the barrier ends; the end wakes every
//! waiter with one `FUTEX_WAKE`.
//!
//! # The gate
//!
//! - `barrier`: odd while a barrier is in flight (its number), even otherwise. Each P records
//!   the number of the barrier that last ran `f` for it (`P::served_in`, written by the
//!   counted `f`), so a P knows it has been served in the barrier in flight.
//! - `events`: the futex word; bumped by the barrier's end and by a poke of a waiting P.
//! - `waiters`: Ms waiting, so that a barrier without waiters ends without a system call.
//!
//! # The P of a sleeping M
//!
//! A waiting M parks its P as `Idle` (but not in the idle list, so no other M acquires it,
//! and sysmon, which retakes only `Syscall` Ps, leaves it alone), as Go's stop-the-world
//! leaves the Ps of stopped Ms to the stopper. A requester reaches such a P without the M:
//! the next barrier stops it (`try_stop_parked`), runs `f` on its behalf and releases it,
//! however long the M takes to be scheduled after the end's wake-up (on a virtual machine, a
//! halted vCPU can take milliseconds to come back). It is the parking protocol of
//! `README.md`: the M publishes `Idle`, then re-reads its poll word before each sleep, so a
//! requester that armed the P and saw it still `Running` is never left waiting for a poll.
//! Waking, the M takes its P back, waiting only while a requester holds it in `GcStop`.
//!
//! A waiter counts itself, then re-reads `events` and `barrier` before each `FUTEX_WAIT`;
//! the end bumps `barrier` and `events`, then reads `waiters` (all sequentially consistent):
//! either the end sees the waiter and wakes it, or the waiter sees the end.
//!
//! # Leaving early
//!
//! A waiter on a goroutine's poll path waits on the system stack with its goroutine in
//! `Waiting(waiting for forEachP)`, so a GC stack scan proceeds in place, as for the
//! requester (Go change 533455). A waiter inside a signal handler cannot make its goroutine
//! scannable: a mark worker that spins in `suspend_g` for it, in a P the barrier still waits
//! for, would deadlock with it. So `suspend_g`'s request, besides arming the P's preempt bit,
//! pokes the gate ([`Gate::poke`]): it clears the P's `giving_way` flag and wakes the
//! waiters, and a waiter whose flag is cleared leaves the wait and goes back to its
//! goroutine, which parks for the scan at its next poll. A poke that comes before the waiter
//! has set its flag is lost, but `suspend_g` pokes again on every round until the goroutine
//! parks. Nothing else ends a wait early: sysmon's preemption of a goroutine that has run
//! too long waits for the barrier like everything else.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use safepoint_kit::futex;
use safepoint_kit::sched;

use safepoint_abi::PStatus;
use safepoint_kit::CachePadded;

use crate::runtime::P;
use crate::runtime::status::backoff;

/// What the M of a P that has been served does while the barrier is still in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServedPs {
    /// `wait` when the runtime is oversubscribed at the barrier's start, `run` otherwise:
    /// the best of both, by measurement (see `host/src/safepoint/README.md`).
    #[default]
    Auto,
    /// Go on running goroutines at once.
    Run,
    /// Yield the CPU once (`sched_yield`), then go on.
    Yield,
    /// Sleep on a futex until the barrier ends, whatever the load.
    Wait,
}

impl ServedPs {
    /// Every policy, in the order the CLI lists them.
    pub const ALL: [ServedPs; 4] = [
        ServedPs::Auto,
        ServedPs::Run,
        ServedPs::Yield,
        ServedPs::Wait,
    ];

    /// The name `--served-ps` takes.
    pub fn name(self) -> &'static str {
        match self {
            ServedPs::Auto => "auto",
            ServedPs::Run => "run",
            ServedPs::Yield => "yield",
            ServedPs::Wait => "wait",
        }
    }
}

impl fmt::Display for ServedPs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServedPs {
    type Err = String;

    fn from_str(s: &str) -> Result<ServedPs, String> {
        ServedPs::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ServedPs::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown served-P policy `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What the served-P policy did, since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServedPsStats {
    /// Times a served P's M slept until its barrier ended.
    pub waits: u64,
    /// Of those, waits left before the barrier ended, for a stack scan of the goroutine.
    pub left_early: u64,
    /// Times a served P's M yielded its CPU once.
    pub yields: u64,
}

impl ServedPsStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &ServedPsStats) -> ServedPsStats {
        ServedPsStats {
            waits: self.waits - earlier.waits,
            left_early: self.left_early - earlier.left_early,
            yields: self.yields - earlier.yields,
        }
    }
}

/// The served-P policy of one runtime and the futex word its waiting Ms sleep on.
pub(crate) struct Gate {
    policy: ServedPs,
    /// Odd: the number of the barrier in flight; even: none in flight.
    barrier: AtomicU32,
    /// The futex word: bumped by every event a waiting M must see.
    events: CachePadded<AtomicU32>,
    waiters: AtomicU32,
    /// CPUs the runtime may run on, refreshed by sysmon.
    cpus: AtomicU32,
    /// Runnable Ms outnumbered `cpus` when the barrier in flight (or the last) began.
    oversubscribed: AtomicBool,
    waits: AtomicU64,
    left_early: AtomicU64,
    yields: AtomicU64,
}

impl Gate {
    pub(crate) fn new(policy: ServedPs) -> Gate {
        Gate {
            policy,
            barrier: AtomicU32::new(0),
            events: CachePadded(AtomicU32::new(0)),
            waiters: AtomicU32::new(0),
            cpus: AtomicU32::new(sched::cpus_allowed()),
            oversubscribed: AtomicBool::new(false),
            waits: AtomicU64::new(0),
            left_early: AtomicU64::new(0),
            yields: AtomicU64::new(0),
        }
    }

    /// Sysmon: the CPUs the runtime's threads may run on, kept current without a system
    /// call on any barrier's path.
    pub(crate) fn refresh_cpus(&self) {
        self.cpus.store(sched::cpus_allowed(), Ordering::Relaxed);
    }

    /// A barrier begins, with `runnable` Ms holding a running P (the requester's included).
    /// Returns its number, which the counted `f` records in each P it serves. The caller
    /// holds worldsema.
    pub(crate) fn begin(&self, runnable: usize) -> u32 {
        let oversubscribed = runnable > self.cpus.load(Ordering::Relaxed) as usize;
        self.oversubscribed.store(oversubscribed, Ordering::Relaxed);
        // Release: a P that reads this number also sees the flag.
        self.barrier.fetch_add(1, Ordering::Release).wrapping_add(1)
    }

    /// The barrier ends: every waiting M wakes, with one system call if there is any.
    pub(crate) fn end(&self) {
        self.barrier.fetch_add(1, Ordering::SeqCst);
        self.events.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.events);
        }
    }

    /// Whether the runtime was oversubscribed when the last barrier began.
    pub(crate) fn oversubscribed(&self) -> bool {
        self.oversubscribed.load(Ordering::Relaxed)
    }

    /// A stack scan wants the goroutine of `p`: if `p`'s M waits, have it leave the wait.
    pub(crate) fn poke(&self, p: &P) {
        if p.giving_way.swap(false, Ordering::SeqCst) {
            self.events.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&self.events);
        }
    }

    /// The barrier in flight, if `p` has been served in it and the policy would have its M
    /// wait. Async-signal-safe.
    pub(crate) fn must_wait(&self, p: &P) -> Option<u32> {
        let barrier = self.served_in_flight(p)?;
        let wait = match self.policy {
            ServedPs::Wait => true,
            ServedPs::Auto => self.oversubscribed(),
            ServedPs::Run | ServedPs::Yield => false,
        };
        wait.then_some(barrier)
    }

    /// Applies the policy for `p`, on its own M, after a safe point. Waits only if
    /// [`Gate::must_wait`] says so; a goroutine's caller makes the goroutine scannable
    /// first. Async-signal-safe.
    pub(crate) fn give_way(&self, p: &P) {
        if let Some(mut barrier) = self.must_wait(p) {
            // A later barrier may have served `p` on its behalf while its M slept: then it
            // waits for that one too.
            loop {
                self.wait(p, barrier);
                match self.must_wait(p) {
                    Some(next) if next != barrier => barrier = next,
                    _ => break,
                }
            }
        } else if self.policy == ServedPs::Yield && self.served_in_flight(p).is_some() {
            self.yields.fetch_add(1, Ordering::Relaxed);
            sched::yield_now();
        }
    }

    /// The barrier in flight, if `f` has run for `p` in it.
    fn served_in_flight(&self, p: &P) -> Option<u32> {
        let barrier = self.barrier.load(Ordering::Acquire);
        (barrier % 2 == 1 && p.served_in.load(Ordering::Relaxed) == barrier).then_some(barrier)
    }

    /// Sleeps until `barrier` ends, a stack scan pokes `p`, or `p` is armed again, with `p`
    /// parked as `Idle` meanwhile (see "The P of a sleeping M" above); then takes `p` back.
    fn wait(&self, p: &P, barrier: u32) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        p.giving_way.store(true, Ordering::SeqCst);
        if p.status.cas(PStatus::Running, PStatus::Idle).is_ok() {
            loop {
                let seen = self.events.load(Ordering::SeqCst);
                if self.barrier.load(Ordering::SeqCst) != barrier {
                    break;
                }
                if !p.giving_way.load(Ordering::SeqCst) {
                    self.left_early.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // Sequentially consistent after publishing `Idle`: a requester that armed `p`
                // and then saw it `Running` waits for its poll, so leave and take it back.
                if p.safepoint_armed() {
                    break;
                }
                futex::wait(&self.events, seen, None);
            }
            take_back(p);
        }
        p.giving_way.store(false, Ordering::Relaxed);
        self.waiters.fetch_sub(1, Ordering::Release);
    }

    /// Ms waiting now.
    pub(crate) fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> ServedPsStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServedPsStats {
            waits: load(&self.waits),
            left_early: load(&self.left_early),
            yields: load(&self.yields),
        }
    }

    pub(crate) fn policy(&self) -> ServedPs {
        self.policy
    }
}

/// The waiting M takes its `Idle` P back, waiting while a requester holds it stopped (the
/// length of one `f`). Nothing else takes an `Idle` P that is not in the idle list.
/// Async-signal-safe.
fn take_back(p: &P) {
    let mut spins = 0;
    loop {
        match p.status.cas(PStatus::Idle, PStatus::Running) {
            Ok(()) => return,
            Err(PStatus::GcStop) => backoff(&mut spins),
            Err(other) => {
                debug_assert!(false, "{}: {other} while its M gave way", p.id);
                return;
            }
        }
    }
}
