//! Swapping the active strategy while the runtime runs.
//!
//! The order keeps the runtime working whatever fails:
//!
//! 1. Construct the new strategy ([`StrategyConstructor`]). If its constructor fails, nothing
//!    has changed.
//! 2. Take worldsema: no barrier is in flight, and none starts, until the swap is done.
//! 3. Attach every M to the new strategy. If one attach fails, detach the others, shut the
//!    new strategy down, and leave the old one active.
//! 4. Make the new strategy active. Every later poll and barrier uses it.
//! 5. Wait until no thread runs code of the old strategy: every call into a strategy holds a
//!    reference to it, so the old one is out of use once this swap holds the last reference.
//! 6. Detach every M from the old strategy and shut it down. It runs no code again; its
//!    library stays mapped, since abi_stable never unloads one. The Ms live on: whatever
//!    the old strategy still has on its way to them (the signal strategy's signals in
//!    flight) is its own to drain at shutdown, and the detaches before it must not end
//!    that (see the signal strategy's README, "Retirement").

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use safepoint_abi::{MId, PluginError};

use super::trace::EventKind;
use super::{Runtime, Shared, StrategyConstructor, current_m, in_goroutine, status::backoff};
use super::{acquire_world, host_ref};

/// What a swap did.
#[derive(Clone, Debug)]
pub struct SwapReport {
    /// The strategy swapped out.
    pub old: String,
    /// The strategy swapped in.
    pub new: String,
    /// The whole swap, the new strategy's construction included.
    pub took: Duration,
    /// How long the world was held: no barrier could run meanwhile.
    pub world_held: Duration,
    /// What the old strategy reported as it was detached and shut down; the swap succeeded
    /// regardless.
    pub retirement_errors: Vec<PluginError>,
}

impl fmt::Display for SwapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "swapped {} -> {} in {:.1} µs (world held {:.1} µs)",
            self.old,
            self.new,
            self.took.as_secs_f64() * 1e6,
            self.world_held.as_secs_f64() * 1e6
        )
    }
}

/// Why a swap failed. The old strategy is still active and working.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The new strategy could not be constructed: the constructor's error (a
    /// `plugin::LoadError` for a plugin).
    #[error("cannot swap to a new strategy, the old one stays active: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The new strategy refused an M.
    #[error(
        "cannot swap to strategy {strategy}, {old} stays active: attaching {m} failed: {error}"
    )]
    Attach {
        /// The new strategy.
        strategy: String,
        /// The strategy that stays active.
        old: String,
        /// The M it refused.
        m: MId,
        /// Its error.
        error: Box<PluginError>,
    },
    /// Called from a goroutine of another runtime, whose M it would block.
    #[error(
        "swap_strategy called from a goroutine of another runtime; call it from this runtime's goroutines or from a plain thread"
    )]
    WrongRuntime,
}

impl Runtime {
    /// Replaces the active strategy with a new one that `strategy` constructs (a loaded
    /// `plugin::Plugin`, say), configured by `config`, while the runtime runs. See the module documentation for the order of steps; on
    /// error the old strategy stays active and working.
    ///
    /// Call it from one of this runtime's goroutines or from a plain thread.
    ///
    /// ```
    /// # use safepoint_host::{plugin::{self, SearchPath}, runtime::Runtime};
    /// let polling = plugin::load("polling", &SearchPath::default()).unwrap();
    /// let rt = Runtime::builder().procs(2).build(&polling, "").unwrap();
    /// let report = rt.swap_strategy(&polling, "spin=2").unwrap();
    /// assert_eq!((report.old.as_str(), report.new.as_str()), ("polling", "polling"));
    /// ```
    pub fn swap_strategy<C>(&self, strategy: &C, config: &str) -> Result<SwapReport, SwapError>
    where
        C: StrategyConstructor + Clone + Send + 'static,
    {
        match current_m() {
            Some(m) if Arc::ptr_eq(&m.shared, &self.shared) && in_goroutine() => {
                swap(&self.shared, strategy, config)
            }
            Some(_) => Err(SwapError::WrongRuntime),
            None => {
                let (shared, strategy, config) = (
                    Arc::clone(&self.shared),
                    strategy.clone(),
                    config.to_owned(),
                );
                self.block_on(move || swap(&shared, &strategy, &config))
            }
        }
    }
}

/// The swap itself, on a goroutine of the runtime behind `shared`.
pub(crate) fn swap<C: StrategyConstructor + ?Sized>(
    shared: &Arc<Shared>,
    strategy: &C,
    config: &str,
) -> Result<SwapReport, SwapError> {
    let start = Instant::now();
    let new = strategy
        .construct(host_ref(shared), config)
        .map_err(|e| SwapError::Start(Box::new(e)))?;
    let world = acquire_world();
    let held = Instant::now();
    let trace = shared.trace.as_deref();
    if let Some(trace) = trace {
        trace.requester(EventKind::SwapBegin);
    }
    let switch = shared.strategy_switch.lock();
    let ms = shared.all_ms.lock().clone();
    for (i, m) in ms.iter().enumerate() {
        let thread = *m.thread.get().expect("a listed M knows its thread");
        if let Err(error) = new.object.attach_thread(m.id, thread).into_result() {
            for attached in &ms[..i] {
                let _ = new.object.detach_thread(attached.id);
            }
            let _ = new.object.shutdown();
            return Err(SwapError::Attach {
                strategy: new.name.clone(),
                old: shared.with_strategy(|s| s.name.clone()),
                m: m.id,
                error: Box::new(error),
            });
        }
    }
    let new_name = new.name.clone();
    let old = shared
        .strategy
        .replace(Some(Arc::new(new)))
        .expect("a running runtime has a strategy");
    let mut spins = 0;
    while Arc::strong_count(&old) > 1 {
        backoff(&mut spins);
    }
    let mut retirement_errors = Vec::new();
    // A failure of the old strategy that no barrier has reported yet is its own, not the
    // new one's: reported with the swap.
    if let Some((_, error, _)) = shared.tally.take_entry_error() {
        retirement_errors.push(error);
    }
    for m in &ms {
        if let Err(e) = old.object.detach_thread(m.id).into_result() {
            retirement_errors.push(e);
        }
    }
    if let Err(e) = old.object.shutdown().into_result() {
        retirement_errors.push(e);
    }
    drop(switch);
    let world_held = held.elapsed();
    if let Some(trace) = trace {
        trace.requester(EventKind::SwapEnd);
    }
    drop(world);
    Ok(SwapReport {
        old: old.name.clone(),
        new: new_name,
        took: start.elapsed(),
        world_held,
        retirement_errors,
    })
}
