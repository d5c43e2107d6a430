//! The M:N runtime: goroutines (G) run on OS threads (M) that hold logical processors (P).
//!
//! The scheduler is a small copy of Go's (`proc.go`): per-P run queues and a global one,
//! work stealing, idle Ps in a list and idle Ms asleep on their own condition variable,
//! blocking sections that leave their P in `Syscall` for sysmon to retake, and sysmon's
//! preemption of goroutines that run too long. See `sched.rs` for the M's loop.
//!
//! The runtime also owns its strategy, so that every layer above it only uses it:
//!
//! - the strategy slot and what fills it: [`ActiveStrategy`], built by any
//!   [`StrategyConstructor`] (`strategy.rs`, `strategy_slot.rs`), and the swap protocol
//!   (`swap.rs`);
//! - the host's side of the ABI: the [`Host`](safepoint_abi::Host) vtable the strategy calls
//!   back, with the exactly-once tally and the ownership checks of every `f(p)` (`host.rs`);
//! - a P's safe-point path and worldsema (`serve.rs`), the served-P policy (`served.rs`),
//!   and sysmon's safepoint timeout (`timeout.rs`), with the rate-limited log (`log.rs`).
//!
//! The order of the host's modules, each using only those before it: `sys`, `runtime`,
//! `safepoint`, `plugin`, `gc`, `trace`, `workloads`, `floor`, `compare`, the CLI.

mod current;
mod dump;
mod g;
pub(crate) mod host;
pub(crate) mod lock;
pub(crate) mod log;
mod m;
mod p;
mod preempt;
mod sched;
mod serve;
mod served;
pub(crate) mod status;
mod strategy;
mod strategy_slot;
mod swap;
mod sync;
mod time;
mod timeout;
pub mod trace;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use lock::{Condvar, Mutex};
use safepoint_abi::{PId, PStatus};

pub use current::{
    NoPreempt, blocking, current_goid, current_p_id, go, in_goroutine, no_preempt, poll, sleep,
    yield_now,
};
pub use g::GoId;
pub use status::{GStatus, WaitReason};
pub use sync::{Chan, Sema, WaitGroup};

pub(crate) use current::{
    at_async_safe_point, current_g, current_m, current_p, shared_of_current,
    waiting_on_system_stack, without_async_safe_point,
};
pub(crate) use g::G;
pub(crate) use m::M;
pub(crate) use p::{P, poll_bits};
pub(crate) use preempt::{TrySuspend, suspend_g, suspend_running_on, try_suspend_g};
pub(crate) use sched::ready;
pub(crate) use status::backoff;
pub use strategy::{ActiveStrategy, StrategyConstructor};
pub(crate) use swap::swap;
pub use swap::{SwapError, SwapReport};

pub(crate) use host::{Tally, host_ref};
use log::RateLimit;
use sched::Sched;
pub use serve::{WorldGuard, acquire_world};
pub(crate) use served::Gate;
pub use served::{ServedPs, ServedPsStats};
use strategy_slot::StrategySlot;
use time::Timers;
pub(crate) use timeout::{BarrierWatch, SafepointConfig, check_timeout};
pub use timeout::{LateP, OnTimeout, TIMEOUT_EXIT_STATUS, TimeoutReport};

