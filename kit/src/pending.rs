//! Helpers for strategies built on poll words: which Ps a barrier still waits for, the
//! barrier's function, and the two ways a P is served. Every shipped strategy keeps this state
//! the same way; only how the requester waits for the acknowledgements differs.
//!
//! Not part of the ABI: nothing here crosses the boundary, and a plugin may do without it.

mod published;

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::futex::Word;

use published::PublishedFn;
use safepoint_abi::{HostRef, PId, PStatus, SafePointFnArc};

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

/// A P's state in a barrier: the barrier's round number (30 bits, wrapping) and a status.
/// The round number keeps a server of the last barrier, still finishing, from touching the
/// P's state in the next one.
mod state {
    /// Not part of the barrier, or served and acknowledged.
    pub(super) const IDLE: u32 = 0;
    /// `f` has yet to run for the P.
    pub(super) const PENDING: u32 = 1;
    /// Claimed: `f` runs for the P, and its server still reads the published `f`.
    pub(super) const SERVING: u32 = 2;
    /// `f` ran for the P, and its server has not finished acknowledging. The next round may
    /// begin over it (see [`super::Served`]).
    pub(super) const RAN: u32 = 3;
    const STATUS: u32 = 0b11;

    pub(super) fn status(word: u32) -> u32 {
        word & STATUS
    }

    /// `word`'s round with `status`.
    pub(super) fn with(word: u32, status: u32) -> u32 {
        word & !STATUS | status
    }

    /// Round `round`'s word with `status`.
    pub(super) fn of(round: u32, status: u32) -> u32 {
        round << 2 | status
    }
}

/// The Ps a barrier must still reach, as seen by [`PendingPs::begin`]; the barrier's round
/// guard.
///
/// A round ends with [`PendingPs::end`] (or [`Round::end`]) once every P has acknowledged.
/// Dropped before that, on an early return or while a panic unwinds through the strategy,
/// it *abandons* the round: it closes it ([`PendingPs::is_open`] turns false), withdraws
/// every P still pending (disarming its poll word, so that it never runs `f` late), waits
/// until no P is still serving (running `f` or acknowledging), and forgets `f`. A strategy
/// whose Ps wait for the requester elsewhere (the signal strategy's park words) releases
/// them after this guard has closed the round.
#[must_use = "dropping the round abandons the barrier"]
pub struct Round<'a, W: Word = AtomicU32> {
    /// The requester's own P, if it holds one: the requester runs `f` for it directly.
    pub own: Option<PId>,
    /// Every other P that was not `Dead`, each marked pending.
    pub others: Vec<PId>,
    /// Its number.
    number: u32,
    pending: &'a PendingPs<W>,
    host: &'a HostRef,
}

impl<W: Word> Round<'_, W> {
    /// Ends the round: every P of it has acknowledged. The same as [`PendingPs::end`], for
    /// a round that opened.
    pub fn end(self) {
        if !self.others.is_empty() {
            self.pending.end();
        }
    }
}

impl<W: Word> Drop for Round<'_, W> {
    fn drop(&mut self) {
        if self.pending.is_open() && self.pending.round.load(Ordering::Relaxed) == self.number {
            self.pending.abandon(self.host, &self.others);
        }
    }
}

impl<W: Word> std::fmt::Debug for Round<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round")
            .field("own", &self.own)
            .field("others", &self.others)
            .finish_non_exhaustive()
    }
}

/// A claimed P, serving until dropped.
struct Served<'a, W: Word> {
    word: &'a W,
    claimed: u32,
}

impl<W: Word> Served<'_, W> {
    /// `f(p)` has returned: the server no longer reads the published `f`, and the next
    /// round may begin. Nobody else writes a `SERVING` word; release pairs with the acquire
    /// load of `begin`, which then replaces `f`.
    fn ran(&self) {
        self.word
            .store(state::with(self.claimed, state::RAN), Ordering::Release);
    }
}

