//! A loom model of the park word (`src/park.rs`): the handoff between a P stopped in its
//! signal handler and the requester that runs `f` on its behalf, with the very code of
//! `ParkWord` over a model of the futex, explored in every interleaving loom can reach.
//!
//! - The handoff: the requester takes the P once, and what the interrupted code wrote before
//!   the stop is visible to `f`; the handler returns only after the release, and sees what
//!   `f` wrote. Relaxed loads can return any store that happens-before does not hide, so
//!   these hold in every execution only if `park`/`try_take` and `release`/`wait_released`
//!   order them.
//! - A lost wake-up (the handler asleep after the release) is a deadlock, which loom reports.
//!
//! Not modelled: a round abandoned as the P parks. The handler's `park` then its check that
//! the round is open, against the requester's close then its `release_abandoned`, is a
//! Dekker pair of sequentially consistent stores and loads, and loom treats `SeqCst` as
//! acquire-release: it would report the store-buffering outcome that `SeqCst` forbids. The
//! test `a_panic_in_the_requester_lets_every_p_stopped_in_its_handler_go` runs that case.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use safepoint_loom_model::ModelFutex;
use safepoint_signal::park::ParkWord;

/// One P's stop: its park word, whether the round is open (always, here), and what each side
/// writes.
struct Stop {
    word: ParkWord<ModelFutex>,
    open: AtomicBool,
    /// Written by the interrupted code before the signal; read by `f`.
    before_stop: AtomicU32,
    /// Written by `f`; read by the interrupted code once the handler returns.
    by_f: AtomicU32,
    f_runs: AtomicU32,
}

impl Stop {
    fn new(futex: ModelFutex) -> Arc<Stop> {
        Arc::new(Stop {
            word: ParkWord::new(futex),
            open: AtomicBool::new(true),
            before_stop: AtomicU32::new(0),
            by_f: AtomicU32::new(0),
            f_runs: AtomicU32::new(0),
        })
    }

    /// The handler's stop (`sys/handler/mod.rs`, step 4), from the interrupted code's write to
    /// its resumption; returns what the resumed code reads of `f`'s write.
    fn handler(&self, spins: u32) -> u32 {
        self.before_stop.store(1, Ordering::Relaxed);
        self.word.park();
        if !self.open.load(Ordering::SeqCst) && self.word.unpark() {
            return self.by_f.load(Ordering::Relaxed);
        }
        self.word.wait_released(spins);
        self.by_f.load(Ordering::Relaxed)
    }

    /// The requester serving the stopped P: `f` runs between the take and the release.
    fn serve(&self) {
        while !self.word.try_take() {
            loom::thread::yield_now();
        }
        assert_eq!(
            self.before_stop.load(Ordering::Relaxed),
            1,
            "f sees what the interrupted code wrote before its stop"
        );
        self.f_runs.fetch_add(1, Ordering::Relaxed);
        self.by_f.store(1, Ordering::Relaxed);
        self.word.release();
    }
}

/// A stopped P, served: `f` runs once, and the handler resumes after it, seeing its write,
/// whether it spun or slept on the futex.
#[test]
fn the_requester_serves_a_stopped_p_once_and_the_handler_resumes_after_f() {
    for spins in [0, 1] {
        loom::model(move || {
            let stop = Stop::new(ModelFutex::new());
            let handler = {
                let stop = Arc::clone(&stop);
                loom::thread::spawn(move || stop.handler(spins))
            };
            stop.serve();
            assert_eq!(
                handler.join().unwrap(),
                1,
                "the handler resumed before f ran"
            );
            assert_eq!(stop.f_runs.load(Ordering::Relaxed), 1);
            assert!(!stop.word.try_take(), "the word is idle again");
        });
    }
}

/// Set in the child process that runs the broken model.
const BROKEN_MODEL_CHILD: &str = "SAFEPOINT_LOOM_BROKEN_PARK_CHILD";

/// The model has teeth: with a futex whose check and sleep are two steps, the release's wake
/// can fall between them, and loom finds the handler asleep for ever.
#[test]
fn a_futex_that_checks_then_sleeps_in_two_steps_leaves_the_handler_asleep() {
    safepoint_loom_model::assert_deadlocks_in_child("broken_model_child", BROKEN_MODEL_CHILD);
}

/// The broken model; it runs only in the child started by the test above.
#[test]
fn broken_model_child() {
    safepoint_loom_model::model_in_child(BROKEN_MODEL_CHILD, || {
        let stop = Stop::new(ModelFutex::checking_then_sleeping_apart());
        let handler = {
            let stop = Arc::clone(&stop);
            loom::thread::spawn(move || stop.handler(0))
        };
        stop.serve();
        handler.join().unwrap();
    });
}
