//! The calling thread's M and P, and the goroutine-facing API built on them.
//!
//! A goroutine may resume on another thread after any switch, so nothing here may be cached
//! across one: the accessors are `#[inline(never)]`, which keeps the compiler from hoisting a
//! thread-local address out of a loop that switches.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{Ordering, compiler_fence};
use std::time::Duration;

use safepoint_abi::{MId, PStatus};

use super::g::{G, GoId, NO_M, Switch};
use super::m::M;
use super::p::{P, poll_bits};
use super::serve as safe_point;
use super::status::{GStatus, WaitReason, backoff};
use super::trace::ReachedBy;
use super::{Shared, sched};

thread_local! {
    static CURRENT_M: RefCell<Option<Arc<M>>> = const { RefCell::new(None) };
    // The rest are const-initialised and without destructor: readable from a signal handler.
    /// The id of `CURRENT_M`, or `NO_M`.
    static CURRENT_M_ID: Cell<u32> = const { Cell::new(NO_M) };
    /// The P this thread runs goroutines for: `None` outside an M, while the M holds no P,
    /// and inside a blocking section (the P is `Syscall` and may be stopped or retaken).
    static CURRENT_P: Cell<Option<&'static P>> = const { Cell::new(None) };
    /// Go's `m.locks`: the depth of non-preemptible regions. An M is one thread, so its
    /// count is thread-local.
    static LOCKS: Cell<u32> = const { Cell::new(0) };
    /// The M is running goroutine code (not the scheduler, a system-stack call or the poll's
    /// slow path).
    static USER_CODE: Cell<bool> = const { Cell::new(false) };
    /// Its address tells threads apart ([`thread_token`]).
    static THREAD_TOKEN: u8 = const { 0 };
}

/// A number unique to the calling thread among live threads, never 0: the address of one of
/// its thread-locals. Async-signal-safe (const-initialised, no destructor).
#[inline(never)]
pub(crate) fn thread_token() -> usize {
    THREAD_TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

// Every access to the thread-locals above goes through one of the `#[inline(never)]`
// accessors below. Code on a goroutine stack may resume on another thread after a switch;
// inlined, an access could reuse a TLS address computed before the switch, on the old thread
// (a release build of `poll_slow` did exactly that with `USER_CODE` around `yield_now`).

#[inline(never)]
fn user_code() -> bool {
    USER_CODE.with(Cell::get)
}

/// Marks the M as running goroutine code or not; the scheduler calls it around `resume`.
#[inline(never)]
pub(crate) fn set_user_code(on: bool) {
    USER_CODE.with(|u| u.set(on));
}

#[inline(never)]
fn replace_user_code(on: bool) -> bool {
    USER_CODE.with(|u| u.replace(on))
}

/// The depth of non-preemptible regions of this thread.
#[inline(never)]
fn region_depth() -> u32 {
    LOCKS.with(Cell::get)
}

/// Enters a non-preemptible region; returns the depth before.
#[inline(never)]
fn enter_region() -> u32 {
    LOCKS.with(|l| l.replace(l.get() + 1))
}

/// Leaves a non-preemptible region; returns the depth before.
#[inline(never)]
fn leave_region() -> u32 {
    LOCKS.with(|l| l.replace(l.get() - 1))
}

#[inline(never)]
fn current_m_id() -> Option<MId> {
    match CURRENT_M_ID.with(Cell::get) {
        NO_M => None,
        id => Some(MId(id)),
    }
}

/// Whether a signal handler on this thread interrupted an asynchronous safe point: goroutine
/// code on an M that holds a running P, outside any non-preemptible region and holding no
/// runtime lock (Go's `isAsyncSafePoint`). The P must name this M as its holder: a thread
/// whose P was stopped or handed to another M (a blocking section) is at no safe point of
/// that P's. Async-signal-safe: it reads only const thread-locals and atomics.
pub(crate) fn at_async_safe_point() -> bool {
    user_code()
        && region_depth() == 0
        && super::lock::held_by_this_thread() == 0
        && current_p().is_some_and(|p| {
            p.status.load() == PStatus::Running && p.m().is_some_and(|m| Some(m) == current_m_id())
        })
}

/// Runtime code called from a goroutine: not an asynchronous safe point while it lives.
struct RuntimeCode {
    was_user_code: bool,
}

impl RuntimeCode {
    fn enter() -> RuntimeCode {
        RuntimeCode {
            was_user_code: replace_user_code(false),
        }
    }
}

impl Drop for RuntimeCode {
    fn drop(&mut self) {
        set_user_code(self.was_user_code);
    }
}

fn in_no_preempt_region() -> bool {
    region_depth() > 0
}

/// The M of the calling thread, if it is one.
#[inline(never)]
pub(crate) fn current_m() -> Option<Arc<M>> {
    CURRENT_M.with(|m| m.borrow().clone())
}

/// The P held by the M of the calling thread. Async-signal-safe.
#[inline(never)]
pub(crate) fn current_p() -> Option<&'static P> {
    CURRENT_P.with(Cell::get)
}

