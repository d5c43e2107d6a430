//! The runtime's locks: parking_lot's mutexes, counted per thread.
//!
//! A thread that holds any runtime lock is not at an asynchronous safe point: a signal-based
//! strategy that stopped it there could deadlock with a requester (or a barrier function)
//! that needs the same lock. Every runtime lock is one of these, so
//! [`held_by_this_thread`] is exact. The count is a const-initialised thread-local without
//! destructor, readable from a signal handler.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// How many runtime locks the calling thread holds. Async-signal-safe.
///
/// This and [`count_held`] are the only accesses to `HELD`, and are never inlined: a guard
/// may be taken on a goroutine stack and dropped after a switch, on another thread, and an
/// inlined access could reuse the TLS address computed before the switch.
#[inline(never)]
pub(crate) fn held_by_this_thread() -> u32 {
    HELD.with(Cell::get)
}

/// Adds `delta` (1 or -1) to the calling thread's count of held runtime locks.
#[inline(never)]
fn count_held(delta: i32) {
    HELD.with(|h| h.set(h.get().wrapping_add_signed(delta)));
}

/// Counts one held lock for as long as it lives; not `Send`, like the guards it sits in.
///
/// A guard makes its `Held` *before* it acquires the lock, and drops it after releasing:
/// a thread that is inside parking_lot's acquisition or release (which may hold a queue
/// lock of parking_lot_core), or that holds the lock but has not counted it yet, must not
/// look like an asynchronous safe point either.
struct Held(PhantomData<*const ()>);

impl Held {
    fn new() -> Held {
        count_held(1);
        Held(PhantomData)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        count_held(-1);
    }
}

#[derive(Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

pub(crate) struct MutexGuard<'a, T> {
    guard: parking_lot::MutexGuard<'a, T>,
    _held: Held,
}

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex(parking_lot::const_mutex(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        let held = Held::new();
        MutexGuard {
            guard: self.0.lock(),
            _held: held,
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A lock shared by `Arc`, whose guard is `'static`: a goroutine that parks hands it to its
/// M, which releases it once the goroutine is `Waiting` (see `current::park`).
pub(crate) struct ArcMutex<T>(Arc<parking_lot::Mutex<T>>);

pub(crate) struct ArcMutexGuard<T> {
    guard: parking_lot::ArcMutexGuard<parking_lot::RawMutex, T>,
    _held: Held,
}

impl<T> ArcMutex<T> {
    pub(crate) fn new(value: T) -> ArcMutex<T> {
        ArcMutex(Arc::new(parking_lot::Mutex::new(value)))
    }

    /// A guard borrowed from this handle, for threads that wait on a [`Condvar`].
    pub(crate) fn lock_here(&self) -> MutexGuard<'_, T> {
        let held = Held::new();
        MutexGuard {
            guard: self.0.lock(),
            _held: held,
        }
    }

    /// A guard that may outlive this handle: the one a parking goroutine hands its M.
    pub(crate) fn lock(&self) -> ArcMutexGuard<T> {
        let held = Held::new();
        ArcMutexGuard {
            guard: self.0.lock_arc(),
            _held: held,
        }
    }
}

impl<T> Clone for ArcMutex<T> {
    fn clone(&self) -> Self {
        ArcMutex(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for ArcMutex<T> {
    fn default() -> Self {
        ArcMutex::new(T::default())
    }
}

impl<T> Deref for ArcMutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for ArcMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[derive(Default)]
pub(crate) struct Condvar(parking_lot::Condvar);

impl Condvar {
    pub(crate) fn new() -> Condvar {
        Condvar(parking_lot::Condvar::new())
    }

    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        self.0.wait(&mut guard.guard);
    }

    pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: Duration) {
        self.0.wait_for(&mut guard.guard, timeout);
    }

    pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) {
        self.0.wait_until(&mut guard.guard, deadline);
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guard_counts_while_it_lives() {
        let (m, arc) = (Mutex::new(1), ArcMutex::new(2));
        assert_eq!(held_by_this_thread(), 0);
        let a = m.lock();
        let b = arc.lock();
        assert_eq!(held_by_this_thread(), 2);
        assert_eq!(*a + *b, 3);
        drop((a, b));
        assert_eq!(held_by_this_thread(), 0);
        let c = arc.lock_here();
        assert_eq!(held_by_this_thread(), 1);
        drop(c);
        assert_eq!(held_by_this_thread(), 0);
    }
}
