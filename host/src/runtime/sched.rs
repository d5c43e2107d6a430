//! The scheduler: the M's loop, run queues, idle Ps and Ms, and sysmon.
//!
//! An M's loop (`mstart`):
//!
//! 1. Without a P, sleep in the idle-M list until `startm` hands one over (or shutdown).
//! 2. With a P: serve the safe point if armed, find a runnable G (local queue, global
//!    queue, steal half of another P's queue), run it until it switches out.
//! 3. No work: give the P back to the idle list, and go to 1.
//!
//! Every transition of a P away from `Running` by its owner goes through the parking
//! protocol of `safepoint/README.md`: serve the safe point, change the status, re-check the
//! poll word, and take the P back if a requester armed it meanwhile.

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use safepoint_abi::{MId, PId, PStatus};

use super::Shared;
use super::current::{self, current_m};
use super::g::{G, GoId, NO_M, Switch};
use super::m::{M, Wake};
use super::p::{P, poll_bits};
use super::serve as safe_point;
use super::status::{GStatus, backoff};
use super::trace::ReachedBy;
use crate::sys::{self, GStack, Resumed, Suspender};

/// Global scheduler state, under `Shared::sched`.
#[derive(Default)]
pub(crate) struct Sched {
    /// The global run queue.
    pub(crate) runq: VecDeque<Arc<G>>,
    /// Ps that no M holds.
    pub(crate) idle_ps: Vec<PId>,
    /// Ms asleep, waiting for a P.
    idle_ms: Vec<Arc<M>>,
}

impl Sched {
    pub(crate) fn clear(&mut self) {
        self.runq.clear();
        self.idle_ps.clear();
        self.idle_ms.clear();
    }
}

/// Go's `newproc`.
pub(crate) fn spawn(shared: &Arc<Shared>, name: &str, f: impl FnOnce() + Send + 'static) -> GoId {
    let id = GoId(shared.next_goid.fetch_add(1, Ordering::Relaxed));
    let g = Arc::new(G::new(id, name.to_owned()));
    let weak = Arc::downgrade(&g);
    let name_for_panic = name.to_owned();
    let stack = GStack::new(shared.stack_size, move |suspender: Suspender<Switch>| {
        if let Some(g) = weak.upgrade() {
            g.set_suspender(suspender);
        }
        drop(weak);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            goroutine_panicked(id, &name_for_panic, payload.as_ref());
        }
    })
    .unwrap_or_else(|e| {
        panic!(
            "cannot allocate a {}-byte goroutine stack: {e}",
            shared.stack_size
        )
    });
    g.set_stack(stack);
    shared.allgs.lock().insert(id, Arc::clone(&g));
    g.cas_status(GStatus::Idle, GStatus::Runnable);
    runqput(shared, g);
    wakep(shared);
    id
}

/// As Go does: a panic that no goroutine recovers ends the program.
fn goroutine_panicked(id: GoId, name: &str, payload: &(dyn std::any::Any + Send)) -> ! {
    let msg = safepoint_kit::panic::message(payload);
    // Straight to the stream: `eprintln!` output may be captured (by the test harness) and
    // lost with the process.
    let _ = writeln!(
        std::io::stderr(),
        "panic: {msg}\n\n{id} [running]:\n\t{name}\n"
    );
    std::process::abort();
}

/// Puts `g` on the calling M's P's queue if the caller runs on this runtime, else on the
/// global queue.
fn runqput(shared: &Arc<Shared>, g: Arc<G>) {
    if let (Some(m), Some(p)) = (current_m(), current::current_p())
        && Arc::ptr_eq(&m.shared, shared)
    {
        p.runq.lock().push_back(g);
        return;
    }
    shared.sched.lock().runq.push_back(g);
}

/// Go's `ready`: a waiting goroutine becomes runnable.
pub(crate) fn ready(shared: &Arc<Shared>, g: Arc<G>) {
    match g.status.load() {
        GStatus::Waiting(reason) => g.cas_status(GStatus::Waiting(reason), GStatus::Runnable),
        other => panic!("ready: {} is {other}, not waiting", g.id),
    }
    runqput(shared, g);
    wakep(shared);
}

