//! Test doubles for the kit's protocols.
//!
//! - A loom model of the kit's futex, for the loom models of the protocols written over
//!   [`Word`] and [`Wake`]: `kit/tests/` (the pending count, the pending words) and
//!   `strategies/signal/tests/` (the park word). Each model runs the protocol's very code
//!   with these in place of `AtomicU32` and the kernel's futex.
//! - [`FakeHost`], a host of Ps with set statuses, for `PendingPs`'s tests and its model.

use std::time::Duration;

mod host;

pub use host::FakeHost;

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};
use safepoint_kit::futex::{WaitResult, Wake, Word};

/// loom's atomic as the protocol's word.
pub struct ModelWord(pub AtomicU32);

impl Word for ModelWord {
    fn new(value: u32) -> ModelWord {
        ModelWord(AtomicU32::new(value))
    }

    fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }

    fn store(&self, value: u32, order: Ordering) {
        self.0.store(value, order);
    }

    fn fetch_or(&self, bits: u32, order: Ordering) -> u32 {
        self.0.fetch_or(bits, order)
    }

    fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
        self.0.fetch_sub(value, order)
    }

    fn swap(&self, value: u32, order: Ordering) -> u32 {
        self.0.swap(value, order)
    }

    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.0.compare_exchange(current, new, success, failure)
    }
}

/// A futex: `wait` compares the word and sleeps under a mutex that `wake` also takes, so a
/// wake that follows a change of the word either finds the sleeper asleep or the sleeper
/// finds the word changed, as the kernel's hash-bucket lock guarantees for `FUTEX_WAIT`. The
/// comparison is a relaxed load: the lock is all the ordering the model grants.
///
/// A timed wait, with `timeouts`, times out at once instead of sleeping: loom has no clock,
/// and this is the worst case for the re-poke path. Without `timeouts` a timed wait sleeps as
/// an untimed one, so only a wake can end it.
pub struct ModelFutex {
    lock: Mutex<()>,
    sleeper: Condvar,
    /// Timed waits time out at once (see above).
    timeouts: bool,
    /// A broken futex for the negative tests: it checks the word, lets go of the lock, and
    /// only then sleeps.
    check_then_sleep_apart: bool,
}

impl ModelFutex {
    /// A futex that keeps its guarantee, whose timed waits sleep as untimed ones.
    pub fn new() -> ModelFutex {
        ModelFutex {
            lock: Mutex::new(()),
            sleeper: Condvar::new(),
            timeouts: false,
            check_then_sleep_apart: false,
        }
    }

    /// A futex whose timed waits time out at once.
    pub fn with_timeouts() -> ModelFutex {
        ModelFutex {
            timeouts: true,
            ..ModelFutex::new()
        }
    }

    /// A broken futex, for a model's negative control: its check of the word and its sleep
    /// are two steps, so a wake can fall between them and be lost.
    pub fn checking_then_sleeping_apart() -> ModelFutex {
        ModelFutex {
            check_then_sleep_apart: true,
            ..ModelFutex::new()
        }
    }
}

impl Wake for ModelFutex {
    type Word = ModelWord;

    fn wait(&self, word: &ModelWord, expected: u32, timeout: Option<Duration>) -> WaitResult {
        let mut guard = self.lock.lock().unwrap();
        if word.0.load(Ordering::Relaxed) != expected {
            return WaitResult::Changed;
        }
        if self.timeouts && timeout.is_some() {
            drop(guard);
            loom::thread::yield_now();
            return WaitResult::TimedOut;
        }
        if self.check_then_sleep_apart {
            drop(guard);
            guard = self.lock.lock().unwrap();
        }
        drop(self.sleeper.wait(guard).unwrap());
        WaitResult::Woken
    }

    fn wake(&self, _word: &ModelWord) {
        let _guard = self.lock.lock().unwrap();
        self.sleeper.notify_one();
    }
}

impl Default for ModelFutex {
    fn default() -> Self {
        ModelFutex::new()
    }
}

/// Explores `model` with loom, but only in the child process that
/// [`assert_deadlocks_in_child`] starts (the variable `marker` set): the negative control's
/// own test, which passes at once in the parent.
pub fn model_in_child(marker: &str, model: impl Fn() + Sync + Send + 'static) {
    if std::env::var_os(marker).is_some() {
        loom::model(model);
    }
}

/// Runs the test `child` of the calling test binary in a child process, with the variable
/// `marker` set (so that `child` knows it should run its model), and checks that loom found a
/// deadlock there. loom aborts the process after a deadlock, so a negative control, a model
/// that must deadlock, runs in a child.
///
/// # Panics
///
/// If the child passed, or failed without loom's deadlock report.
pub fn assert_deadlocks_in_child(child: &str, marker: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .output()
        .expect("run the model in a child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken model passed:\n{stderr}");
    assert!(
        stderr.contains("deadlock; threads = ["),
        "loom did not report a thread asleep for ever:\n{stderr}"
    );
}
