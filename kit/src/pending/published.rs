//! The barrier's function as the requester publishes it to the Ps that claim it: a plain
//! cell, so that a P reads it with a load and no read-modify-write on a shared line (a lock,
//! a reference count).
//!
//! The invariant that makes it sound, kept by [`PendingPs`](super::PendingPs):
//!
//! - Written only by the requester, and only while no P of any round is `SERVING` or
//!   `PENDING`: at `begin` after every word was seen neither (acquire, which pairs with the
//!   server's release as `f` returns), and in an abandonment after the same wait.
//! - Read only by a P that won its claim in the round the value was published for, while
//!   its word is `SERVING`: the claim read-modify-writes the `PENDING` mark, which `begin`
//!   stored (release) after writing the cell, and the next write waits until the claimer's
//!   word has left `SERVING`.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;

use safepoint_abi::SafePointFnArc;

/// `f` of the round in flight, or of the last one (it is replaced by the next `begin`).
pub(super) struct PublishedFn(UnsafeCell<Option<SafePointFnArc>>);

// SAFETY: the value is `Send + Sync`; access follows the single-writer protocol above, so no
// read overlaps a write.
unsafe impl Sync for PublishedFn {}

impl PublishedFn {
    pub(super) fn new() -> PublishedFn {
        PublishedFn(UnsafeCell::new(None))
    }

    /// # Safety
    ///
    /// The caller is the requester, and no P is `SERVING` or `PENDING`: every claimer of the
    /// last round has stopped reading, as the caller observed with acquire loads.
    pub(super) unsafe fn set(&self, f: Option<SafePointFnArc>) {
        // SAFETY: no reader holds a reference (the caller's contract); the writer is unique.
        unsafe { *self.0.get() = f }
    }

    /// # Safety
    ///
    /// The caller holds a claim won in the round whose `begin` published the value, and
    /// drops the reference before its word leaves `SERVING`.
    pub(super) unsafe fn get(&self) -> Option<&SafePointFnArc> {
        // SAFETY: the claim happens-after the write, and the next write waits for the claim
        // to finish (the caller's contract).
        unsafe { (*self.0.get()).as_ref() }
    }
}