/// Go's `wakep`: if a P is idle, start an M on it to look for work.
pub(crate) fn wakep(shared: &Arc<Shared>) {
    let p = {
        let mut sched = shared.sched.lock();
        if shared.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        match sched.idle_ps.pop() {
            Some(p) => p,
            None => return,
        }
    };
    startm(shared, p);
}

/// Go's `startm`: runs an idle M (or a new one) with `p`.
fn startm(shared: &Arc<Shared>, p: PId) {
    let idle = shared.sched.lock().idle_ms.pop();
    match idle {
        Some(m) => m.wake(Wake::WithP(p)),
        None => new_m(shared, p),
    }
}

fn new_m(shared: &Arc<Shared>, p: PId) {
    let id = MId(shared.next_mid.fetch_add(1, Ordering::Relaxed));
    let m = Arc::new(M::new(id, Arc::clone(shared)));
    let handle = std::thread::Builder::new()
        .name(format!("safepoint-{id}"))
        .spawn(move || mstart(m, p))
        .unwrap_or_else(|e| panic!("cannot start {id}: {e}"));
    shared.threads.lock().push(handle);
}

/// The body of every M's thread.
fn mstart(m: Arc<M>, p: PId) {
    let shared = Arc::clone(&m.shared);
    current::enter_m(Some(Arc::clone(&m)));
    let _ = m.thread.set(sys::current_os_thread());
    let alt_stack = sys::AltStack::install()
        .unwrap_or_else(|e| panic!("{}: cannot install an alternate signal stack: {e}", m.id));
    shared.add_m(&m);
    acquirep(&m, p);
    loop {
        if m.p().is_none() {
            match stopm(&m) {
                Some(p) => acquirep(&m, p),
                None => break,
            }
        }
        schedule(&m);
    }
    shared.retire_m(&m);
    drop(alt_stack);
    current::enter_m(None);
}

/// Go's `stopm`: sleeps until handed a P. `None` at shutdown.
fn stopm(m: &Arc<M>) -> Option<PId> {
    {
        let mut sched = m.shared.sched.lock();
        if m.shared.shutting_down.load(Ordering::Relaxed) {
            return None;
        }
        sched.idle_ms.push(Arc::clone(m));
    }
    match m.sleep() {
        Wake::WithP(p) => Some(p),
        Wake::Exit | Wake::Asleep => None,
    }
}

/// At shutdown: wakes every idle M to exit and asks every running goroutine to yield.
pub(crate) fn wake_all_for_exit(shared: &Shared) {
    for p in shared.ps {
        p.arm(poll_bits::PREEMPT);
    }
    let idle: Vec<_> = std::mem::take(&mut shared.sched.lock().idle_ms);
    for m in idle {
        m.wake(Wake::Exit);
    }
}

/// Go's `acquirep`: the M takes an idle P. Waits while a requester has it stopped.
fn acquirep(m: &Arc<M>, id: PId) {
    let p = m.shared.p(id);
    let mut spins = 0;
    loop {
        match p.status.cas(PStatus::Idle, PStatus::Running) {
            Ok(()) => break,
            Err(PStatus::GcStop) => backoff(&mut spins),
            Err(other) => panic!("acquirep: {} is {other}, not idle", p.id),
        }
    }
    wire_p(m, p);
}

/// Records that `m` holds `p` (which it has just made `Running`).
pub(crate) fn wire_p(m: &M, p: &'static P) {
    p.set_m(Some(m.id));
    m.set_p(Some(p.id));
    current::set_p(Some(p));
}

/// Records that `m` no longer holds a P.
pub(crate) fn unwire_p(m: &M) {
    m.set_p(None);
    current::set_p(None);
}