/// Default size of a goroutine stack.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// State shared by every M of one runtime.
pub(crate) struct Shared {
    /// Go's `allp`. Leaked: Ps live as long as the process, so that an M may keep a
    /// `&'static P` in a thread-local without reference counting on the poll path.
    pub(crate) ps: &'static [P],
    pub(crate) sched: Mutex<Sched>,
    /// Every goroutine not yet dead, for the dump.
    pub(crate) allgs: Mutex<HashMap<GoId, Arc<G>>>,
    next_goid: AtomicU64,
    next_mid: AtomicU32,
    /// Every M's thread, joined at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) all_ms: Mutex<Vec<Arc<M>>>,
    /// Held while Ms join or leave, and while a swap attaches them to a new strategy, so
    /// that every M is attached to the active strategy exactly once.
    pub(crate) strategy_switch: Mutex<()>,
    /// The active strategy (see `strategy_slot.rs`).
    pub(crate) strategy: StrategySlot,
    pub(crate) worldsema: Sema,
    pub(crate) timers: Timers,
    pub(crate) stack_size: usize,
    pub(crate) safepoint: SafepointConfig,
    /// The served-P policy and the futex its waiting Ms sleep on.
    pub(crate) served: Gate,
    pub(crate) shutting_down: AtomicBool,
    sysmon_stop: (Mutex<bool>, Condvar),
    /// The barrier in flight, for sysmon's timeout check.
    pub(crate) in_flight: BarrierWatch,
    /// The host's count of `f`'s calls in the barrier in flight (reused by every barrier).
    pub(crate) tally: Arc<Tally>,
    pub(crate) last_timeout_report: Mutex<Option<TimeoutReport>>,
    /// Barrier tracing, if the runtime was built with it (see `trace.rs`).
    pub(crate) trace: Option<Arc<trace::Tracer>>,
    /// The limit on plugin log lines (`Host::log`) and the host's own lines about plugins.
    pub(crate) log_limit: RateLimit,
}

impl Shared {
    pub(crate) fn p(&self, id: PId) -> &'static P {
        &self.ps[id.index()]
    }

    /// The active strategy. Panics before `build` installed one.
    pub(crate) fn strategy(&self) -> Arc<ActiveStrategy> {
        self.strategy
            .get()
            .expect("no strategy installed in this runtime")
    }

    /// Calls `f` with the active strategy, without touching its reference count (a line every
    /// P shares): for a P's safe point, and for reading a field. `f` must not switch
    /// goroutines.
    pub(crate) fn with_strategy<R>(&self, f: impl FnOnce(&ActiveStrategy) -> R) -> R {
        self.strategy
            .with(|strategy| f(strategy.expect("no strategy installed in this runtime")))
    }

    /// A new M joins: it is listed and attached to the active strategy.
    pub(crate) fn add_m(&self, m: &Arc<M>) {
        let _switch = self.strategy_switch.lock();
        self.all_ms.lock().push(Arc::clone(m));
        let strategy = self.strategy();
        let thread = *m
            .thread
            .get()
            .expect("an M knows its thread before it joins");
        if let Err(e) = strategy.object.attach_thread(m.id, thread).into_result() {
            log::write_line(format_args!(
                "safepoint: strategy {} failed to attach {}: {e}",
                strategy.name, m.id
            ));
        }
    }

    /// An M leaves at shutdown: unlisted and detached from the active strategy.
    pub(crate) fn retire_m(&self, m: &Arc<M>) {
        let _switch = self.strategy_switch.lock();
        self.all_ms.lock().retain(|other| !Arc::ptr_eq(other, m));
        if let Some(strategy) = self.strategy.get()
            && let Err(e) = strategy.object.detach_thread(m.id).into_result()
        {
            log::write_line(format_args!(
                "safepoint: strategy {} failed to detach {}: {e}",
                strategy.name, m.id
            ));
        }
    }

    pub(crate) fn m_by_id(&self, id: safepoint_abi::MId) -> Option<Arc<M>> {
        self.all_ms.lock().iter().find(|m| m.id == id).cloned()
    }

    pub(crate) fn g_by_id(&self, id: GoId) -> Option<Arc<G>> {
        self.allgs.lock().get(&id).cloned()
    }
}

/// Builds a [`Runtime`].
#[derive(Debug)]
pub struct Builder {
    procs: usize,
    stack_size: usize,
    safepoint: SafepointConfig,
    served_ps: ServedPs,
    trace: Option<usize>,
}

impl Builder {
    /// The number of Ps, Go's GOMAXPROCS. Default: the number of CPUs.
    pub fn procs(mut self, procs: usize) -> Builder {
        self.procs = procs;
        self
    }

    /// The size of each goroutine's stack. Default: [`DEFAULT_STACK_SIZE`].
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Report a barrier that has not completed after `timeout` (off by default), then keep
    /// waiting or abort, as `on_timeout` says.
    pub fn safepoint_timeout(
        mut self,
        timeout: Option<Duration>,
        on_timeout: OnTimeout,
    ) -> Builder {
        self.safepoint.timeout = timeout;
        self.safepoint.on_timeout = on_timeout;
        self
    }

