//! Helpers for the integration tests in `all/`: the real plugins, loaded from the build
//! directory, runtimes with a safepoint timeout, a bounded `block_on`, and mutators.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use safepoint_host::plugin::{self, Plugin, SearchPath};
use safepoint_host::runtime::{self, Runtime, WaitGroup};
use safepoint_host::safepoint::OnTimeout;
use safepoint_host::workload::work;

/// The P counts every concurrency test runs at: below, at and above the core count.
pub const P_COUNTS: [usize; 4] = [1, 2, 4, 8];

/// How long a test may take before the watchdog fails it with a goroutine dump.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// The `.so` built from the workspace crate whose library is `lib_name`.
pub fn plugin_file(lib_name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("test executable directory");
    let path = deps.join(format!("lib{lib_name}.so"));
    assert!(
        path.is_file(),
        "{} was not built; run the tests with cargo test",
        path.display()
    );
    path
}

/// Every shipped strategy.
pub const SHIPPED: &[&str] = &["polling", "futex", "signal"];

/// A shipped strategy, found by name through the default search path.
pub fn shipped(name: &str) -> Plugin {
    plugin::load(name, &SearchPath::default())
        .unwrap_or_else(|e| panic!("load the {name} plugin: {e}"))
}

/// The shipped polling strategy.
pub fn polling() -> Plugin {
    shipped("polling")
}

/// The test plugin that breaks the contract on request.
pub fn misbehave() -> Plugin {
    plugin::load_path(&plugin_file("safepoint_test_misbehave")).expect("load the misbehave plugin")
}

/// A runtime of `procs` Ps whose barriers report themselves after 5 s.
pub fn runtime(plugin: &Plugin, config: &str, procs: usize) -> Arc<Runtime> {
    let rt = Runtime::builder()
        .procs(procs)
        .safepoint_timeout(Some(Duration::from_secs(5)), OnTimeout::Report)
        .build(plugin, config)
        .unwrap_or_else(|e| panic!("cannot start {} with {procs} Ps: {e}", plugin.name()));
    Arc::new(rt)
}

/// `rt.block_on(f)`, failing the test with a goroutine dump if `f` has not returned after
/// [`WATCHDOG`].
pub fn block_on_bounded<R: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let rt2 = Arc::clone(rt);
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt2.block_on(f)));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!(
            "watchdog: the test did not finish in {WATCHDOG:?}\nlast safepoint timeout report:\n{}\ngoroutines:\n{}",
            rt.last_timeout_report()
                .map_or("none".to_owned(), |r| r.to_string()),
            rt.goroutine_dump()
        ),
    }
}

/// Mutator goroutines of each kind, running until [`Mutators::stop`].
pub struct Mutators {
    stop: Arc<AtomicBool>,
    done: WaitGroup,
}

/// What a mutator goroutine does in its loop.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Computes and polls.
    Poller,
    /// Sits in `blocking` (a real nanosleep) most of the time: its P is in `Syscall`.
    Blocker,
    /// Parks in `sleep`: its P goes idle.
    Sleeper,
    /// Joins and leaves: spawns short-lived goroutines that yield and exit.
    Churner,
}

impl Kind {
    /// One turn of the kind's loop; `x` is the running result of a poller's work.
    pub fn step(self, x: u64) -> u64 {
        match self {
            Kind::Poller => return work(x),
            Kind::Blocker => runtime::blocking(|| std::thread::sleep(Duration::from_micros(30))),
            Kind::Sleeper => runtime::sleep(Duration::from_micros(50)),
            Kind::Churner => {
                let child = WaitGroup::new();
                child.add(1);
                let c = child.clone();
                runtime::go("churn", move || {
                    runtime::yield_now();
                    c.done();
                });
                child.wait();
            }
        }
        x
    }
}

impl Mutators {
    /// Starts one goroutine per entry of `kinds`, each running `body` between its kind's
    /// actions (pass `|_| {}` for none).
    pub fn start(
        rt: &Runtime,
        kinds: &[Kind],
        body: impl Fn(u64) + Send + Sync + 'static,
    ) -> Mutators {
        let stop = Arc::new(AtomicBool::new(false));
        let done = WaitGroup::new();
        let body = Arc::new(body);
        for (i, &kind) in kinds.iter().enumerate() {
            let (stop, done, body) = (Arc::clone(&stop), done.clone(), Arc::clone(&body));
            done.add(1);
            rt.spawn(&format!("{kind:?}"), move || {
                let mut x = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    x = kind.step(x);
                    body(x);
                    runtime::poll();
                }
                done.done();
            });
        }
        Mutators { stop, done }
    }

    /// Stops every mutator and waits for them to exit.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
    }
}

/// A mix of every kind for a runtime of `procs` Ps: running, syscall and idle Ps at once.
pub fn mixed_kinds(procs: usize) -> Vec<Kind> {
    let all = [Kind::Poller, Kind::Blocker, Kind::Sleeper, Kind::Churner];
    (0..procs.max(2)).map(|i| all[i % all.len()]).collect()
}

/// One test module per strategy, each with one `#[test]` per function named: for
/// `strategies: [polling], tests: [runs_once]` it makes `polling::runs_once`, which calls
/// `super::runs_once(&shipped("polling"))`.
#[macro_export]
macro_rules! strategy_tests {
    (strategies: [$($strategy:ident),* $(,)?], tests: $tests:tt) => {
        $($crate::strategy_tests!(@one $strategy $tests);)*
    };
    (@one $strategy:ident [$($test:ident),* $(,)?]) => {
        mod $strategy {
            $(
                #[test]
                fn $test() {
                    super::$test(&$crate::shipped(stringify!($strategy)));
                }
            )*
        }
    };
}
