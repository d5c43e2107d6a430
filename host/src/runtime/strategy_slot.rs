//! The slot that holds a runtime's active strategy.
//!
//! Loading it takes no lock and writes no shared line: arc_swap records each load as a debt
//! in a node of the calling thread's, and a swap pays every outstanding debt into the
//! reference count, so `Arc::strong_count` tells the swap when the old strategy is out of use.
//!
//! That node is found through a thread-local, and goroutine code may resume on another
//! thread after any switch. Inlined into a goroutine's frame, a load may reuse the TLS
//! address computed before a switch, on the old thread, and two threads then share one node:
//! a debt goes unpaid and the old strategy is freed twice. (The 8-P soak did exactly that:
//! a release build of the GC's mark worker read the TLS base once, at entry, and loaded the
//! strategy after each park.) So every access is a method here, none inlined: each computes
//! its thread's address afresh, in a frame that spans no switch. The field is private, so no
//! other access exists.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::ActiveStrategy;

pub(crate) struct StrategySlot(ArcSwapOption<ActiveStrategy>);

impl StrategySlot {
    pub(crate) fn empty() -> StrategySlot {
        StrategySlot(ArcSwapOption::empty())
    }

    /// The strategy, counted: it stays alive (though perhaps retired) while the caller holds
    /// it.
    #[inline(never)]
    pub(crate) fn get(&self) -> Option<Arc<ActiveStrategy>> {
        self.0.load_full()
    }

    /// Calls `f` with the strategy, without touching its reference count. `f` must not
    /// switch goroutines.
    #[inline(never)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&ActiveStrategy>) -> R) -> R {
        f(self.0.load().as_deref())
    }

    /// Puts `new` in the slot; returns the strategy it replaces, with every load of it
    /// still in use counted in its reference count.
    #[inline(never)]
    pub(crate) fn replace(&self, new: Option<Arc<ActiveStrategy>>) -> Option<Arc<ActiveStrategy>> {
        self.0.swap(new)
    }
}
