//! M: an OS thread that runs goroutines while it holds a P.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use super::lock::{Condvar, Mutex};
use safepoint_abi::{MId, OsThread, PId};

use super::Shared;
use super::g::G;

const NO_P: u32 = u32::MAX;

/// Why a sleeping M woke up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    Asleep,
    /// Go's `startm(p)`: run with this P.
    WithP(PId),
    /// The runtime is shutting down.
    Exit,
}

pub(crate) struct M {
    pub(crate) id: MId,
    pub(crate) shared: Arc<Shared>,
    /// The P this M holds, or `NO_P`.
    p: AtomicU32,
    /// The goroutine it runs (Go's `curg`).
    pub(crate) curg: Mutex<Option<Arc<G>>>,
    /// What the current non-preemptible region is doing, for timeout reports.
    pub(crate) region: Mutex<Option<String>>,
    pub(crate) thread: OnceLock<OsThread>,
    wake: Mutex<Wake>,
    wake_cv: Condvar,
}

impl M {
    pub(crate) fn new(id: MId, shared: Arc<Shared>) -> M {
        M {
            id,
            shared,
            p: AtomicU32::new(NO_P),
            curg: Mutex::new(None),
            region: Mutex::new(None),
            thread: OnceLock::new(),
            wake: Mutex::new(Wake::Asleep),
            wake_cv: Condvar::new(),
        }
    }

    pub(crate) fn p(&self) -> Option<PId> {
        match self.p.load(Ordering::Acquire) {
            NO_P => None,
            p => Some(PId(p)),
        }
    }

    pub(crate) fn set_p(&self, p: Option<PId>) {
        self.p.store(p.map_or(NO_P, |p| p.0), Ordering::Release);
    }

    pub(crate) fn curg(&self) -> Option<Arc<G>> {
        self.curg.lock().clone()
    }

    /// Sleeps until [`M::wake`] hands it a P or tells it to exit.
    pub(crate) fn sleep(&self) -> Wake {
        let mut wake = self.wake.lock();
        while *wake == Wake::Asleep {
            self.wake_cv.wait(&mut wake);
        }
        std::mem::replace(&mut *wake, Wake::Asleep)
    }

    pub(crate) fn wake(&self, why: Wake) {
        *self.wake.lock() = why;
        self.wake_cv.notify_one();
    }
}