impl<W: Word> Drop for Served<'_, W> {
    fn drop(&mut self) {
        // From `RAN`, or from `SERVING` if `f` unwound. Fails if the next round has marked
        // the P meanwhile: its state is not ours to touch. An abandonment waits for this
        // store (release: it pairs with its acquire load).
        for from in [state::RAN, state::SERVING] {
            let from = state::with(self.claimed, from);
            let to = state::with(self.claimed, state::IDLE);
            if (self.word)
                .compare_exchange(from, to, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
    }
}

/// For a P its caller has claimed: runs `f(p)`, disarms `p` (before the acknowledgement, so
/// that a late disarm cannot clobber the next barrier's arm), acknowledges, and only then
/// lets the P count as finished.
fn run_claimed<R, W: Word>(
    served: Served<'_, W>,
    host: &HostRef,
    p: PId,
    f: &SafePointFnArc,
    acknowledge: impl FnOnce() -> R,
) -> R {
    f.call(p);
    finish_claimed(served, host, p, acknowledge)
}

/// [`run_claimed`] after `f(p)`: disarms, acknowledges, and lets the P count as finished.
fn finish_claimed<R, W: Word>(
    served: Served<'_, W>,
    host: &HostRef,
    p: PId,
    acknowledge: impl FnOnce() -> R,
) -> R {
    served.ran();
    host.disarm_poll(p);
    acknowledge()
}

/// A short spin, then yields: waiting for a server that is still running `f`, or between
/// its acknowledgement and its last store.
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The pending state of every P and the barrier's function.
///
/// `pending[p]` is `PENDING` while `f` has not run for `p` in this barrier. The requester and
/// `p`'s own M both try to move it to `SERVING` with a compare-and-swap ([`PendingPs::serve`]
/// and the methods built on it); the one that wins runs `f(p)`, so `f` runs exactly once.
/// The winner disarms `p`'s poll word *before* it acknowledges, so a late disarm cannot
/// clobber the next barrier's arm: the next barrier begins only after every
/// acknowledgement. It marks `p` `RAN` once `f` returned, and puts it back to `IDLE` only
/// after its acknowledgement, so that an abandoned round ([`Round`]) can wait until no
/// server of the round is still on its way. A P's server reads `f` with a plain load (no
/// lock, no reference count): the next [`PendingPs::begin`] replaces it only once no P is
/// `SERVING`. It need not wait for a `RAN` server: every acknowledgement, and so the end of
/// a barrier, comes after `f` returned, so a correct strategy's next round never waits, even
/// when a server is preempted between its acknowledgement and its last store (a whole
/// scheduler slice when Ps outnumber CPUs).
pub struct PendingPs<W: Word = AtomicU32> {
    pending: Box<[CachePadded<W>]>,
    /// The number of the last round begun (30 bits, wrapping).
    round: AtomicU32,
    /// A round is in flight: from [`PendingPs::begin`] to its end or abandonment.
    open: AtomicBool,
    /// The barrier's function: of the round in flight, or of the last one until the next
    /// begins. A P that won its claim reads it with a plain load (see `published.rs`).
    f: PublishedFn,
    /// Barriers and handshakes begun, for the strategy's counters.
    barriers: RequesterCount,
    handshakes: RequesterCount,
}

/// A count that only the requester (the holder of worldsema) increments: a load and a
/// store, no read-modify-write on the barrier's path. Readable from any thread.
#[derive(Debug, Default)]
struct RequesterCount(AtomicU64);

impl RequesterCount {
    fn add(&self) {
        let n = self.0.load(Ordering::Relaxed);
        self.0.store(n + 1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl PendingPs {
    /// No barrier in flight, for a runtime of `procs` Ps.
    pub fn new(procs: u32) -> PendingPs {
        PendingPs::with_words(procs)
    }
}

impl<W: Word> PendingPs<W> {
    /// [`PendingPs::new`] over words of type `W`: a loom model's, say.
    pub fn with_words(procs: u32) -> PendingPs<W> {
        PendingPs {
            pending: (0..procs).map(|_| CachePadded(W::new(0))).collect(),
            round: AtomicU32::new(0),
            open: AtomicBool::new(false),
            f: PublishedFn::new(),
            barriers: RequesterCount::default(),
            handshakes: RequesterCount::default(),
        }
    }

    /// Barriers begun ([`PendingPs::begin`]).
    pub fn barriers(&self) -> u64 {
        self.barriers.get()
    }

    /// Single-P handshakes begun ([`PendingPs::begin_one`]).
    pub fn handshakes(&self) -> u64 {
        self.handshakes.get()
    }

    /// Starts a barrier: publishes `f` and marks pending every P except the caller's own that
    /// is not `Dead` (a round of no other P publishes nothing). Arms nothing: the caller arms
    /// [`Round::others`] once its own count of acknowledgements is set, and the arm
    /// (sequentially consistent) publishes all of this.
    ///
    /// The caller holds worldsema: no other barrier is in flight. Keep the returned round
    /// until the barrier ends: dropping it earlier abandons the barrier (see [`Round`]).
    pub fn begin<'a>(&'a self, host: &'a HostRef, f: &SafePointFnArc) -> Round<'a, W> {
        self.barriers.add();
        let own = host.current_p().into_option();
        let others: Vec<PId> = (0..self.pending.len() as u32)
            .map(PId)
            .filter(|&p| Some(p) != own && host.p_status(p) != PStatus::Dead)
            .collect();
        self.begin_round(host, f, own, others)
    }

    /// Starts a single-P handshake ([`Strategy::handshake`](safepoint_abi::Strategy::handshake)): as [`PendingPs::begin`],
    /// but only `p` is marked pending (none if it is `Dead` or out of range), and the
    /// requester's own P takes no part ([`Round::own`] is `None`). Everything else about the
    /// round (arming, serving, ending, abandoning) is that of a barrier over one P.
    pub fn begin_one<'a>(&'a self, host: &'a HostRef, f: &SafePointFnArc, p: PId) -> Round<'a, W> {
        self.handshakes.add();
        let live = p.index() < self.pending.len() && host.p_status(p) != PStatus::Dead;
        let others = if live { vec![p] } else { Vec::new() };
        self.begin_round(host, f, None, others)
    }

    fn begin_round<'a>(
        &'a self,
        host: &'a HostRef,
        f: &SafePointFnArc,
        own: Option<PId>,
        others: Vec<PId>,
    ) -> Round<'a, W> {
        self.settle_last_round();
        let round = self.round.load(Ordering::Relaxed).wrapping_add(1) & (u32::MAX >> 2);
        self.round.store(round, Ordering::Relaxed);
        let round = Round {
            own,
            others,
            number: round,
            pending: self,
            host,
        };
        if round.others.is_empty() {
            // The requester's alone (one P, or a handshake for a dead P): no P can claim, so
            // nothing is published and the round never opens; the last `f` stays unused.
            return round;
        }
        // SAFETY: no P is serving or pending (`settle_last_round`, acquire); we are the
        // requester (worldsema).
        unsafe { self.f.set(Some(f.clone())) };
        // Release: a P whose claim reads this mark sees `f`.
        for &p in &round.others {
            self.pending[p.index()]
                .store(state::of(round.number, state::PENDING), Ordering::Release);
        }
        self.open.store(true, Ordering::SeqCst);
        round
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
        round: &Round<'_, W>,
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
            self.serve_if_parked(host, p, f, &mut acknowledge);
        }
    }

    /// Ends the barrier: closes the round. Every P of the round has acknowledged. `f` stays
    /// published (unused) until the next [`PendingPs::begin`] replaces it: clearing it here
    /// would first have to wait for the last server to finish, on the barrier's path.
    pub fn end(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Before a round publishes its `f`: waits until no server of the last round still
    /// reads it, and withdraws a P a round left pending. Either happens only if a round ended
    /// before every P acknowledged, a strategy bug. A `RAN` server is left to finish: its
    /// last store fails once the new round has marked its P. One load per P, of a line
    /// `begin` writes next anyway.
    fn settle_last_round(&self) {
        for word in self.pending.iter() {
            let mut spins = 0u32;
            loop {
                let seen = word.load(Ordering::Acquire);
                match state::status(seen) {
                    state::SERVING => backoff(&mut spins),
                    state::PENDING => {
                        let _ = word.compare_exchange(
                            seen,
                            state::with(seen, state::IDLE),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                    _ => break,
                }
            }
        }
    }

    /// Whether a round is in flight: begun, and neither ended nor abandoned. Sequentially
    /// consistent. Async-signal-safe.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether `f` has yet to be claimed for `p` in this barrier. Async-signal-safe.
    ///
    /// Sequentially consistent, like the claim: a requester that arms a P again
    /// (sequentially consistent too) and then finds it no longer pending may disarm it, and
    /// cannot leave a stale arm behind. Either its load came after the claim, or the
    /// claimer's disarm comes after its arm.
    pub fn is_pending(&self, p: PId) -> bool {
        self.pending
            .get(p.index())
            .is_some_and(|word| state::status(word.load(Ordering::SeqCst)) == state::PENDING)
    }

    /// Claims `p`; if the claim wins (exactly one caller per barrier does), runs `f(p)`,
    /// disarms `p` and calls `acknowledge`, and only then lets the round count `p` as
    /// finished. Returns what `acknowledge` returned, or `None` if the claim failed (the P
    /// was served by someone else, or the arm was stale). The caller must own `p`.
    pub fn serve<R>(
        &self,
        host: &HostRef,
        p: PId,
        f: &SafePointFnArc,
        acknowledge: impl FnOnce() -> R,
    ) -> Option<R> {
        let served = self.claim(p)?;
        Some(run_claimed(served, host, p, f, acknowledge))
    }

    /// The poll's slow path, on `p`'s own M at a safe point: serves `p` with the published
    /// `f` ([`PendingPs::serve`]). A failed claim (the requester served `p`, or the arm was
    /// stale) does nothing and returns `None`.
    pub fn serve_at_safe_point<R>(
        &self,
        host: &HostRef,
        p: PId,
        acknowledge: impl FnOnce() -> R,
    ) -> Option<R> {
        let served = self.claim(p)?;
        {
            // SAFETY: claimed in the round that published `f`; the reference ends here,
            // before `served` finishes.
            let f = unsafe { self.f.get() };
            f.expect("a claimed P has a barrier function").call(p);
        }
        Some(finish_claimed(served, host, p, acknowledge))
    }

    /// Moves `p` from pending to serving; the guard puts it back to idle when dropped, even
    /// if the server unwinds. `None` if `p` is not pending.
    fn claim(&self, p: PId) -> Option<Served<'_, W>> {
        let word = self.pending.get(p.index())?;
        let pending = word.load(Ordering::SeqCst);
        if state::status(pending) != state::PENDING {
            return None;
        }
        let claimed = state::with(pending, state::SERVING);
        word.compare_exchange(pending, claimed, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        Some(Served { word, claimed })
    }

    /// The requester, for a P it does not own: if `p` is parked (idle or in a syscall), stops
    /// it, serves it on its behalf ([`PendingPs::serve`]) and releases it. Returns what
    /// `acknowledge` returned, or `None` if `f` did not run: a P that cannot be stopped is
    /// running, and serves itself at its next safe point.
    pub fn serve_if_parked<R>(
        &self,
        host: &HostRef,
        p: PId,
        f: &SafePointFnArc,
        acknowledge: impl FnOnce() -> R,
    ) -> Option<R> {
        if !host.try_stop_parked_p(p) {
            return None;
        }
        /// Gives the P back even if `f` or `acknowledge` unwinds.
        struct Stopped<'a>(&'a HostRef, PId);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                self.0.release_p(self.1);
            }
        }
        let _stopped = Stopped(host, p);
        self.serve(host, p, f, acknowledge)
    }

    /// [`Round`]'s drop before the round ended: closes it, withdraws every P of `others`
    /// still pending (and disarms it), waits until no P is still serving, forgets `f`.
    fn abandon(&self, host: &HostRef, others: &[PId]) {
        self.open.store(false, Ordering::SeqCst);
        let round = self.round.load(Ordering::Relaxed);
        for &p in others {
            let withdrawn = self.pending.get(p.index()).is_some_and(|word| {
                word.compare_exchange(
                    state::of(round, state::PENDING),
                    state::of(round, state::IDLE),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            });
            if withdrawn {
                host.disarm_poll(p);
            }
        }
        // A P that won its claim runs `f` on its own M and acknowledges; the next barrier
        // must not begin before it has (its acknowledgement would count for that one).
        for word in self.pending.iter() {
            let mut spins = 0u32;
            while [state::SERVING, state::RAN]
                .map(|status| state::of(round, status))
                .contains(&word.load(Ordering::Acquire))
            {
                backoff(&mut spins);
            }
        }
        // SAFETY: every P of the round is withdrawn or finished (acquire, above).
        unsafe { self.f.set(None) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use safepoint_abi::abi_stable::sabi_trait::TD_Opaque;
    use safepoint_abi::abi_stable::std_types::RArc;
    use safepoint_abi::{SafePointFn, SafePointFn_TO};
    use safepoint_loom_model::FakeHost;

    use super::*;

    #[derive(Clone)]
    struct CountCalls(std::sync::Arc<[AtomicU32; 4]>);

    impl SafePointFn for CountCalls {
        fn call(&self, p: PId) {
            self.0[p.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A runtime of four Ps: P0 is the caller's, P1 runs, P2 is idle, P3 is dead.
    fn setup() -> (HostRef, FakeHost, CountCalls, SafePointFnArc) {
        use PStatus::*;
        let fake = FakeHost::new(vec![Running, Running, Idle, Dead]);
        let host = fake.host_ref();
        let calls = CountCalls(std::sync::Arc::new(Default::default()));
        let f = SafePointFn_TO::from_ptr(RArc::new(calls.clone()), TD_Opaque);
        (host, fake, calls, f)
    }

    fn count(c: &CountCalls) -> Vec<u32> {
        c.0.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    fn armed(fake: &FakeHost) -> Vec<bool> {
        fake.armed()
    }

    #[test]
    fn a_round_is_every_other_p_that_is_not_dead() {
        let (host, _, _, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        assert_eq!(
            (round.own, round.others.as_slice()),
            (Some(PId(0)), [PId(1), PId(2)].as_slice())
        );
        assert!(!pending.is_pending(PId(0)) && !pending.is_pending(PId(3)));
        assert!(pending.is_pending(PId(1)) && pending.is_pending(PId(2)));
        round.end();
    }

    #[test]
    fn a_round_of_no_other_p_never_opens_and_is_counted() {
        let (host, _, calls, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin_one(&host, &f, PId(3));
        assert!(round.others.is_empty(), "P3 is dead");
        assert!(!pending.is_open(), "nothing for a P to claim");
        round.end();
        let round = pending.begin(&host, &f);
        assert!(pending.is_open());
        round.end();
        assert!(!pending.is_open());
        assert_eq!((pending.barriers(), pending.handshakes()), (1, 1));
        assert_eq!(count(&calls), [0; 4]);
    }

    #[test]
    fn exactly_one_claim_wins() {
        let (host, _, calls, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        assert_eq!(pending.serve(&host, PId(1), &f, || 7), Some(7));
        assert_eq!(pending.serve(&host, PId(1), &f, || 7), None);
        assert!(!pending.is_pending(PId(1)));
        assert_eq!(
            pending.serve(&host, PId(7), &f, || 7),
            None,
            "a P that does not exist is never pending"
        );
        assert_eq!(count(&calls), [0, 1, 0, 0]);
        round.end();
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
        assert_eq!(
            pending.serve_if_parked(&host, PId(2), &f, || ()),
            None,
            "served once"
        );
        assert!(pending.is_pending(PId(1)));
        assert!(pending.serve_at_safe_point(&host, PId(1), || ()).is_some());
        round.end();
    }

    #[test]
    fn a_running_p_serves_itself_once_and_disarms() {
        let (host, fake, calls, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        pending.arm_and_serve_parked(&host, &round, &f, || {});
        assert_eq!(
            pending.serve_at_safe_point(&host, PId(1), || "ack"),
            Some("ack")
        );
        assert_eq!(
            pending.serve_at_safe_point(&host, PId(1), || "ack"),
            None,
            "a stale arm"
        );
        pending.end();
        drop(round);
        assert!(!pending.is_open());
        assert_eq!(count(&calls), [1, 1, 1, 0]);
        assert_eq!(armed(&fake), [false; 4]);
    }

    /// Issue 11, defect 7: a round dropped before its end (a panic in the strategy) closes,
    /// withdraws and disarms the Ps still pending, and forgets `f`: no P runs it late.
    #[test]
    fn an_abandoned_round_withdraws_its_pending_ps_and_forgets_f() {
        let (host, fake, calls, f) = setup();
        let pending = PendingPs::new(4);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let round = pending.begin(&host, &f);
            for &p in &round.others {
                host.arm_poll(p);
            }
            assert!(pending.is_open());
            panic!("a strategy bug while P1 and P2 are pending");
        }));
        assert!(unwound.is_err());
        assert!(!pending.is_open());
        assert!(!pending.is_pending(PId(1)) && !pending.is_pending(PId(2)));
        assert_eq!(armed(&fake), [false; 4], "withdrawn Ps are disarmed");
        assert_eq!(pending.serve_at_safe_point(&host, PId(1), || ()), None);
        // SAFETY: nothing is pending or serving any more (the round was abandoned).
        assert!(unsafe { pending.f.get() }.is_none());
        assert_eq!(count(&calls), [0; 4], "f never ran");
    }

    /// An abandoned round waits until a P that already won its claim has acknowledged: its
    /// acknowledgement must not count for the next barrier.
    #[test]
    fn an_abandoned_round_waits_for_a_p_still_serving() {
        let (host, _, _, f) = setup();
        let pending = std::sync::Arc::new(PendingPs::new(4));
        let round = pending.begin(&host, &f);
        let (acked, entered) = (
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let server = {
            let (pending, host, acked, entered) = (
                std::sync::Arc::clone(&pending),
                host.clone(),
                std::sync::Arc::clone(&acked),
                std::sync::Arc::clone(&entered),
            );
            std::thread::spawn(move || {
                pending.serve_at_safe_point(&host, PId(1), || {
                    entered.wait();
                    // Acknowledges only once the abandonment has begun.
                    while pending.is_open() {
                        std::hint::spin_loop();
                    }
                    acked.store(true, Ordering::SeqCst);
                })
            })
        };
        entered.wait();
        drop(round);
        assert!(
            acked.load(Ordering::SeqCst),
            "abandoned before P1 acknowledged"
        );
        assert_eq!(server.join().unwrap(), Some(()));
        assert!(!pending.is_pending(PId(2)), "P2 withdrawn");
    }

    /// A P's server may still be finishing (its acknowledgement done, so the barrier ended)
    /// when the requester begins the next barrier. `f` has returned, so the new round does
    /// not wait for it (a preempted server would cost it a scheduler slice), and the late
    /// server leaves the new round's mark alone.
    #[test]
    fn the_next_round_begins_while_a_server_finishes_late() {
        let (host, _, calls, f) = setup();
        let pending = std::sync::Arc::new(PendingPs::new(4));
        let first = pending.begin(&host, &f);
        assert!(pending.serve(&host, PId(2), &f, || ()).is_some());
        let acked = std::sync::Arc::new(std::sync::Barrier::new(2));
        let begun = std::sync::Arc::new(AtomicBool::new(false));
        let server = {
            let (pending, host, acked, begun) = (
                std::sync::Arc::clone(&pending),
                host.clone(),
                std::sync::Arc::clone(&acked),
                std::sync::Arc::clone(&begun),
            );
            std::thread::spawn(move || {
                pending.serve_at_safe_point(&host, PId(1), || {
                    // The last acknowledgement: the requester ends this barrier and begins
                    // the next before this server has finished.
                    acked.wait();
                    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while !begun.load(Ordering::SeqCst) {
                        assert!(
                            std::time::Instant::now() < give_up,
                            "the next round waited for a server whose f had returned"
                        );
                        std::hint::spin_loop();
                    }
                })
            })
        };
        acked.wait();
        first.end();
        let second = pending.begin(&host, &f);
        begun.store(true, Ordering::SeqCst);
        assert_eq!(server.join().map_err(|_| "server panicked"), Ok(Some(())));
        assert!(pending.is_open());
        assert!(pending.is_pending(PId(1)), "P1 is pending in the new round");
        assert!(pending.is_pending(PId(2)));
        assert_eq!(count(&calls), [0, 1, 1, 0]);
        second.end();
    }

    /// A server whose acknowledgement unwinds still finishes, so an abandonment cannot hang.
    #[test]
    fn a_server_that_unwinds_still_finishes() {
        let (host, _, _, f) = setup();
        let pending = PendingPs::new(4);
        let round = pending.begin(&host, &f);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pending.serve(&host, PId(1), &f, || panic!("in the acknowledgement"))
        }));
        assert!(unwound.is_err());
        drop(round);
        assert!(!pending.is_open());
    }
}
