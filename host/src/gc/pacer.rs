//! Go's GC pacer, reduced to its trigger (`mgcpacer.go`): a cycle starts once the heap has
//! grown by GOGC percent over what the last cycle marked live (`gcController.heapGoal`),
//! never below a minimum heap. Mutators report allocation volume a span at a time, as Go's
//! `mcache` does when it refills, and the refill that crosses the goal triggers the cycle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::runtime::{Sema, WaitReason};

/// When the next GC cycle starts.
pub struct Pacer {
    gogc: u64,
    heap_minimum: u64,
    /// Live bytes after the last cycle (Go's `heapMarked`).
    marked: AtomicU64,
    /// Bytes allocated since the last cycle started.
    allocated: AtomicU64,
    /// A cycle was triggered and has not started yet: later refills do not trigger again.
    requested: AtomicBool,
    trigger: Sema,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("gogc", &self.gogc)
            .field("goal", &self.goal())
            .finish()
    }
}

impl Pacer {
    /// A pacer with Go's `GOGC` percentage and a heap goal of at least `heap_minimum` bytes.
    pub fn new(gogc: u64, heap_minimum: u64) -> Pacer {
        Pacer {
            gogc,
            heap_minimum,
            marked: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            trigger: Sema::new(0),
        }
    }

    /// The heap size at which the next cycle starts, in bytes.
    pub fn goal(&self) -> u64 {
        let marked = self.marked.load(Ordering::Relaxed);
        (marked + marked * self.gogc / 100).max(self.heap_minimum)
    }

    /// A mutator refilled its cache: `bytes` more allocated. Returns whether this refill
    /// triggered a cycle (at most one refill triggers each).
    pub fn allocated(&self, bytes: u64) -> bool {
        let since = self.allocated.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.marked.load(Ordering::Relaxed) + since < self.goal()
            || self.requested.swap(true, Ordering::AcqRel)
        {
            return false;
        }
        self.trigger.release();
        true
    }

    /// Parks the calling goroutine until a refill triggers a cycle; the cycle starts now, and
    /// allocation counts towards the next one from here.
    pub fn wait_for_trigger(&self) {
        self.trigger.acquire(WaitReason::SemAcquire);
        self.allocated.store(0, Ordering::Relaxed);
        self.requested.store(false, Ordering::Release);
    }

    /// The cycle ended with `live` bytes marked: the next goal is GOGC percent above it.
    pub fn cycle_done(&self, live: u64) {
        self.marked.store(live, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goal_is_gogc_percent_over_the_marked_heap_and_never_below_the_minimum() {
        let pacer = Pacer::new(100, 1000);
        assert_eq!(pacer.goal(), 1000);
        pacer.cycle_done(600);
        assert_eq!(pacer.goal(), 1200);
        // 600 live plus 500 allocated is below the goal; 100 more reaches it, once.
        assert!(!pacer.allocated(500));
        assert!(pacer.allocated(100));
        assert!(!pacer.allocated(100), "one trigger per cycle");
    }
}
