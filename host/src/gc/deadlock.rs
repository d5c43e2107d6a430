//! The deadlock that `for_each_p` prevents (Go change 533455), staged for real.
//!
//! A mark worker starts `suspend_g` on the goroutine that is about to call the barrier, from
//! a non-preemptible region on another P, and spins there until that goroutine can be
//! scanned. The goroutine then calls the barrier:
//!
//! - through `for_each_p`, it is `Waiting(GC mark termination)` for the duration; the worker
//!   scans it in place, leaves its region, reaches a safe point, and both finish;
//! - through `for_each_p_unchecked`, it stays `Running` inside the barrier, which waits for
//!   the worker's P, which waits for it: nothing moves until the safepoint timeout reports
//!   the late P (its M is "in suspend_g, scanning goroutine N").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::runtime::{self, Runtime, WaitGroup, WaitReason, suspend_g, waiting_on_system_stack};
use crate::safepoint::{self, BarrierError};

/// Which entry point the demo's requester calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlockMode {
    /// `for_each_p`: completes.
    Safe,
    /// `for_each_p_unchecked`: deadlocks.
    Unchecked,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The scene needs the worker and the requester on different Ps.
    #[error(
        "the deadlock demo needs at least 2 Ps (the mark worker runs beside the requester); got {0}"
    )]
    TooFewPs(usize),
    /// A barrier failed.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
}

/// Stages the scene `iterations` times; returns how many barriers completed. In
/// `Unchecked` mode it does not return: the safepoint timeout reports, then aborts or keeps
/// waiting as configured.
pub fn demo_deadlock(rt: &Runtime, mode: DeadlockMode, iterations: u64) -> Result<u64, DemoError> {
    if rt.procs() < 2 {
        return Err(DemoError::TooFewPs(rt.procs()));
    }
    let shared = Arc::clone(&rt.shared);
    rt.block_on(move || {
        let me = runtime::current_goid().expect("block_on runs a goroutine");
        for _ in 0..iterations {
            let world = safepoint::acquire_world();
            let spinning = Arc::new(AtomicBool::new(false));
            let done = WaitGroup::new();
            done.add(1);
            let (shared, worker_spinning, worker_done) =
                (Arc::clone(&shared), Arc::clone(&spinning), done.clone());
            runtime::go("GC mark worker", move || {
                let region =
                    runtime::no_preempt(&format!("in suspend_g, scanning goroutine {}", me.0));
                waiting_on_system_stack(WaitReason::GcWorkerActive, || {
                    worker_spinning.store(true, Ordering::Release);
                    drop(suspend_g(&shared, me));
                });
                drop(region);
                worker_done.done();
            });
            // Stay `Running`, with no safe point, until the worker spins on us.
            while !spinning.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            match mode {
                DeadlockMode::Safe => {
                    safepoint::for_each_p(&world, WaitReason::GcMarkTermination, |_| {})?;
                }
                DeadlockMode::Unchecked => {
                    // SAFETY: deliberately broken, and memory-safe: the point of the demo is
                    // the hang that this entry point's safety rule warns of.
                    #[allow(unsafe_code)]
                    let report = unsafe { safepoint::for_each_p_unchecked(&world, |_| {}) };
                    report?;
                }
            }
            drop(world);
            done.wait();
        }
        Ok(iterations)
    })
}
