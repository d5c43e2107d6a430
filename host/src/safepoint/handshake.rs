//! Single-P handshakes (ABI 2.1): run a function for one P at its next safe point while the
//! other Ps keep running. The host's side: the capability check, the goroutine-status
//! transition, and the check that `f` ran exactly once, for that P only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use safepoint_abi::{Capabilities, PId, PStatus};

use super::{BarrierError, WorldGuard, check_breaches};
use crate::runtime::host::{Tally, counted_fn};
use crate::runtime::trace::EventKind;
use crate::runtime::{Shared, WaitReason, current_p};

/// What one handshake did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeReport {
    /// Wall time of the strategy's `handshake`.
    pub duration: Duration,
    /// The P's own M ran `f` at its safe point (false: the requester ran it on the P's
    /// behalf, the P being parked or the caller's own).
    pub by_itself: bool,
}

/// A single-P handshake: runs `f(p)` exactly once at `p`'s next safe point while the other Ps
/// keep running (HotSpot's thread-local handshake, Go's `preemptM` behind `suspendG`), and
/// returns when it has. Everything `p` wrote before its safe point happens-before the return.
///
/// As for [`super::for_each_p`], the caller holds worldsema and its goroutine is in
/// `Waiting(reason)` on the system stack meanwhile. For the caller's own P, `f` runs at once.
/// A strategy without the `single-p-handshake` capability is refused
/// ([`BarrierError::MissingCapability`]), as is a `Dead` or nonexistent P.
pub fn handshake<F>(
    world: &WorldGuard,
    reason: WaitReason,
    p: PId,
    f: F,
) -> Result<HandshakeReport, BarrierError>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    super::waiting_for(world, reason, move |shared| {
        run_handshake(shared, reason, p, f)
    })
}

fn run_handshake<F>(
    shared: &Arc<Shared>,
    reason: WaitReason,
    p: PId,
    f: F,
) -> Result<HandshakeReport, BarrierError>
where
    F: Fn(PId) + Send + Sync + 'static,
{
    let strategy = shared.strategy();
    let name = || strategy.name.clone();
    if !strategy
        .capabilities
        .contains(Capabilities::SINGLE_P_HANDSHAKE)
    {
        return Err(BarrierError::MissingCapability {
            strategy: name(),
            capability: Capabilities::SINGLE_P_HANDSHAKE,
            feature: "a single-P handshake",
        });
    }
    let live = shared
        .ps
        .get(p.index())
        .is_some_and(|target| target.status.load() != PStatus::Dead);
    if !live {
        return Err(BarrierError::NoSuchP {
            strategy: name(),
            p,
        });
    }
    let mine = current_p().filter(|cur| cur.id == p);
    // Barrier number 0 is never in flight: the served-P policy lets the P go on at once.
    let tally = Arc::new(Tally::new(shared.ps, Arc::clone(&shared.tally.late)));
    tally.reset();
    let counted = counted_fn(&tally, shared.trace.clone(), 0, f);
    if let Some(trace) = &shared.trace {
        trace.handshake_begin(reason, &strategy.name, p);
    }
    let start = Instant::now();
    let result = if let Some(mine) = mine {
        // At a safe point: the caller's goroutine waits.
        let outer = mine.enter_safe_point();
        counted.call(p);
        mine.leave_safe_point(outer);
        Ok(())
    } else {
        strategy.object.handshake(p, counted).into_result()
    };
    let duration = start.elapsed();
    tally.close();
    if let Some(trace) = &shared.trace {
        trace.requester(EventKind::HandshakeEnd);
    }
    result.map_err(|error| BarrierError::Strategy {
        strategy: name(),
        error,
    })?;
    check_breaches(&shared.tally, &tally, &strategy.name)?;
    if let Some(other) = shared
        .ps
        .iter()
        .map(|q| q.id)
        .find(|&q| q != p && tally.count(q) != 0)
    {
        return Err(BarrierError::HandshakeStray {
            strategy: name(),
            target: p,
            p: other,
        });
    }
    match tally.count(p) {
        1 => {}
        0 => {
            return Err(BarrierError::Skipped {
                strategy: name(),
                p,
                missing: 1,
            });
        }
        times => {
            return Err(BarrierError::Repeated {
                strategy: name(),
                p,
                times,
            });
        }
    }
    if let Some((p, message)) = tally.panicked.lock().take() {
        return Err(BarrierError::FnPanicked { p, message });
    }
    Ok(HandshakeReport {
        duration,
        by_itself: mine.is_none() && tally.ran_by_itself(p),
    })
}
