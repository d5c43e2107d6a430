//! The bookkeeping every strategy needs for one barrier: which Ps still wait for `f`, and
//! which side runs it for each.
//!
//! A barrier marks every other live P *pending*. Two sides may reach a pending P: the
//! requester (the P is parked, or stopped somewhere the strategy can see), and the P itself
//! (at its next safe point). Whoever flips the P's flag from pending to claimed, with a
//! compare-and-swap, runs `f` for it: exactly one side does. The claimer then disarms the P's
//! poll word and acknowledges; the requester returns once every P has acknowledged.
//!
//! Disarming comes before the acknowledgement, so a late disarm can never clobber the next
//! barrier's arm: that barrier starts only after every acknowledgement.
//!
//! Not part of the ABI: plain Rust, shared by the strategy crates at build time.
//!
//! ```
//! use safepoint_abi::PId;
//! use safepoint_abi::claim::Claims;
//!
//! let claims = Claims::new(2);
//! claims.mark_pending(&[PId(1)]);
//! assert!(claims.is_pending(PId(1)));
//! assert!(claims.claim(PId(1)), "the first claim wins");
//! assert!(!claims.claim(PId(1)), "the second loses");
//! assert!(claims.acknowledge(), "the last acknowledgement");
//! assert_eq!(claims.remaining(), 0);
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::{HostRef, PId, PStatus, SafePointFnArc};

/// A value on a cache line of its own, so that Ps polling or claiming their own flags do
/// not contend for a line.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

/// The Ps of one barrier, as the requester found them at entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The requester's own P, if it holds one: it runs `f` for it directly.
    pub own: Option<PId>,
    /// Every other P that is not `Dead`, now pending.
    pub others: Vec<PId>,
}

/// Per-P pending flags and the count of Ps still to acknowledge.
#[derive(Debug)]
pub struct Claims {
    pending: Box<[CachePadded<AtomicBool>]>,
    remaining: CachePadded<AtomicUsize>,
}

impl Claims {
    /// Flags for `procs` Ps, none pending.
    pub fn new(procs: usize) -> Claims {
        Claims {
            pending: (0..procs)
                .map(|_| CachePadded(AtomicBool::new(false)))
                .collect(),
            remaining: CachePadded(AtomicUsize::new(0)),
        }
    }

    /// Starts a barrier: finds the caller's own P and the other live Ps, and marks the
    /// others pending. No barrier may be in flight.
    pub fn begin(&self, host: &HostRef) -> Round {
        let own = host.current_p().into_option();
        let others: Vec<PId> = (0..self.pending.len() as u32)
            .map(PId)
            .filter(|&p| Some(p) != own && host.p_status(p) != PStatus::Dead)
            .collect();
        self.mark_pending(&others);
        Round { own, others }
    }

    /// Marks `ps` pending and sets the count of Ps to acknowledge to their number. The
    /// flags are published by whatever the caller does next to make the Ps look (arming
    /// their poll words is sequentially consistent).
    pub fn mark_pending(&self, ps: &[PId]) {
        self.remaining.0.store(ps.len(), Ordering::Relaxed);
        for &p in ps {
            self.pending[p.index()].0.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `f` has yet to run for `p` in the barrier in flight. Async-signal-safe.
    ///
    /// Sequentially consistent, like [`Claims::claim`]: a requester that arms a P again
    /// (sequentially consistent too) and then finds it no longer pending may disarm it, and
    /// cannot leave a stale arm behind. Either its load came after the claim, or the
    /// claimer's disarm comes after its arm.
    pub fn is_pending(&self, p: PId) -> bool {
        self.pending
            .get(p.index())
            .is_some_and(|flag| flag.0.load(Ordering::SeqCst))
    }

    /// Claims `p`: true for exactly one caller per barrier, who must then run `f` for `p`
    /// and acknowledge ([`Claims::run_claimed`]). False for a P that is not pending or does
    /// not exist. Async-signal-safe.
    pub fn claim(&self, p: PId) -> bool {
        self.pending.get(p.index()).is_some_and(|flag| {
            flag.0
                .compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Acknowledges one claimed P (release: what the claimer wrote, `f`'s effects included,
    /// happens-before the requester's return). Returns true for the last acknowledgement.
    pub fn acknowledge(&self) -> bool {
        self.remaining.0.fetch_sub(1, Ordering::Release) == 1
    }

    /// Ps still to acknowledge (acquire: pairs with [`Claims::acknowledge`]).
    pub fn remaining(&self) -> usize {
        self.remaining.0.load(Ordering::Acquire)
    }

    /// For a P the caller has claimed: runs `f`, disarms the P's poll word, acknowledges.
    /// Returns true if that was the last acknowledgement.
    pub fn run_claimed(&self, host: &HostRef, p: PId, f: &SafePointFnArc) -> bool {
        f.call(p);
        host.disarm_poll(p);
        self.acknowledge()
    }

    /// The requester's pass over a P that may be parked: if [`crate::Host::try_stop_parked_p`]
    /// stops it, claims it, runs `f` for it and releases it. Returns whether it was parked;
    /// a P that was not is running and reaches a safe point by itself.
    pub fn serve_if_parked(&self, host: &HostRef, p: PId, f: &SafePointFnArc) -> bool {
        if !host.try_stop_parked_p(p) {
            return false;
        }
        if self.claim(p) {
            self.run_claimed(host, p, f);
        }
        host.release_p(p);
        true
    }
}
