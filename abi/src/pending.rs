//! Helpers for strategies built on poll words: which Ps a barrier still waits for, the
//! barrier's function, and the two ways a P is served. Every shipped strategy keeps this state
//! the same way; only how the requester waits for the acknowledgements differs.
//!
//! Not part of the ABI: nothing here crosses the boundary, and a plugin may do without it.

use std::ops::Deref;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{HostRef, PId, PStatus, SafePointFnArc};

/// A value on a cache line of its own (128 bytes: two lines, for the adjacent-line
/// prefetcher), so that Ps writing neighbouring values do not contend.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The Ps a barrier must still reach, as seen by [`PendingPs::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The requester's own P, if it holds one: the requester runs `f` for it directly.
    pub own: Option<PId>,
    /// Every other P that was not `Dead`, each marked pending.
    pub others: Vec<PId>,
}

/// The pending flag of every P and the barrier's function.
///
/// `pending[p]` is set while `f` has not run for `p` in this barrier. The requester and `p`'s
/// own M both try to clear it with a compare-and-swap ([`PendingPs::claim`]); the one that wins
/// runs `f(p)`, so `f` runs exactly once. The winner disarms `p`'s poll word *before* it
/// acknowledges, so a late disarm cannot clobber the next barrier's arm: the next barrier
/// begins only after every acknowledgement.
pub struct PendingPs {
    pending: Box<[CachePadded<AtomicBool>]>,
    /// The barrier's function, while one is in flight. Written only by the requester, before
    /// it arms any P and after every P acknowledged, so a P that won its claim never waits
    /// for the lock.
    f: RwLock<Option<SafePointFnArc>>,
}

impl PendingPs {
    /// No barrier in flight, for a runtime of `procs` Ps.
    pub fn new(procs: u32) -> PendingPs {
        PendingPs {
            pending: (0..procs).map(|_| CachePadded::default()).collect(),
            f: RwLock::new(None),
        }
    }

    /// Starts a barrier: publishes `f` and marks pending every P except the caller's own that
    /// is not `Dead`. Arms nothing: the caller arms [`Round::others`] once its own count of
    /// acknowledgements is set, and the arm (sequentially consistent) publishes all of this.
    ///
    /// The caller holds worldsema: no other barrier is in flight.
    pub fn begin(&self, host: &HostRef, f: &SafePointFnArc) -> Round {
        *self.f.write().expect("f lock poisoned") = Some(f.clone());
        let own = host.current_p().into_option();
        let others: Vec<PId> = (0..self.pending.len() as u32)
            .map(PId)
            .filter(|&p| Some(p) != own && host.p_status(p) != PStatus::Dead)
            .collect();
        for &p in &others {
            self.pending[p.index()].store(true, Ordering::Relaxed);
        }
        Round { own, others }
    }

    /// The requester's pass over the round, once its count of acknowledgements is set: arms
    /// every other P (all before serving any, so that running Ps head for their safe points at
    /// once), runs `f` for its own P, then serves each parked P on its behalf
    /// ([`PendingPs::serve_if_parked`]) and calls `acknowledge` for each one it served. A P it
    /// cannot stop is running and serves itself at its next safe point: the host closes the
    /// race with parking, so one pass is enough.
    pub fn arm_and_serve_parked(
        &self,
        host: &HostRef,
        round: &Round,
        f: &SafePointFnArc,
        mut acknowledge: impl FnMut(),
    ) {
        for &p in &round.others {
            host.arm_poll(p);
        }
        if let Some(own) = round.own {
            f.call(own);
        }
        for &p in &round.others {
            if self.serve_if_parked(host, p, f) {
                acknowledge();
            }
        }
    }

    /// Ends the barrier: forgets `f`. Every P of the round has acknowledged.
    pub fn end(&self) {
        *self.f.write().expect("f lock poisoned") = None;
    }