    /// Whether each barrier reads the requester's thread CPU clock, for
    /// `BarrierReport::requester_cpu` (default: yes). The clock is a system call of a few
    /// hundred nanoseconds on each side of the barrier, outside its measured time; benchmarks
    /// of back-to-back barriers turn it off.
    pub fn measure_requester_cpu(mut self, on: bool) -> Builder {
        self.safepoint.requester_cpu = on;
        self
    }

    /// What the M of a P that has been served does while the barrier is still in flight
    /// (default: [`ServedPs::Auto`]: wait when oversubscribed, run otherwise).
    pub fn served_ps(mut self, policy: ServedPs) -> Builder {
        self.served_ps = policy;
        self
    }

    /// Records barrier events (off by default): each P and the requester keep the last
    /// `events` events in a ring of their own, read with [`Runtime::trace`]. Off, each
    /// event costs one load and a branch; on, a clock read and a few atomic stores.
    /// [`trace::DEFAULT_CAPACITY`] is a good size.
    pub fn trace(mut self, events: usize) -> Builder {
        self.trace = Some(events);
        self
    }

    /// Starts the runtime with the strategy that `strategy` constructs (a loaded
    /// `plugin::Plugin`, say), configured by `config` (the text after `NAME:` in
    /// `--strategy`).
    pub fn build<C: StrategyConstructor + ?Sized>(
        self,
        strategy: &C,
        config: &str,
    ) -> Result<Runtime, C::Error> {
        assert!(self.procs > 0, "a runtime needs at least one P");
        let ps: Vec<P> = (0..self.procs).map(|i| P::new(PId(i as u32))).collect();
        let ps: &'static [P] = Box::leak(ps.into_boxed_slice());
        let shared = Arc::new(Shared {
            ps,
            sched: Mutex::new(Sched::default()),
            allgs: Mutex::new(HashMap::new()),
            next_goid: AtomicU64::new(1),
            next_mid: AtomicU32::new(0),
            threads: Mutex::new(Vec::new()),
            all_ms: Mutex::new(Vec::new()),
            strategy_switch: Mutex::new(()),
            strategy: StrategySlot::empty(),
            worldsema: Sema::new(1),
            timers: Timers::default(),
            stack_size: self.stack_size,
            safepoint: self.safepoint,
            served: Gate::new(self.served_ps),
            shutting_down: AtomicBool::new(false),
            sysmon_stop: (Mutex::new(false), Condvar::new()),
            in_flight: BarrierWatch::default(),
            tally: Arc::new(Tally::new(ps, Arc::default())),
            last_timeout_report: Mutex::new(None),
            trace: self
                .trace
                .map(|events| Arc::new(trace::Tracer::new(self.procs, events))),
            log_limit: RateLimit::default(),
        });
        let strategy = strategy.construct(host_ref(&shared), config)?;
        shared.strategy.replace(Some(Arc::new(strategy)));
        for p in shared.ps {
            shared.sched.lock().idle_ps.push(p.id);
        }
        time::start_timer_thread(&shared);
        sched::start_sysmon(&shared);
        Ok(Runtime { shared })
    }
}

