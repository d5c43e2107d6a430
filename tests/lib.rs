//! Helpers for the integration tests in `all/`: the real plugins, loaded from the build
//! directory, runtimes with a safepoint timeout, a bounded `block_on`, and mutators.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use safepoint_host::plugin::{self, Plugin, SearchPath};
use safepoint_host::runtime::{self, Runtime, WaitGroup, WaitReason};
use safepoint_host::safepoint::OnTimeout;
use safepoint_host::safepoint::{acquire_world, for_each_p};
use safepoint_host::workloads::{self, RunOptions, RunSummary, work};

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
    let rt2 = Arc::clone(rt);
    within(rt, WATCHDOG, "the test", move || rt2.block_on(f))
        .unwrap_or_else(|hung| panic!("{hung}"))
}

/// `workloads::run(rt, options)`, failing the test with the run's error, or with the
/// watchdog's message if it has not returned after [`WATCHDOG`].
pub fn run_bounded(rt: &Arc<Runtime>, options: &RunOptions) -> RunSummary {
    run_within(rt, options, WATCHDOG).unwrap_or_else(|e| panic!("{e}"))
}

/// `workloads::run(rt, options)`, ended by a watchdog after `limit`: the error is the run's,
/// or the watchdog's message naming the workload, the strategy and the Ps, with the last
/// safepoint-timeout report and a goroutine dump.
pub fn run_within(
    rt: &Arc<Runtime>,
    options: &RunOptions,
    limit: Duration,
) -> Result<RunSummary, String> {
    let what = format!(
        "workload {} (strategy {}, {} Ps)",
        options.workload,
        rt.strategy_name(),
        rt.procs()
    );
    let (rt2, options) = (Arc::clone(rt), options.clone());
    within(rt, limit, &what, move || workloads::run(&rt2, &options))?
        .map_err(|e| format!("{what}: {e}"))
}

/// Runs `f` on a thread of its own and returns its result, or, if it has not returned after
/// `limit`, the watchdog's message: `what` did not finish, the last safepoint-timeout report
/// of `rt`, and its goroutine dump. A panic in `f` resumes on the caller.
pub fn within<R: Send + 'static>(
    rt: &Runtime,
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => Err(format!(
            "watchdog: {what} did not finish in {limit:?}\nlast safepoint timeout report:\n{}\ngoroutines:\n{}",
            rt.last_timeout_report()
                .map_or("none".to_owned(), |r| r.to_string()),
            rt.goroutine_dump()
        )),
    }
}

/// `rt.block_on(f)` for a test that expects a hang before its fix: after `limit`, reports
/// that `what` hung, with the goroutine dump, and ends the test process with status 101 (a
/// failed test). Not a panic: the hang may be in a lock that panicking needs (the panic
/// hook's backtrace lock), and a hung runtime cannot shut down.
pub fn block_on_or_exit<R: Send + 'static>(
    rt: &Arc<Runtime>,
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let rt2 = Arc::clone(rt);
    within(rt, limit, what, move || rt2.block_on(f)).unwrap_or_else(|hung| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "test failed: {hung}");
        std::process::exit(101)
    })
}

/// Polls `done` until it holds, failing the test after the watchdog's time.
pub fn await_condition(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WATCHDOG;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "watchdog: waited {WATCHDOG:?} for {what}"
        );
        std::thread::yield_now();
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

/// One zeroed counter per P.
pub fn per_p(procs: usize) -> Arc<[AtomicU64]> {
    (0..procs).map(|_| AtomicU64::new(0)).collect()
}

/// Runs `barriers` barriers from a goroutine of `rt`, after `ready()` (on that goroutine),
/// and checks after each that `f` ran exactly once more for every P; `observe(p)` runs
/// inside `f`. Returns how many Ps served themselves and how many the requester served.
pub fn checked_barriers(
    rt: &Arc<Runtime>,
    barriers: u64,
    ready: impl FnOnce() + Send + 'static,
    observe: impl Fn(usize) + Send + Sync + 'static,
) -> (u32, u32) {
    let procs = rt.procs();
    let counts = per_p(procs);
    let observe = Arc::new(observe);
    block_on_bounded(rt, move || {
        ready();
        let (mut by_themselves, mut by_requester) = (0, 0);
        for i in 1..=barriers {
            let world = acquire_world();
            let (c, observe) = (Arc::clone(&counts), Arc::clone(&observe));
            let report = for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                c[p.index()].fetch_add(1, Ordering::Relaxed);
                observe(p.index());
            })
            .unwrap_or_else(|e| panic!("{procs} Ps, barrier {i}: {e}"));
            assert_eq!(report.ps as usize, procs);
            for (p, n) in counts.iter().enumerate() {
                assert_eq!(
                    n.load(Ordering::Relaxed),
                    i,
                    "{procs} Ps: P{p} after barrier {i}"
                );
            }
            by_themselves += report.by_themselves;
            by_requester += report.by_requester;
        }
        (by_themselves, by_requester)
    })
}

