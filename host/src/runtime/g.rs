//! G: a goroutine, a stackful coroutine that runs on whichever M picks it up.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::lock::Mutex;
use safepoint_abi::MId;

use super::status::{GStatus, GStatusWord, WaitReason};
use crate::sys::{GStack, Suspender};

/// A goroutine's id, as the dump prints it (`goroutine 7 [...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GoId(pub u64);

impl fmt::Display for GoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "goroutine {}", self.0)
    }
}

/// What a goroutine tells its M when it switches out.
pub(crate) enum Switch {
    /// Go's `Gosched`: still runnable, put it back on the global run queue.
    Yield,
    /// Go's `gopark`: it is waiting for `reason`. The M marks it `Waiting`, then runs the
    /// closure, which releases the lock that kept wakers away until then.
    Park(WaitReason, Box<dyn FnOnce()>),
    /// Its blocking section ended and its P was taken meanwhile: Go's `exitsyscall0`.
    LostP,
}

pub(crate) const NO_M: u32 = u32::MAX;

pub(crate) struct G {
    pub(crate) id: GoId,
    /// What the goroutine is, for the dump: the name given at spawn.
    pub(crate) name: String,
    pub(crate) status: GStatusWord,
    /// Taken by the M that runs the goroutine, put back when it switches out.
    stack: Mutex<Option<GStack<Switch>>>,
    suspender: OnceLock<Suspender<Switch>>,
    /// The M running it, or `NO_M`: for the dump and timeout reports.
    pub(crate) m: AtomicU32,
    /// Go's `preemptStop`: a scanner waits for it to park at its next safe point.
    pub(crate) scan_requested: AtomicBool,
}

impl G {
    pub(crate) fn new(id: GoId, name: String) -> G {
        G {
            id,
            name,
            status: GStatusWord::new(GStatus::Idle),
            stack: Mutex::new(None),
            suspender: OnceLock::new(),
            m: AtomicU32::new(NO_M),
            scan_requested: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_stack(&self, stack: GStack<Switch>) {
        *self.stack.lock() = Some(stack);
    }

    pub(crate) fn take_stack(&self) -> GStack<Switch> {
        self.stack
            .lock()
            .take()
            .unwrap_or_else(|| panic!("{}: stack taken by two Ms", self.id))
    }

    /// Called once, by the goroutine's body, when it first runs.
    pub(crate) fn set_suspender(&self, s: Suspender<Switch>) {
        if self.suspender.set(s).is_err() {
            panic!("{}: suspender set twice", self.id);
        }
    }

    pub(crate) fn suspender(&self) -> Suspender<Switch> {
        *self
            .suspender
            .get()
            .unwrap_or_else(|| panic!("{}: switch before its body started", self.id))
    }

    pub(crate) fn cas_status(&self, from: GStatus, to: GStatus) {
        self.status.cas(self.id.0, from, to);
    }

    pub(crate) fn running_on(&self) -> Option<MId> {
        match self.m.load(Ordering::Relaxed) {
            NO_M => None,
            m => Some(MId(m)),
        }
    }

    /// At shutdown: frees the stack of a goroutine that never finished, without unwinding it.
    pub(crate) fn abandon_stack(&self) {
        if let Some(stack) = self.stack.lock().take()
            && !stack.is_finished()
        {
            stack.abandon();
        }
    }
}