/// The goroutine the calling thread's M runs.
pub(crate) fn current_g() -> Option<Arc<G>> {
    current_m()?.curg()
}

#[inline(never)]
pub(crate) fn enter_m(m: Option<Arc<M>>) {
    CURRENT_M_ID.with(|id| id.set(m.as_ref().map_or(NO_M, |m| m.id.0)));
    CURRENT_M.with(|cur| *cur.borrow_mut() = m);
}

#[inline(never)]
pub(crate) fn set_p(p: Option<&'static P>) {
    CURRENT_P.with(|cur| cur.set(p));
}

/// Whether the calling code runs on a goroutine.
pub fn in_goroutine() -> bool {
    current_g().is_some()
}

/// The P the calling goroutine runs on. It can change at any safe point; inside a
/// [`NoPreempt`] region it cannot.
pub fn current_p_id() -> Option<safepoint_abi::PId> {
    current_p().map(|p| p.id)
}

/// The id of the calling goroutine.
pub fn current_goid() -> Option<GoId> {
    current_g().map(|g| g.id)
}

fn expect_goroutine(what: &str) -> (Arc<M>, Arc<G>) {
    let m = current_m().unwrap_or_else(|| panic!("{what}: not called on a goroutine"));
    let g = m
        .curg()
        .unwrap_or_else(|| panic!("{what}: not called on a goroutine"));
    assert!(
        !in_no_preempt_region(),
        "{what}: called in a non-preemptible region"
    );
    (m, g)
}

#[inline(never)]
fn poll_word_nonzero() -> bool {
    CURRENT_P.with(|p| {
        p.get()
            .is_some_and(|p| p.poll.word.load(Ordering::Relaxed) != 0)
    })
}

/// A safe point for mutator code: call it at loop back-edges.
///
/// The fast path is one relaxed load of the P's poll word and a branch. When a strategy or
/// the scheduler has armed the word, the slow path serves the barrier (or yields, if
/// preempted). Inside a [`NoPreempt`] region it does nothing; the region's end polls.
#[inline]
pub fn poll() {
    if poll_word_nonzero() {
        poll_slow();
    }
}

#[cold]
#[inline(never)]
fn poll_slow() {
    if in_no_preempt_region() {
        return;
    }
    let Some(m) = current_m() else { return };
    let _runtime = RuntimeCode::enter();
    let Some(p) = current_p() else { return };
    if safe_point::serve(&m.shared, p, ReachedBy::Poll) {
        safe_point::give_way_on_goroutine(&m.shared, p);
    }
    if p.poll.word.load(Ordering::Acquire) & poll_bits::PREEMPT != 0 {
        p.disarm(poll_bits::PREEMPT);
        let Some(g) = m.curg() else { return };
        drop(m);
        if g.scan_requested.load(Ordering::Acquire) {
            // Go's `preemptPark`: the scanner readies us once it has scanned our stack.
            park(WaitReason::PreemptedForScan, || {});
        } else {
            yield_now();
        }
    }
}

/// Go's `Gosched`: lets other goroutines run, then continues. Outside a goroutine it yields
/// the OS thread.
pub fn yield_now() {
    if current_g().is_none() {
        std::thread::yield_now();
        return;
    }
    let (m, g) = expect_goroutine("yield_now");
    drop(m);
    g.suspender().suspend(Switch::Yield);
}

