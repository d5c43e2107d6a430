//! Suspending a goroutine so that its stack can be scanned: Go's `suspendG`/`resumeG`
//! (`preempt.go`).
//!
//! - A `Waiting`, `Runnable` or `Syscall` goroutine is scanned in place: the scanner sets its
//!   scan bit, which freezes its status (every status CAS waits while the bit is set).
//! - A `Running` goroutine must first reach a safe point: the scanner sets its
//!   `scan_requested` flag and its P's preempt bit; at its next `poll()` the goroutine parks
//!   itself in `Waiting(preempted)`, and the scanner takes it from there, and readies it when
//!   done.
//!
//! Like Go's, `suspend_g` waits by spinning, without reaching a safe point itself: its caller
//! runs in a non-preemptible region. That is what makes Go change 533455 necessary: a
//! requester that waits in a barrier while `Running` can never be suspended, and the
//! scanner's P never reaches the barrier.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::g::{G, GoId};
use super::p::poll_bits;
use super::status::{GStatus, WaitReason, backoff};
use super::{Shared, ready};

/// A goroutine held for scanning. Dropping it resumes the goroutine (Go's `resumeG`).
pub(crate) struct SuspendedG {
    shared: Arc<Shared>,
    g: Arc<G>,
    /// The goroutine parked itself at our request: we make it runnable again.
    stopped: bool,
}

impl SuspendedG {
    pub(crate) fn goid(&self) -> GoId {
        self.g.id
    }
}

impl Drop for SuspendedG {
    fn drop(&mut self) {
        self.g.status.end_scan();
        if self.stopped {
            ready(&self.shared, Arc::clone(&self.g));
        }
    }
}

/// Suspends goroutine `id` for a stack scan; `None` if it has finished.
///
/// The caller must be in a non-preemptible region and must not be `id` itself.
pub(crate) fn suspend_g(shared: &Arc<Shared>, id: GoId) -> Option<SuspendedG> {
    let mut spins = 0;
    loop {
        let g = shared.g_by_id(id)?;
        let status = g.status.load();
        match status {
            GStatus::Dead | GStatus::Idle => return None,
            GStatus::Waiting(_) | GStatus::Runnable | GStatus::Syscall => {
                if g.status.try_begin_scan(status) {
                    // The scan consumes our request, whatever state it finds the goroutine
                    // in: left set, a later preempt bit would park the goroutine for a scan
                    // that never comes. A goroutine that parked itself at the request is ours
                    // to ready.
                    let requested = g.scan_requested.swap(false, Ordering::AcqRel);
                    let stopped =
                        requested && status == GStatus::Waiting(WaitReason::PreemptedForScan);
                    return Some(SuspendedG {
                        shared: Arc::clone(shared),
                        g,
                        stopped,
                    });
                }
            }
            GStatus::Running => {
                // Ask it to stop at its next safe point; re-arm every time round, as it may
                // have moved to another P.
                g.scan_requested.store(true, Ordering::Release);
                if let Some(p) = g
                    .running_on()
                    .and_then(|m| shared.m_by_id(m))
                    .and_then(|m| m.p())
                {
                    shared.p(p).arm(poll_bits::PREEMPT);
                    // Its M may be giving way to a barrier in a signal handler, where its
                    // goroutine cannot be scanned: have it leave (`safepoint/served.rs`).
                    shared.served.poke(shared.p(p));
                }
            }
        }
        backoff(&mut spins);
    }
}