    /// Whether `f` has yet to be claimed for `p` in this barrier. Async-signal-safe.
    ///
    /// Sequentially consistent, like [`PendingPs::claim`]: a requester that arms a P again
    /// (sequentially consistent too) and then finds it no longer pending may disarm it, and
    /// cannot leave a stale arm behind. Either its load came after the claim, or the
    /// claimer's disarm comes after its arm.
    pub fn is_pending(&self, p: PId) -> bool {
        self.pending
            .get(p.index())
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// Claims `p`: true for exactly one caller per barrier, which must then run `f(p)` and
    /// disarm ([`PendingPs::run_claimed`]) before acknowledging. Async-signal-safe.
    pub fn claim(&self, p: PId) -> bool {
        self.pending.get(p.index()).is_some_and(|flag| {
            flag.compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// For a P the caller has claimed: runs `f(p)`, then disarms `p` (before the caller
    /// acknowledges, so a late disarm cannot clobber the next barrier's arm).
    pub fn run_claimed(&self, host: &HostRef, p: PId, f: &SafePointFnArc) {
        f.call(p);
        host.disarm_poll(p);
    }

    /// The poll's slow path, on `p`'s own M at a safe point: claims `p`, runs the published
    /// `f(p)` and disarms `p`. Returns whether it ran `f`; if so the caller acknowledges.
    /// A failed claim (the requester served `p`, or the arm was stale) does nothing.
    pub fn serve_at_safe_point(&self, host: &HostRef, p: PId) -> bool {
        if !self.claim(p) {
            return false;
        }
        let f = self.f.read().expect("f lock poisoned").clone();
        let f = f.expect("a claimed P has a barrier function");
        self.run_claimed(host, p, &f);
        true
    }

    /// The requester, for a P it does not own: if `p` is parked (idle or in a syscall), stops
    /// it, runs `f(p)` on its behalf if the claim succeeds, disarms and releases it. Returns
    /// whether it ran `f`; if so the caller acknowledges. A P that cannot be stopped is
    /// running, and serves itself at its next safe point.
    pub fn serve_if_parked(&self, host: &HostRef, p: PId, f: &SafePointFnArc) -> bool {
        if !host.try_stop_parked_p(p) {
            return false;
        }
        let ran = self.claim(p);
        if ran {
            self.run_claimed(host, p, f);
        }
        host.release_p(p);
        ran
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RArc, ROption, RStr};

    use super::*;
    use crate::{Host, Host_TO, LogLevel, OsThread, SafePointFn, SafePointFn_TO};

    /// A runtime of four Ps: P0 is the caller's, P1 runs, P2 is idle, P3 is dead.
    #[derive(Clone)]
    struct FakeHost {
        status: std::sync::Arc<Mutex<Vec<PStatus>>>,
        armed: std::sync::Arc<Mutex<Vec<bool>>>,
    }

    impl Host for FakeHost {
        fn procs(&self) -> u32 {
            4
        }
        fn p_status(&self, p: PId) -> PStatus {
            self.status.lock().unwrap()[p.index()]
        }
        fn current_p(&self) -> ROption<PId> {
            ROption::RSome(PId(0))
        }
        fn arm_poll(&self, p: PId) {
            self.armed.lock().unwrap()[p.index()] = true;
        }
        fn disarm_poll(&self, p: PId) {
            self.armed.lock().unwrap()[p.index()] = false;
        }
        fn try_stop_parked_p(&self, p: PId) -> bool {
            let mut status = self.status.lock().unwrap();
            let parked = status[p.index()] == PStatus::Idle;
            if parked {
                status[p.index()] = PStatus::GcStop;
            }
            parked
        }
        fn release_p(&self, p: PId) {
            let mut status = self.status.lock().unwrap();
            assert_eq!(status[p.index()], PStatus::GcStop, "released {p} unstopped");
            status[p.index()] = PStatus::Idle;
        }
        fn p_thread(&self, _p: PId) -> ROption<OsThread> {
            ROption::RNone
        }
        fn now_nanos(&self) -> u64 {
            0
        }
        fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
        fn at_async_safe_point(&self) -> bool {
            false
        }
        fn oversubscribed(&self) -> bool {
            false
        }
        fn give_way(&self, _p: PId) {}
    }

    #[derive(Clone)]
    struct CountCalls(std::sync::Arc<[AtomicU32; 4]>);

    impl SafePointFn for CountCalls {
        fn call(&self, p: PId) {
            self.0[p.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn setup() -> (HostRef, FakeHost, CountCalls, SafePointFnArc) {
        use PStatus::*;
        let fake = FakeHost {
            status: std::sync::Arc::new(Mutex::new(vec![Running, Running, Idle, Dead])),
            armed: std::sync::Arc::new(Mutex::new(vec![false; 4])),
        };
        let host = Host_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque);
        let calls = CountCalls(std::sync::Arc::new(Default::default()));
        let f = SafePointFn_TO::from_ptr(RArc::new(calls.clone()), TD_Opaque);
        (host, fake, calls, f)
    }

    fn count(c: &CountCalls) -> Vec<u32> {
        c.0.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    fn armed(fake: &FakeHost) -> Vec<bool> {
        fake.armed.lock().unwrap().clone()
    }

    #[test]
    fn a_round_is_every_other_p_that_is_not_dead() {
        let (host, _, _, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        assert_eq!(
            round,
            Round {
                own: Some(PId(0)),
                others: vec![PId(1), PId(2)],
            }
        );
        assert!(!pending.is_pending(PId(0)) && !pending.is_pending(PId(3)));
        assert!(pending.is_pending(PId(1)) && pending.is_pending(PId(2)));
    }

    #[test]
    fn exactly_one_claim_wins() {
        let (host, _, _, f) = setup();
        let pending = PendingPs::new(4);
        pending.begin(&host, &f);
        assert!(pending.claim(PId(1)));
        assert!(!pending.claim(PId(1)));
        assert!(!pending.is_pending(PId(1)));
        assert!(
            !pending.claim(PId(7)),
            "a P that does not exist is never pending"
        );
    }

    #[test]
    fn the_requester_arms_runs_its_own_and_serves_the_parked_ps() {
        let (host, fake, calls, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        let mut acks = 0;
        pending.arm_and_serve_parked(&host, &round, &f, || acks += 1);
        assert_eq!(acks, 1, "P2 is idle, P1 runs");
        assert_eq!(count(&calls), [1, 0, 1, 0]);
        assert_eq!(armed(&fake), [false, true, false, false]);
        assert_eq!(host.p_status(PId(2)), PStatus::Idle, "released");
        assert!(!pending.serve_if_parked(&host, PId(2), &f), "served once");
        assert!(pending.is_pending(PId(1)));
    }

    #[test]
    fn a_running_p_serves_itself_once_and_disarms() {
        let (host, fake, calls, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        pending.arm_and_serve_parked(&host, &round, &f, || {});
        assert!(pending.serve_at_safe_point(&host, PId(1)));
        assert!(!pending.serve_at_safe_point(&host, PId(1)), "a stale arm");
        pending.end();
        assert_eq!(count(&calls), [1, 1, 1, 0]);
        assert_eq!(armed(&fake), [false; 4]);
    }
}