/// One turn of the M's loop while it holds a P.
fn schedule(m: &Arc<M>) {
    let shared = &m.shared;
    let p = current::current_p().expect("schedule: M holds no P");
    if shared.shutting_down.load(Ordering::Relaxed) {
        go_idle(m, p, true);
        return;
    }
    // Whether or not this serve ran `f`: a P that a requester served while it was idle, and
    // that this M has just taken, gives way too.
    safe_point::serve(shared, p, ReachedBy::Transition);
    safe_point::give_way(shared, p);
    match find_runnable(shared, p) {
        Some(g) => execute(m, p, g),
        None => go_idle(m, p, false),
    }
}

fn find_runnable(shared: &Shared, p: &P) -> Option<Arc<G>> {
    // Every 61st turn the global queue goes first, so it cannot starve (as in Go).
    if p.sched_tick.load(Ordering::Relaxed).is_multiple_of(61)
        && let Some(g) = shared.sched.lock().runq.pop_front()
    {
        return Some(g);
    }
    if let Some(g) = p.runq.lock().pop_front() {
        return Some(g);
    }
    if let Some(g) = shared.sched.lock().runq.pop_front() {
        return Some(g);
    }
    steal(shared, p)
}

/// Takes half of the first non-empty run queue of another P.
fn steal(shared: &Shared, thief: &P) -> Option<Arc<G>> {
    let n = shared.ps.len();
    for i in 1..n {
        let victim = &shared.ps[(thief.id.index() + i) % n];
        let mut stolen: Vec<Arc<G>> = {
            let mut q = victim.runq.lock();
            let take = q.len().div_ceil(2);
            let keep = q.len() - take;
            q.drain(keep..).collect()
        };
        if let Some(first) = stolen.pop() {
            thief.runq.lock().extend(stolen);
            return Some(first);
        }
    }
    None
}

/// Go's `execute`: runs `g` until it switches out, then files it where it belongs.
fn execute(m: &Arc<M>, p: &'static P, g: Arc<G>) {
    let shared = &m.shared;
    g.cas_status(GStatus::Runnable, GStatus::Running);
    g.m.store(m.id.0, Ordering::Relaxed);
    *m.curg.lock() = Some(Arc::clone(&g));
    p.sched_tick.fetch_add(1, Ordering::Relaxed);
    p.disarm(poll_bits::PREEMPT);
    let mut stack = g.take_stack();
    current::set_user_code(true);
    let outcome = stack.resume();
    current::set_user_code(false);
    g.m.store(NO_M, Ordering::Relaxed);
    *m.curg.lock() = None;
    match outcome {
        Resumed::Finished => {
            g.cas_status(GStatus::Running, GStatus::Dead);
            shared.allgs.lock().remove(&g.id);
        }
        Resumed::Switched(switch) => {
            g.set_stack(stack);
            match switch {
                Switch::Yield => {
                    g.cas_status(GStatus::Running, GStatus::Runnable);
                    shared.sched.lock().runq.push_back(g);
                }
                Switch::Park(reason, unlock) => {
                    g.cas_status(GStatus::Running, GStatus::Waiting(reason));
                    unlock();
                }
                Switch::LostP => {
                    g.cas_status(GStatus::Syscall, GStatus::Runnable);
                    let mut sched = shared.sched.lock();
                    match sched.idle_ps.pop() {
                        Some(id) => {
                            drop(sched);
                            acquirep(m, id);
                            shared.p(id).runq.lock().push_front(g);
                        }
                        None => sched.runq.push_back(g),
                    }
                }
            }
        }
    }
}

/// The owner moves its P from `Running` to `to`, first serving any armed safe point; if a
/// requester armed the P after that, the owner takes it back and serves it (see
/// `safepoint/README.md`, "the parking race").
pub(crate) fn park_p(shared: &Shared, p: &P, to: PStatus) {
    loop {
        safe_point::serve(shared, p, ReachedBy::Transition);
        if let Err(cur) = p.status.cas(PStatus::Running, to) {
            panic!("park_p: {} is {cur}, expected it running", p.id);
        }
        if !p.safepoint_armed() || p.status.cas(to, PStatus::Running).is_err() {
            return;
        }
    }
}