/// Runs `f` on the M's own stack with the calling goroutine in `Waiting(reason)`, then makes
/// it `Running` again (Go's `casGToWaitingForGC` around `systemstack`). Meanwhile a GC worker
/// may scan the goroutine's stack in place. `f` must not switch goroutines.
pub(crate) fn waiting_on_system_stack<R: Send>(
    reason: WaitReason,
    f: impl FnOnce() -> R + Send,
) -> Option<R> {
    let g = current_g()?;
    let suspender = g.suspender();
    let _runtime = RuntimeCode::enter();
    Some(suspender.on_system_stack(move || {
        g.cas_status(GStatus::Running, GStatus::Waiting(reason));
        let result = f();
        g.cas_status(GStatus::Waiting(reason), GStatus::Running);
        result
    }))
}

/// Go's `gopark`: parks the calling goroutine for `reason`. `unlock` runs on the M once the
/// goroutine is `Waiting`; it releases whatever lock keeps wakers from seeing the goroutine
/// in its wait list too early. A waker makes it runnable again with `sched::ready`.
pub(crate) fn park(reason: WaitReason, unlock: impl FnOnce() + 'static) {
    let (m, g) = expect_goroutine("park");
    drop(m);
    g.suspender()
        .suspend(Switch::Park(reason, Box::new(unlock)));
}

/// Parks the calling goroutine for at least `duration`. Outside a goroutine it sleeps the
/// OS thread.
pub fn sleep(duration: Duration) {
    match current_m() {
        Some(m) if m.curg().is_some() => super::time::sleep(m, duration),
        _ => std::thread::sleep(duration),
    }
}

/// Go's `go f()` from inside a goroutine: starts a goroutine on the same runtime.
pub fn go(name: &str, f: impl FnOnce() + Send + 'static) -> GoId {
    let m = current_m().unwrap_or_else(|| panic!("go: not called on a runtime thread"));
    sched::spawn(&m.shared, name, f)
}

/// Runs `f`, a blocking call, as Go's `entersyscall`/`exitsyscall` bracket a syscall.
///
/// The P goes to `Syscall` for the duration: a barrier runs its function on the P's behalf,
/// and sysmon hands the P to another M if the call lasts. The thread holds no P meanwhile
/// ([`current_p_id`] is `None` inside `f`): a poll inside `f` serves nothing, and a signal
/// handler does not take `f` for an asynchronous safe point. Outside a goroutine it just
/// calls `f`.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    if current_g().is_none() {
        return f();
    }
    let (m, g) = expect_goroutine("blocking");
    let p = current_p().expect("a running goroutine's M holds a P");
    p.syscall_tick.fetch_add(1, Ordering::Relaxed);
    sched::park_p(&m.shared, p, PStatus::Syscall);
    // From here a requester may stop the P and sysmon may hand it to another M: until
    // `exit_syscall` takes it back, this thread must neither serve it nor stop for it.
    set_p(None);
    g.cas_status(GStatus::Running, GStatus::Syscall);
    let result = f();
    exit_syscall(m, g, p);
    result
}

/// Go's `exitsyscall`: takes the P back, or switches out so that the M finds another.
fn exit_syscall(m: Arc<M>, g: Arc<G>, p: &'static P) {
    let mut spins = 0;
    loop {
        match p.status.cas(PStatus::Syscall, PStatus::Running) {
            Ok(()) => {
                sched::wire_p(&m, p);
                g.cas_status(GStatus::Syscall, GStatus::Running);
                // A requester may have served the P while the goroutine was in the call.
                safe_point::give_way_on_goroutine(&m.shared, p);
                return;
            }
            // A requester runs the barrier's function on our behalf; it gives the P back
            // as `Syscall` when done.
            Err(PStatus::GcStop) => backoff(&mut spins),
            Err(_) => {
                // Retaken by sysmon: the M looks for another P (`exitsyscall0`).
                sched::unwire_p(&m);
                drop(m);
                g.suspender().suspend(Switch::LostP);
                return;
            }
        }
    }
}

