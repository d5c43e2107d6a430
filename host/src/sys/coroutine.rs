//! Goroutine stacks: a thin, `Send` wrapper over corosensei's coroutines.
//!
//! corosensei's `Coroutine` is not `Send`, because a coroutine could keep a thread-bound value
//! (a thread-local reference, a `MutexGuard`) live across a suspension and be resumed on
//! another thread. The runtime upholds the rule that makes moving one sound: nothing live on
//! a goroutine stack across a switch is bound to the thread. Goroutine code reaches
//! thread-locals only through `#[inline(never)]` functions (the current M and P in
//! `runtime::current`, the lock count in `runtime::lock`, arc_swap's node in
//! `runtime::strategy_slot`), so no TLS address is cached across a switch, and the runtime's
//! own locks are never held across one.

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// A goroutine's stack and saved context. `Y` is what the goroutine passes to its M when it
/// switches out.
pub(crate) struct GStack<Y> {
    coroutine: Coroutine<(), Y, (), DefaultStack>,
}

// SAFETY: see the module documentation: goroutine code keeps nothing thread-bound live across
// a switch, and a GStack is resumed by one M at a time (it is taken out of its G to run).
unsafe impl<Y> Send for GStack<Y> {}

/// What a resumed goroutine did.
pub(crate) enum Resumed<Y> {
    /// It switched out, with this message for its M.
    Switched(Y),
    /// Its function returned.
    Finished,
}

impl<Y: 'static> GStack<Y> {
    /// A new stack of `size` bytes (plus a guard page) that runs `body` when first resumed.
    pub(crate) fn new(
        size: usize,
        body: impl FnOnce(Suspender<Y>) + 'static,
    ) -> std::io::Result<GStack<Y>> {
        let stack = DefaultStack::new(size)?;
        let coroutine = Coroutine::with_stack(stack, move |yielder: &Yielder<(), Y>, ()| {
            let probe = 0u8;
            body(Suspender {
                yielder,
                stack_top: &probe as *const u8 as usize,
                stack_size: size,
            });
        });
        Ok(GStack { coroutine })
    }

    /// Runs the goroutine until it switches out or returns.
    pub(crate) fn resume(&mut self) -> Resumed<Y> {
        match self.coroutine.resume(()) {
            CoroutineResult::Yield(y) => Resumed::Switched(y),
            CoroutineResult::Return(()) => Resumed::Finished,
        }
    }

    /// Whether the goroutine's function has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.coroutine.done()
    }

    /// Frees a suspended stack without unwinding it. Used at shutdown for goroutines still
    /// blocked, as Go does not unwind goroutines at exit; their destructors do not run.
    pub(crate) fn abandon(self) {
        std::mem::forget(self);
    }
}

/// The handle a goroutine uses to switch out, and to run code on its M's stack.
///
/// Every method first checks that it is called on the goroutine's own stack, which is only
/// possible while that goroutine runs; so the `Yielder` it points to is alive.
pub(crate) struct Suspender<Y: 'static> {
    yielder: *const Yielder<(), Y>,
    /// An address near the top of the goroutine's stack, taken when its body started.
    stack_top: usize,
    stack_size: usize,
}

impl<Y> Clone for Suspender<Y> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Y> Copy for Suspender<Y> {}

// SAFETY: the pointer is only dereferenced on the goroutine's own stack (checked in
// `assert_on_own_stack`), where the Yielder it points to is alive and used by one thread.
unsafe impl<Y> Send for Suspender<Y> {}
// SAFETY: as for Send: no method dereferences the pointer off the goroutine's own stack.
unsafe impl<Y> Sync for Suspender<Y> {}

impl<Y> Suspender<Y> {
    fn assert_on_own_stack(&self) {
        let probe = 0u8;
        let sp = &probe as *const u8 as usize;
        assert!(
            sp <= self.stack_top && self.stack_top - sp < self.stack_size,
            "goroutine switch attempted off the goroutine's own stack"
        );
    }

    /// Switches out to the M with `message`; returns when an M resumes the goroutine.
    pub(crate) fn suspend(&self, message: Y) {
        self.assert_on_own_stack();
        // SAFETY: we run on this goroutine's stack, so its coroutine is running and the
        // Yielder (which lives at the base of that stack) is alive.
        unsafe { (*self.yielder).suspend(message) }
    }

    /// Go's `systemstack`: runs `f` on the M's own stack and returns its result.
    pub(crate) fn on_system_stack<R>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.assert_on_own_stack();
        // SAFETY: as in `suspend`: the goroutine is running, its Yielder is alive.
        unsafe { (*self.yielder).on_parent_stack(f) }
    }
}
