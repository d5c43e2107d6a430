//! The registry of live strategies, through which the handler finds its thread's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::state::State;

/// At most this many signal strategies live at once in a process.
pub(super) const MAX_STRATEGIES: usize = 64;

/// One registered strategy.
pub(super) struct Slot {
    /// Handlers currently reading `state` through this slot.
    readers: AtomicUsize,
    /// The strategy, or null.
    state: AtomicPtr<State>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            readers: AtomicUsize::new(0),
            state: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Enters the slot: the state it names stays alive until the guard drops. `None` for an
    /// empty slot. Async-signal-safe.
    pub(super) fn enter(&self) -> Option<Entered<'_>> {
        // Sequentially consistent, against `Registered::unregister`'s store-then-load: either we
        // see null, or it sees our increment and waits for us.
        self.readers.fetch_add(1, Ordering::SeqCst);
        let state = self.state.load(Ordering::SeqCst);
        if state.is_null() {
            self.readers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Entered { slot: self, state })
    }
}

pub(super) struct Entered<'a> {
    slot: &'a Slot,
    state: *const State,
}

impl Entered<'_> {
    pub(super) fn state(&self) -> &State {
        // SAFETY: `state` was non-null in the slot after we counted ourselves a reader. It
        // points into the box of a `Registered`, which nulls the slot and waits until no
        // reader is left before the box can be freed or moved out.
        unsafe { &*self.state }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.slot.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) static SLOTS: [Slot; MAX_STRATEGIES] = [const { Slot::new() }; MAX_STRATEGIES];
/// One past the highest slot ever used, so the handler scans only those.
pub(super) static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);
/// Serialises registration (never taken by the handler).
pub(super) static REGISTRY: Mutex<()> = Mutex::new(());

/// A strategy's state, registered so that the handler finds it. The state stays at its
/// address (boxed) until the value is dropped, and the entry is removed first (by
/// [`Registered::unregister`] or on drop): the handler never reads freed state.
pub(crate) struct Registered {
    state: Box<State>,
    /// The slot, or [`UNREGISTERED`].
    index: AtomicUsize,
}

pub(super) const UNREGISTERED: usize = usize::MAX;

/// Makes `state` visible to the handler.
pub(crate) fn register(state: Box<State>) -> Result<Registered, String> {
    let _serialised = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let index = SLOTS
        .iter()
        .position(|slot| slot.state.load(Ordering::SeqCst).is_null())
        .ok_or_else(|| format!("more than {MAX_STRATEGIES} signal strategies in one process"))?;
    SLOTS[index].state.store(
        std::ptr::from_ref::<State>(&state).cast_mut(),
        Ordering::SeqCst,
    );
    SLOTS_USED.fetch_max(index + 1, Ordering::SeqCst);
    Ok(Registered {
        state,
        index: AtomicUsize::new(index),
    })
}

impl Registered {
    /// Removes the entry, and waits until no handler reads it. Idempotent.
    pub(crate) fn unregister(&self) {
        let index = self.index.swap(UNREGISTERED, Ordering::SeqCst);
        let Some(slot) = SLOTS.get(index) else {
            return;
        };
        // Held until the slot is drained, so that no new strategy moves in meanwhile.
        let _serialised = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        slot.state.store(std::ptr::null_mut(), Ordering::SeqCst);
        // Handlers in the slot are finishing (no barrier is in flight, so none waits for a
        // requester): a few instructions each.
        while slot.readers.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

impl std::ops::Deref for Registered {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.unregister();
    }
}