/// Go's `handoffp` + `pidleput` for a P that has no work: the parking protocol under the
/// scheduler lock, so that work queued meanwhile is not stranded.
fn go_idle(m: &Arc<M>, p: &'static P, shutting_down: bool) {
    let shared = &m.shared;
    loop {
        safe_point::serve(shared, p, ReachedBy::Transition);
        let mut sched = shared.sched.lock();
        if !shutting_down && (!sched.runq.is_empty() || !p.runq.lock().is_empty()) {
            return;
        }
        if let Err(cur) = p.status.cas(PStatus::Running, PStatus::Idle) {
            panic!("go_idle: {} is {cur}, expected it running", p.id);
        }
        if p.safepoint_armed() && p.status.cas(PStatus::Idle, PStatus::Running).is_ok() {
            continue;
        }
        p.set_m(None);
        unwire_p(m);
        sched.idle_ps.push(p.id);
        return;
    }
}

/// Sysmon's period, and how long a goroutine may run before it is asked to yield.
const SYSMON_TICK: Duration = Duration::from_millis(1);
const FORCE_PREEMPT: Duration = Duration::from_millis(10);
/// A P may stay in a syscall this long without work waiting before sysmon retakes it.
const RETAKE_IDLE_SYSCALL: Duration = Duration::from_millis(10);

pub(crate) fn start_sysmon(shared: &Arc<Shared>) {
    let for_thread = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("safepoint-sysmon".into())
        .spawn(move || sysmon(for_thread))
        .expect("cannot start sysmon");
    shared.threads.lock().push(handle);
}

/// Go's `sysmon`: preempts long-running goroutines, retakes Ps from long syscalls, and
/// starts an M when work waits while a P is idle.
fn sysmon(shared: Arc<Shared>) {
    struct Seen {
        sched_tick: u64,
        syscall_tick: u64,
        since: Instant,
    }
    let mut seen: Vec<Seen> = shared
        .ps
        .iter()
        .map(|_| Seen {
            sched_tick: u64::MAX,
            syscall_tick: u64::MAX,
            since: Instant::now(),
        })
        .collect();
    loop {
        {
            let mut stop = shared.sysmon_stop.0.lock();
            if !*stop {
                shared.sysmon_stop.1.wait_for(&mut stop, SYSMON_TICK);
            }
            if *stop {
                return;
            }
        }
        super::check_timeout(&shared);
        shared.served.refresh_cpus();
        let now = Instant::now();
        let global_work = !shared.sched.lock().runq.is_empty();
        let mut work_waiting = global_work;
        for (p, seen) in shared.ps.iter().zip(seen.iter_mut()) {
            let sched_tick = p.sched_tick.load(Ordering::Relaxed);
            let syscall_tick = p.syscall_tick.load(Ordering::Relaxed);
            if sched_tick != seen.sched_tick || syscall_tick != seen.syscall_tick {
                *seen = Seen {
                    sched_tick,
                    syscall_tick,
                    since: now,
                };
                continue;
            }
            let local_work = !p.runq.lock().is_empty();
            work_waiting |= local_work;
            let stuck_for = now - seen.since;
            match p.status.load() {
                PStatus::Running if stuck_for >= FORCE_PREEMPT => p.arm(poll_bits::PREEMPT),
                PStatus::Syscall
                    if (local_work || global_work || stuck_for >= RETAKE_IDLE_SYSCALL)
                        && p.status.cas(PStatus::Syscall, PStatus::Idle).is_ok() =>
                {
                    p.set_m(None);
                    handoffp(&shared, p);
                }
                _ => {}
            }
        }
        if work_waiting {
            wakep(&shared);
        }
    }
}

/// Go's `handoffp`: a P taken from a syscall goes to an M if work waits, else to the idle
/// list.
fn handoffp(shared: &Arc<Shared>, p: &P) {
    let has_work = !p.runq.lock().is_empty() || !shared.sched.lock().runq.is_empty();
    if has_work && !shared.shutting_down.load(Ordering::Relaxed) {
        startm(shared, p.id);
    } else {
        shared.sched.lock().idle_ps.push(p.id);
    }
}
