//! A loom model of the pending-count protocol (the futex and polling strategies' wait and
//! wake): the very code of `safepoint_kit::pending_count`, with the futex replaced by a model that gives its guarantee
//! (checking the word and going to sleep are one step with respect to a wake), explored in
//! every interleaving loom can reach.
//!
//! - A lost wake-up leaves the requester asleep with no one to wake it: loom reports the
//!   execution as a deadlock, and the model fails.
//! - The memory barrier: each P stores a value (relaxed) before it acknowledges, and the
//!   requester loads it (relaxed) after its wait. loom lets a relaxed load return any store
//!   that happens-before does not hide, so the load returns the P's value in every execution
//!   only if the acknowledgement (release) and the requester's final read of the count
//!   (acquire) order them.
//!
//! The claim of a P's pending flag (`PendingPs::claim`, in `kit/src/pending.rs`; its own
//! model, on its own code, is `loom_pending.rs`) is modelled here
//! with the same compare-and-swap on a loom atomic.

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use safepoint_kit::futex::WaitResult;
use safepoint_kit::pending_count::{self as protocol, PendingCount};
use safepoint_loom_model::{ModelFutex, ModelWord};

/// The shared state of one model: the futex, the pending count, and per P its pending flag,
/// how often `f` ran for it, and a value it publishes before its safe point.
struct Barrier {
    futex: ModelFutex,
    count: PendingCount<ModelWord>,
    pending: Vec<AtomicBool>,
    runs: Vec<AtomicU32>,
    published: Vec<AtomicU32>,
}

impl Barrier {
    fn new(futex: ModelFutex, procs: usize) -> Barrier {
        Barrier {
            futex,
            count: PendingCount::new(),
            pending: (0..procs).map(|_| AtomicBool::new(false)).collect(),
            runs: (0..procs).map(|_| AtomicU32::new(0)).collect(),
            published: (0..procs).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Requester, steps 1 and 2: count the Ps and mark them pending. The release store of
    /// each flag stands for the arm (sequentially consistent in the host).
    fn begin(&self) {
        self.count.reset(self.pending.len() as u32);
        for flag in &self.pending {
            flag.store(true, Ordering::Release);
        }
    }

    /// `PendingPs::claim`.
    fn claim(&self, p: usize) -> bool {
        self.pending[p]
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// `f(p)`: counts the call.
    fn f(&self, p: usize) {
        self.runs[p].fetch_add(1, Ordering::Relaxed);
    }

    /// A running P at its safe point (`on_poll`): publish, claim, run `f`, acknowledge.
    fn safe_point(&self, p: usize, value: u32) {
        self.published[p].store(value, Ordering::Relaxed);
        if self.claim(p) {
            self.f(p);
            protocol::acknowledge(&self.futex, &self.count);
        }
    }

    /// The requester's wait (step 5); after a timeout it serves `parked` on its behalf, as
    /// a re-poke that finds the P stopped does.
    fn wait(&self, timeout: Option<Duration>, parked: Option<usize>) {
        protocol::wait_for_acks(&self.futex, &self.count, timeout, |result| {
            if let (WaitResult::TimedOut, Some(p)) = (result, parked)
                && self.claim(p)
            {
                self.f(p);
                self.count.ack_by_requester();
            }
        });
    }

    fn runs(&self, p: usize) -> u32 {
        self.runs[p].load(Ordering::Relaxed)
    }
}

/// A barrier of one running P on `futex`, begun, and the P's thread heading for its safe
/// point.
fn one_running_p(futex: ModelFutex) -> (Arc<Barrier>, loom::thread::JoinHandle<()>) {
    let b = Arc::new(Barrier::new(futex, 1));
    b.begin();
    let p = {
        let b = Arc::clone(&b);
        loom::thread::spawn(move || b.safe_point(0, 1))
    };
    (b, p)
}

/// Two running Ps acknowledge while the requester goes to sleep with no timeout: whatever
/// the interleaving, the last one wakes it, and it sees what both published.
#[test]
fn the_last_acknowledgement_always_wakes_the_requester() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(ModelFutex::new(), 2));
        b.begin();
        let ps: Vec<_> = (0..2)
            .map(|p| {
                let b = Arc::clone(&b);
                loom::thread::spawn(move || b.safe_point(p, 10 + p as u32))
            })
            .collect();
        b.wait(None, None);
        for p in 0..2 {
            assert_eq!(b.runs(p), 1, "f ran once for P{p}");
            assert_eq!(
                b.published[p].load(Ordering::Relaxed),
                10 + p as u32,
                "P{p}'s write before its safe point is visible after the barrier"
            );
        }
        for p in ps {
            p.join().unwrap();
        }
    });
}

/// A P reaches its safe point while the requester, after a timed-out wait, serves it on its
/// behalf: exactly one of them runs `f`, and the barrier still ends.
#[test]
fn a_re_poke_and_the_p_itself_run_f_once_between_them() {
    loom::model(|| {
        let (b, p) = one_running_p(ModelFutex::with_timeouts());
        b.wait(Some(Duration::from_millis(1)), Some(0));
        assert_eq!(b.runs(0), 1);
        p.join().unwrap();
    });
}

/// Two barriers back to back with one P: the first barrier's wake can arrive during the
/// second's wait, and must neither end it early nor be needed by it.
#[test]
fn a_late_wake_from_the_previous_barrier_is_harmless() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(ModelFutex::new(), 1));
        let p = {
            let b = Arc::clone(&b);
            loom::thread::spawn(move || {
                for round in 1..=2 {
                    // Wait to be armed, as a P polls its poll word.
                    while !b.pending[0].load(Ordering::Acquire) {
                        loom::thread::yield_now();
                    }
                    b.safe_point(0, round);
                }
            })
        };
        for round in 1..=2 {
            b.begin();
            b.wait(None, None);
            assert_eq!(b.runs(0), round, "barrier {round} ended before P0 ran f");
        }
        p.join().unwrap();
    });
}

/// Set in the child process that runs the broken model.
const BROKEN_MODEL_CHILD: &str = "SAFEPOINT_LOOM_BROKEN_MODEL_CHILD";

/// The model has teeth: with a futex whose check and sleep are two steps, a wake can fall
/// between them, and loom finds the requester asleep for ever. loom aborts the process after
/// a deadlock, so the broken model runs in a child: this test binary again, running only
/// `broken_model_child`.
#[test]
fn a_futex_that_checks_then_sleeps_in_two_steps_loses_a_wake_up() {
    safepoint_loom_model::assert_deadlocks_in_child("broken_model_child", BROKEN_MODEL_CHILD);
}

/// The broken model; it runs only in the child started by the test above.
#[test]
fn broken_model_child() {
    safepoint_loom_model::model_in_child(BROKEN_MODEL_CHILD, || {
        let (b, p) = one_running_p(ModelFutex::checking_then_sleeping_apart());
        b.wait(None, None);
        p.join().unwrap();
    });
}