/// Go's `acquirem`: a non-preemptible region. Until the guard drops, the goroutine takes
/// no safe point: `poll()` does nothing, and yielding, parking or blocking panic. The
/// region's end polls, so a barrier that arrived meanwhile is served then.
#[must_use = "the region ends when the guard drops"]
pub struct NoPreempt {
    _not_send: PhantomData<*const ()>,
}

/// Enters a non-preemptible region; see [`NoPreempt`]. `what` names it in timeout reports.
pub fn no_preempt(what: &str) -> NoPreempt {
    if enter_region() == 0
        && let Some(m) = current_m()
    {
        *m.region.lock() = Some(what.to_owned());
    }
    NoPreempt {
        _not_send: PhantomData,
    }
}

impl Drop for NoPreempt {
    fn drop(&mut self) {
        if leave_region() == 1 {
            if let Some(m) = current_m() {
                *m.region.lock() = None;
            }
            poll();
        }
    }
}

/// Runs `f` with no asynchronous safe point inside it (Go's compiler-marked unsafe points):
/// for a few stores that a stack scan must see all or none of. Unlike [`no_preempt`] it names
/// nothing for timeout reports and takes no safe point at its end, so a goroutine that never
/// polls stays one. `f` must not yield, park, block or panic.
pub(crate) fn without_async_safe_point<R>(f: impl FnOnce() -> R) -> R {
    enter_region();
    // Same thread as the signal handler that reads the depth: only the compiler may reorder.
    compiler_fence(Ordering::SeqCst);
    let result = f();
    compiler_fence(Ordering::SeqCst);
    leave_region();
    result
}

pub(crate) fn shared_of_current() -> Option<Arc<Shared>> {
    current_m().map(|m| Arc::clone(&m.shared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::strategy::no_barriers;
    use crate::runtime::{Runtime, Sema};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn async_safe_points_are_goroutine_code_outside_regions_and_runtime_locks() {
        let rt = Runtime::builder()
            .procs(1)
            .build(&no_barriers::Constructor, "")
            .expect("runtime");
        assert!(!at_async_safe_point(), "not on an M");
        let seen = rt.block_on(|| {
            let plain = at_async_safe_point();
            let region = no_preempt("test region");
            let in_region = at_async_safe_point();
            drop(region);
            let sema = Sema::new(1);
            let _lock = sema.state_for_test();
            let holding_runtime_lock = at_async_safe_point();
            let on_system_stack = waiting_on_system_stack(WaitReason::Event, at_async_safe_point)
                .expect("on a goroutine");
            (plain, in_region, holding_runtime_lock, on_system_stack)
        });
        assert_eq!(seen, (true, false, false, false));
    }

    /// Spins until `flag` is set, failing the test after 10 s.
    fn wait_for(flag: &AtomicBool, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !flag.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            std::thread::yield_now();
        }
    }

    /// Issue 11, defect 1: while a goroutine is inside `blocking`, sysmon hands its P to
    /// another M. The blocked thread must not act for that P any more: it holds no P, and a
    /// signal landing there finds no asynchronous safe point.
    #[test]
    fn a_blocking_section_holds_no_p_while_another_m_runs_it() {
        let rt = Runtime::builder()
            .procs(1)
            .build(&no_barriers::Constructor, "")
            .expect("runtime");
        let seen = rt.block_on(|| {
            let before = current_p_id();
            let (running, checked) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            );
            let (r, c) = (Arc::clone(&running), Arc::clone(&checked));
            // Queued on our P: sysmon retakes the P from the blocking section below and
            // starts an M for it, which runs this goroutine.
            go("runs on the retaken P", move || {
                r.store(true, Ordering::Release);
                wait_for(&c, "the blocked goroutine has looked");
            });
            let inside = blocking(|| {
                wait_for(&running, "another M runs the retaken P");
                let inside = (current_p_id(), at_async_safe_point());
                checked.store(true, Ordering::Release);
                inside
            });
            (before, inside, current_p_id())
        });
        let (before, inside, after) = seen;
        assert!(before.is_some() && after.is_some(), "{seen:?}");
        assert_eq!(inside, (None, false), "inside the blocking section");
    }
}
