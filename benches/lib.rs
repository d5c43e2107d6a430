//! Shared setup for the criterion benchmarks in `benches/`: runtimes under a workload, and
//! the raw hardware floors each strategy is compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use safepoint_host::plugin::{self, Plugin, SearchPath};
use safepoint_host::runtime::{self, Runtime, WaitGroup, WaitReason};
use safepoint_host::safepoint::{acquire_world, for_each_p};
use safepoint_host::workload::work;

/// Every shipped strategy that is built.
pub fn shipped_strategies() -> Vec<Plugin> {
    ["polling", "signal"]
        .iter()
        .map(|name| plugin::load(name, &SearchPath::default()).expect("load a shipped strategy"))
        .collect()
}

/// A runtime of `procs` Ps with `procs - 1` goroutines computing and polling.
pub struct PollingWorkload {
    rt: Runtime,
    stop: Arc<AtomicBool>,
    done: WaitGroup,
}

impl PollingWorkload {
    /// Starts the runtime and its mutators.
    pub fn start(plugin: &Plugin, procs: usize) -> PollingWorkload {
        let rt = Runtime::builder()
            .procs(procs)
            .build(plugin, "")
            .expect("start the runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let done = WaitGroup::new();
        for i in 0..procs - 1 {
            let (stop, done) = (Arc::clone(&stop), done.clone());
            done.add(1);
            rt.spawn("poller", move || {
                let mut x = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    x = work(x);
                    runtime::poll();
                }
                std::hint::black_box(x);
                done.done();
            });
        }
        PollingWorkload { rt, stop, done }
    }

    /// The wall time of `iters` barriers, performed back to back by one goroutine.
    pub fn barriers(&self, iters: u64) -> Duration {
        self.rt.block_on(move || {
            let start = Instant::now();
            for _ in 0..iters {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |p| {
                    std::hint::black_box(p);
                })
                .expect("barrier");
            }
            start.elapsed()
        })
    }

    /// Stops the mutators and the runtime.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        self.rt.shutdown();
    }
}

/// The polling floor: `iters` round trips of a cache line between two threads, each side
/// spinning on the other's write.
pub fn cache_line_round_trips(iters: u64) -> Duration {
    let line = Arc::new(AtomicU64::new(0));
    let echo = {
        let line = Arc::clone(&line);
        std::thread::spawn(move || {
            for i in 0..iters {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let start = Instant::now();
    for i in 0..iters {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread");
    elapsed
}

/// The signal floor: `iters` round trips of a signal, sent with `tgkill` to a thread that
/// spins, whose handler bumps a counter that the sender spins on. Uses SIGUSR1 (with the
/// previous disposition restored after), so as not to disturb a signal strategy's SIGURG.
pub fn signal_round_trips(iters: u64) -> Duration {
    static HANDLED: AtomicU64 = AtomicU64::new(0);
    extern "C" fn on_signal(_signal: libc::c_int) {
        HANDLED.fetch_add(1, Ordering::Release);
    }
    // SAFETY: sigaction is plain data; the handler is async-signal-safe (one atomic add)
    // and of the signature its flags (no SA_SIGINFO) call for; `previous` is filled by the
    // call and put back below.
    let previous = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        let mut previous: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGUSR1, &action, &mut previous);
        previous
    };
    let tid = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let (tid, stop) = (Arc::clone(&tid), Arc::clone(&stop));
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() } as u64, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    while tid.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let target = tid.load(Ordering::Acquire) as libc::pid_t;
    let start = Instant::now();
    for _ in 0..iters {
        let before = HANDLED.load(Ordering::Acquire);
        // SAFETY: tgkill takes plain integers; the target thread lives until `stop`.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), target, libc::SIGUSR1) };
        while HANDLED.load(Ordering::Acquire) == before {
            std::hint::spin_loop();
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    spinner.join().expect("spinner thread");
    // SAFETY: `previous` is the disposition sigaction reported above.
    unsafe { libc::sigaction(libc::SIGUSR1, &previous, std::ptr::null_mut()) };
    elapsed
}
