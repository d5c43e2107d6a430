//! The safe-point path of a P's own M, and worldsema.
//!
//! - [`serve`]: the poll's slow path and every scheduler transition call the active
//!   strategy's `on_poll` when a strategy armed the P; [`give_way`] and
//!   [`give_way_on_goroutine`] then apply the served-P policy (`served.rs`).
//! - [`acquire_world`]: worldsema, which a barrier, a handshake and a swap hold.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use safepoint_abi::{PId, PluginError};

use super::trace::{self, ReachedBy};
use super::{P, Shared, WaitReason, current_g, poll_bits, waiting_on_system_stack};
use crate::sys;

/// The poll's slow path and every scheduler transition: if a strategy armed `p`, call its
/// `on_poll`, and return true. The caller is `p`'s M, outside any non-preemptible region.
///
/// A caller that goes on running goroutines next calls [`give_way`] or
/// [`give_way_on_goroutine`]; one that parks the P (idle, syscall) frees its CPU anyway. So
/// does an M that has just taken a P back from `Idle` or `Syscall`, whatever this returned:
/// a requester may have served the P while it was parked.
pub(crate) fn serve(shared: &Shared, p: &P, how: ReachedBy) -> bool {
    if p.poll.word.load(Ordering::Acquire) & poll_bits::SAFEPOINT == 0 {
        return false;
    }
    let on_poll = || {
        shared.with_strategy(|strategy| {
            let outer = p.enter_safe_point();
            let result = strategy.object.on_poll(p.id).into_result();
            p.leave_safe_point(outer);
            if let Err(error) = result {
                strategy_failed(shared, &strategy.name, p.id, error);
            }
        });
    };
    if shared.trace.is_some() {
        trace::reaching(how, on_poll);
    } else {
        on_poll();
    }
    true
}

/// Fail fast: an entry point of the strategy failed on `p`'s M. The first failure is kept
/// and printed at once; the rest are counted, until the barrier in flight (or the next)
/// returns it. The host cannot end a strategy's wait: a strategy that fails before it served
/// `p` never returns, and the safepoint timeout's report names this failure.
fn strategy_failed(shared: &Shared, strategy: &str, p: PId, error: PluginError) {
    if shared.tally.record_entry_error(p, &error) {
        shared.log_limit.write_line(
            sys::monotonic_nanos(),
            format_args!(
                "safepoint: strategy {strategy} failed in {} for {p}: {}; the barrier in flight \
                 (or the next, if this one has already been checked) fails with this error",
                error.entry_point.as_str(),
                error.message.as_str()
            ),
        );
    }
}

/// The served-P policy (see `served.rs`), on `p`'s M in the scheduler, after [`serve`].
pub(crate) fn give_way(shared: &Shared, p: &P) {
    shared.served.give_way(p);
}

/// The served-P policy on `p`'s M at a goroutine's poll, after [`serve`]: a wait happens on
/// the system stack with the goroutine in `Waiting(waiting for forEachP)`, so that a GC stack
/// scan can proceed meanwhile.
pub(crate) fn give_way_on_goroutine(shared: &Shared, p: &P) {
    if shared.served.must_wait(p).is_some() {
        waiting_on_system_stack(WaitReason::ForEachPServed, || shared.served.give_way(p));
    } else {
        shared.served.give_way(p);
    }
}

/// Evidence that the holder owns worldsema (Go's `semacquire(&worldsema)`): at most one
/// barrier is in flight. Released on drop.
#[must_use = "worldsema is released when the guard drops"]
pub struct WorldGuard {
    pub(crate) shared: Arc<Shared>,
    // Not Send (it is released by the goroutine that took it), but Sync.
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

/// Takes worldsema, parking the calling goroutine until it is free.
///
/// # Panics
///
/// If not called on a goroutine.
pub fn acquire_world() -> WorldGuard {
    let shared = super::shared_of_current()
        .filter(|_| current_g().is_some())
        .expect("acquire_world: not called on a goroutine");
    shared.worldsema.acquire(WaitReason::StoppingTheWorld);
    WorldGuard {
        shared,
        _not_send: PhantomData,
    }
}

impl Drop for WorldGuard {
    fn drop(&mut self) {
        self.shared.worldsema.release();
    }
}