/// A running runtime. Dropping it shuts it down: see [`Runtime::shutdown`].
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder {
            procs: std::thread::available_parallelism().map_or(1, usize::from),
            stack_size: DEFAULT_STACK_SIZE,
            safepoint: SafepointConfig::default(),
            served_ps: ServedPs::default(),
            trace: None,
        }
    }

    /// The number of Ps.
    pub fn procs(&self) -> usize {
        self.shared.ps.len()
    }

    /// The name of the active strategy.
    pub fn strategy_name(&self) -> String {
        self.shared.with_strategy(|s| s.name.clone())
    }

    /// Go's `go f()`: starts a goroutine named `name`.
    pub fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) -> GoId {
        sched::spawn(&self.shared, name, f)
    }

    /// Runs `f` as a goroutine and blocks the calling OS thread until it returns, then
    /// returns its result. A panic in `f` resumes on the caller.
    pub fn block_on<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let done = Arc::new((Mutex::new(None), Condvar::new()));
        let done2 = Arc::clone(&done);
        self.spawn("main", move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            *done2.0.lock() = Some(result);
            done2.1.notify_all();
        });
        let mut slot = done.0.lock();
        while slot.is_none() {
            done.1.wait(&mut slot);
        }
        match slot.take().expect("result present") {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Go's goroutine dump: one entry per live goroutine, `goroutine N [status]:`.
    pub fn goroutine_dump(&self) -> String {
        dump::goroutine_dump(&self.shared)
    }

    /// The status of goroutine `id`, or `None` once it has finished.
    pub fn goroutine_status(&self, id: GoId) -> Option<GStatus> {
        self.shared.g_by_id(id).map(|g| g.status.load())
    }

    /// The status of each P, by index.
    pub fn p_statuses(&self) -> Vec<PStatus> {
        self.shared.ps.iter().map(|p| p.status.load()).collect()
    }

    /// The last safepoint-timeout report, if a barrier ever ran past the timeout.
    pub fn last_timeout_report(&self) -> Option<TimeoutReport> {
        self.shared.last_timeout_report.lock().clone()
    }

    /// What the barrier tracer holds now; `None` if the runtime was built without
    /// [`Builder::trace`].
    pub fn trace(&self) -> Option<trace::Trace> {
        self.shared.trace.as_ref().map(|t| t.read())
    }

    /// The served-P policy, and what it has done so far.
    pub fn served_ps(&self) -> (ServedPs, ServedPsStats) {
        (self.shared.served.policy(), self.shared.served.stats())
    }

    /// How many Ms wait, now, for a barrier to end (the served-P policy's `wait`).
    pub fn served_ps_waiting(&self) -> u32 {
        self.shared.served.waiters()
    }

    /// The capabilities of the active strategy.
    pub fn strategy_capabilities(&self) -> safepoint_abi::Capabilities {
        self.shared.with_strategy(|s| s.capabilities)
    }

    /// Counters of the active strategy, for the run summary.
    pub fn strategy_counters(&self) -> Vec<(String, u64)> {
        self.shared
            .strategy()
            .object
            .counters()
            .into_iter()
            .map(|c| (c.name.into_string(), c.value))
            .collect()
    }

    /// Stops the runtime and joins every M.
    ///
    /// Goroutines still running must reach a scheduling point (a `poll()` will do: shutdown
    /// arms every P's preempt bit); goroutines still blocked are abandoned without unwinding,
    /// as Go does at exit. Then the strategy's `shutdown()` runs.
    pub fn shutdown(self) {
        drop(self);
    }

    fn shutdown_inner(&self) {
        let on_own_m = current::current_m().is_some_and(|m| Arc::ptr_eq(&m.shared, &self.shared));
        if on_own_m {
            // Dropped by one of its own goroutines: this M cannot join itself. Another thread
            // waits for every M, this one included once its goroutine returns.
            let shared = Arc::clone(&self.shared);
            std::thread::spawn(move || shutdown(&shared));
        } else {
            shutdown(&self.shared);
        }
    }
}

fn shutdown(shared: &Arc<Shared>) {
    if shared.shutting_down.swap(true, Ordering::SeqCst) {
        return;
    }
    *shared.sysmon_stop.0.lock() = true;
    shared.sysmon_stop.1.notify_all();
    time::stop_timer_thread(shared);
    sched::wake_all_for_exit(shared);
    loop {
        let threads: Vec<_> = std::mem::take(&mut *shared.threads.lock());
        if threads.is_empty() {
            break;
        }
        for t in threads {
            // An M that panicked already printed its message; keep shutting down.
            let _ = t.join();
        }
    }
    if let Some(strategy) = shared.strategy.replace(None)
        && let Err(e) = strategy.object.shutdown().into_result()
    {
        log::write_line(format_args!(
            "safepoint: strategy {} failed to shut down: {e}",
            strategy.name
        ));
    }
    log::report_suppressed(shared.log_limit.take_suppressed());
    for p in shared.ps {
        p.status.store(PStatus::Dead);
        p.runq.lock().clear();
    }
    shared.sched.lock().clear();
    shared.all_ms.lock().clear();
    for (_, g) in shared.allgs.lock().drain() {
        g.abandon_stack();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("procs", &self.procs())
            .field("strategy", &self.strategy_name())
            .finish()
    }
}
