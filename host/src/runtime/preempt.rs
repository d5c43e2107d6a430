//! Suspending a goroutine so that its stack can be scanned: Go's `suspendG`/`resumeG`
//! (`preempt.go`).
//!
//! - A `Waiting`, `Runnable` or `Syscall` goroutine is scanned in place: the scanner sets its
//!   scan bit, which freezes its status (every status CAS waits while the bit is set).
//! - A `Running` goroutine must first reach a safe point: the scanner sets its
//!   `scan_requested` flag and its P's preempt bit; at its next `poll()` the goroutine parks
//!   itself in `Waiting(preempted)`, and the scanner takes it from there, and readies it when
//!   done. A goroutine that never polls never gets there: the GC instead stops its P with a
//!   single-P handshake (Go's `preemptM`) and scans it inside the handshake's function, held
//!   by [`suspend_running_on`] (`gc/mod.rs`).
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
use safepoint_abi::PId;

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
        match try_suspend_g(shared, id) {
            TrySuspend::Suspended(suspended) => return Some(suspended),
            TrySuspend::Gone => return None,
            TrySuspend::Changed => {}
            TrySuspend::Running(on) => {
                // Ask it to stop at its next safe point; re-arm every time round, as it may
                // have moved to another P.
                let g = shared.g_by_id(id)?;
                g.scan_requested.store(true, Ordering::Release);
                if let Some(p) = on {
                    shared.p(p).arm(poll_bits::PREEMPT);
                    // Its M may be giving way to a barrier in a signal handler, where its
                    // goroutine cannot be scanned: have it leave (`runtime/served.rs`).
                    shared.served.poke(shared.p(p));
                }
            }
        }
        backoff(&mut spins);
    }
}

/// What [`try_suspend_g`] found.
pub(crate) enum TrySuspend {
    /// Not running: held for the scan where it stands.
    Suspended(SuspendedG),
    /// Finished, or never started.
    Gone,
    /// Its status changed as we looked, or another scanner holds it: look again.
    Changed,
    /// Running, on this P if its M holds one: it must be brought to a safe point first
    /// ([`suspend_g`] asks it to stop at its next poll; the GC's handshake stops its P).
    Running(Option<PId>),
}

/// One attempt of [`suspend_g`], without waiting: holds goroutine `id` for a stack scan if
/// it is not running.
///
/// The caller must be in a non-preemptible region and must not be `id` itself.
pub(crate) fn try_suspend_g(shared: &Arc<Shared>, id: GoId) -> TrySuspend {
    let Some(g) = shared.g_by_id(id) else {
        return TrySuspend::Gone;
    };
    let status = g.status.load();
    match status {
        GStatus::Dead | GStatus::Idle => TrySuspend::Gone,
        GStatus::Waiting(_) | GStatus::Runnable | GStatus::Syscall => {
            if !g.status.try_begin_scan(status) {
                return TrySuspend::Changed;
            }
            // The scan consumes a request, whatever state it finds the goroutine in: left
            // set, a later preempt bit would park the goroutine for a scan that never
            // comes. A goroutine that parked itself at the request is ours to ready.
            let requested = g.scan_requested.swap(false, Ordering::AcqRel);
            let stopped = requested && status == GStatus::Waiting(WaitReason::PreemptedForScan);
            TrySuspend::Suspended(SuspendedG {
                shared: Arc::clone(shared),
                g,
                stopped,
            })
        }
        GStatus::Running => TrySuspend::Running(
            g.running_on()
                .and_then(|m| shared.m_by_id(m))
                .and_then(|m| m.p()),
        ),
    }
}

/// Holds goroutine `id` for a stack scan if it is running on `p`; `None` if it is not there.
///
/// The caller runs a single-P handshake's function for `p`, so owns `p`: the goroutine
/// running there is stopped at a safe point (its M waits in a signal handler, or is the
/// caller, at the goroutine's poll) and cannot run on until the caller returns. The scan bit
/// freezes its status meanwhile (Go's `_Gscanrunning`).
pub(crate) fn suspend_running_on(shared: &Arc<Shared>, id: GoId, p: PId) -> Option<SuspendedG> {
    let g = shared.g_by_id(id)?;
    if !g.status.try_begin_scan(GStatus::Running) {
        return None;
    }
    let suspended = SuspendedG {
        shared: Arc::clone(shared),
        g,
        stopped: false,
    };
    let holder = shared.p(p).m();
    (holder.is_some() && suspended.g.running_on() == holder).then_some(suspended)
}