/// The active strategy's counter `name`.
///
/// # Panics
///
/// If the strategy has no such counter.
pub fn counter(rt: &Runtime, name: &str) -> u64 {
    let counters = rt.strategy_counters();
    counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter `{name}` in {counters:?}"))
}

/// The runtime, once every clone of the handle is gone: `block_on_bounded`'s helper thread
/// drops its clone after it has handed over the result.
pub fn sole_owner(mut rt: Arc<Runtime>) -> Runtime {
    loop {
        match Arc::try_unwrap(rt) {
            Ok(rt) => return rt,
            Err(shared) => {
                rt = shared;
                std::thread::yield_now();
            }
        }
    }
}

/// Goroutines that each run `body` in a loop until stopped.
pub struct Loops {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    count: usize,
    done: WaitGroup,
}

impl Loops {
    /// Starts `count` goroutines; `body(x)` is one turn, returning the next `x`. `on_exit`
    /// runs on the goroutine once it stops.
    pub fn start(
        rt: &Runtime,
        count: usize,
        body: impl Fn(u64) -> u64 + Send + Sync + 'static,
        on_exit: impl Fn() + Send + Sync + 'static,
    ) -> Loops {
        let loops = Loops {
            stop: Arc::new(AtomicBool::new(false)),
            started: Arc::new(AtomicUsize::new(0)),
            count,
            done: WaitGroup::new(),
        };
        let (body, on_exit) = (Arc::new(body), Arc::new(on_exit));
        for i in 0..count {
            let (stop, started, done) = (
                Arc::clone(&loops.stop),
                Arc::clone(&loops.started),
                loops.done.clone(),
            );
            let (body, on_exit) = (Arc::clone(&body), Arc::clone(&on_exit));
            done.add(1);
            rt.spawn("loop", move || {
                started.fetch_add(1, Ordering::Release);
                let mut x = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    x = body(x);
                }
                std::hint::black_box(x);
                on_exit();
                done.done();
            });
        }
        loops
    }

    /// Runs `barriers` checked barriers ([`checked_barriers`]) once every loop has started,
    /// so that each runs on a P of its own for every barrier. Returns how many Ps served
    /// themselves and how many the requester served.
    pub fn barriers(
        &self,
        rt: &Arc<Runtime>,
        barriers: u64,
        observe: impl Fn(usize) + Send + Sync + 'static,
    ) -> (u32, u32) {
        let (started, count) = (Arc::clone(&self.started), self.count);
        let ready = move || {
            while started.load(Ordering::Acquire) < count {
                runtime::yield_now();
            }
        };
        checked_barriers(rt, barriers, ready, observe)
    }

    /// Asks the loops to stop after their current turn.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the loops to exit.
    pub fn wait(self) {
        self.done.wait();
    }

    /// Stops the loops and waits for them to exit.
    pub fn stop(self) {
        self.request_stop();
        self.wait();
    }
}

/// Runs `f` on a new thread pinned to one CPU (`sched_setaffinity`), and returns its result.
/// Every thread started from it inherits the mask, so a runtime built inside `f` has all its
/// Ms on that CPU: oversubscribed for real from 2 Ps on, whatever the machine. Other tests
/// keep every CPU.
pub fn on_one_cpu<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: a cpu_set_t is plain data, valid zeroed; CPU_ZERO and CPU_SET write inside
        // it; sched_setaffinity reads `size_of` bytes from it, for the calling thread (0).
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first_allowed_cpu(), &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// The lowest CPU the calling thread may run on.
fn first_allowed_cpu() -> usize {
    // SAFETY: as in `on_one_cpu`; sched_getaffinity writes at most `size_of` bytes into
    // the set, and CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(rc, 0, "sched_getaffinity");
        (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .expect("a thread may run on some CPU")
    }
}

/// Whether the calling thread blocks `signal`.
pub fn is_blocked(signal: libc::c_int) -> bool {
    // SAFETY: sigset_t is plain data the call fills; with a null new-set pointer,
    // pthread_sigmask only reports the mask.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        libc::sigismember(&mask, signal) == 1
    }
}

/// Blocks or unblocks `signal` for the calling thread. A goroutine may move to another M at
/// any safe point, and the mask is the thread's.
pub fn set_blocked(signal: libc::c_int, blocked: bool) {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; a null old-set
    // pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}
