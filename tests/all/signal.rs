//! The signal strategy's own guarantees, at 1, 2, 4 and 8 Ps, each repeated: it reaches Ps
//! that never poll, never stops one inside a non-preemptible region, completes barriers on
//! threads that block its signal, chains to the application's handler, and causes no
//! spurious failures in interrupted syscalls.
//!
//! Tests in this binary run in parallel and share the process's signal dispositions: the
//! strategy supports several live instances at once (a registry of strategies and a
//! reference-counted installation, see `strategies/signal/src/sys/handler/`). The chaining
//! test installs an application handler of its own, which would replace the strategy's
//! under the other tests' feet, so it is a test binary of its own: `signal_chaining.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use safepoint_abi::ErrorKind;
use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{self, Runtime, WaitReason};
use safepoint_host::safepoint::{BarrierError, acquire_world, for_each_p};
use safepoint_host::workloads::work;
use safepoint_tests::{
    Loops, P_COUNTS, block_on_bounded, block_on_or_exit, counter, is_blocked, per_p, runtime,
    set_blocked, shipped, sole_owner,
};

const BARRIERS: u64 = 1000;
/// Each scenario runs this many times per P count: signals make races likely.
const ROUNDS: usize = 3;

fn signal() -> Plugin {
    shipped("signal")
}

/// Runs `scenario` on a fresh runtime of each P count, [`ROUNDS`] times each.
fn at_every_p_count(scenario: impl Fn(usize, &Arc<Runtime>)) {
    for procs in P_COUNTS {
        for _ in 0..ROUNDS {
            scenario(procs, &runtime(&signal(), "", procs));
        }
    }
}

/// Issue 3, test 1: goroutines that never poll are reached, each barrier, by stopping their
/// P in the signal handler; `f` runs exactly once per P. When Ps outnumber CPUs, a spinner
/// whose M still sleeps in its handler from the barrier before (the host's served-P policy)
/// has its P served on its behalf instead: reached by the requester either way.
#[test]
fn ps_that_never_poll_are_stopped_in_the_handler_once_per_barrier() {
    at_every_p_count(|procs, rt| {
        // One P for the requester; the others spin without ever polling.
        let spinners = Loops::start(rt, procs - 1, work, || {});
        let (by_themselves, by_requester) = spinners.barriers(rt, BARRIERS, |_| {});
        spinners.stop();
        let spinning = procs as u64 - 1;
        let stops = counter(rt, "stops at async safe points");
        assert_eq!(by_themselves, 0, "{procs} Ps: nobody polls");
        assert_eq!(
            u64::from(by_requester),
            BARRIERS * spinning,
            "{procs} Ps: each spinner's P is reached by the requester at every barrier"
        );
        let oversubscribed = procs > std::thread::available_parallelism().map_or(1, usize::from);
        if oversubscribed {
            assert!(stops <= BARRIERS * spinning, "{procs} Ps: {stops} stops");
        } else {
            assert_eq!(
                stops,
                BARRIERS * spinning,
                "{procs} Ps: each spinner's P is stopped in its handler at every barrier"
            );
        }
        assert_eq!(counter(rt, "stops at polls"), 0, "{procs} Ps: nobody polls");
        // A stop in the handler takes a signal; a P served while its M sleeps takes none.
        assert!(counter(rt, "signals sent") >= stops, "{procs} Ps");
    });
}

/// Work units inside each non-preemptible region: long enough (tens of microseconds in a
/// test build) that many signals land inside one.
const REGION_WORK: usize = 128;

/// Issue 3, test 2: a goroutine inside a non-preemptible region is never stopped there. `f`
/// checks a record that the region updates (first word, work, second word) and a flag set
/// for the region's duration; the P is reached at its next poll after the region (the
/// region's end polls).
#[test]
fn a_goroutine_in_a_non_preemptible_region_is_reached_at_its_next_poll() {
    at_every_p_count(|procs, rt| {
        let (first, second, inside) = (per_p(procs), per_p(procs), per_p(procs));
        let (a, b, flag) = (Arc::clone(&first), Arc::clone(&second), Arc::clone(&inside));
        let updaters = Loops::start(
            rt,
            procs.max(2) - 1,
            move |mut x| {
                {
                    let _region = runtime::no_preempt("updating the P-local record");
                    let p = runtime::current_p_id().expect("on a P").index();
                    flag[p].store(1, Ordering::Relaxed);
                    let v = a[p].load(Ordering::Relaxed) + 1;
                    a[p].store(v, Ordering::Relaxed);
                    for _ in 0..REGION_WORK {
                        x = work(x);
                    }
                    b[p].store(v, Ordering::Relaxed);
                    flag[p].store(0, Ordering::Relaxed);
                }
                if procs == 1 {
                    // Sharing the only P with the requester.
                    runtime::yield_now();
                }
                x
            },
            || {},
        );
        let torn = Arc::new(AtomicU64::new(0));
        let t = Arc::clone(&torn);
        updaters.barriers(rt, BARRIERS, move |p| {
            let half_updated = first[p].load(Ordering::Relaxed)
                != second[p].load(Ordering::Relaxed)
                || inside[p].load(Ordering::Relaxed) != 0;
            if half_updated {
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        updaters.stop();
        assert_eq!(
            torn.load(Ordering::Relaxed),
            0,
            "{procs} Ps: f ran while a P was inside its region"
        );
        if procs >= 2 {
            assert!(
                counter(rt, "signals left to the poll") > 0,
                "{procs} Ps: no signal landed inside a region: {:?}",
                rt.strategy_counters()
            );
            assert!(
                counter(rt, "stops at polls") > 0,
                "{procs} Ps: no P was reached at its poll: {:?}",
                rt.strategy_counters()
            );
        }
    });
}

/// Work units between two polls of a goroutine whose thread blocks the signal: long enough
/// (tens of microseconds in a test build) that the requester signals it before it polls.
/// Once one signal is pending there, it stays pending.
const BLOCKED_WORK: usize = 64;

/// Issue 3, test 3: goroutines whose threads block SIGURG still complete every barrier at
/// their polls, and the strategy counts it.
///
/// The mask belongs to the thread, and a goroutine can move to another M at any safe point,
/// so each turn blocks the signal again on whatever thread it runs; on exit it unblocks it
/// on the thread it ends on. A thread it left behind keeps the signal blocked until the
/// runtime's end, which is harmless: every goroutine of this test polls.
#[test]
fn a_thread_that_blocks_the_signal_completes_barriers_at_its_polls() {
    at_every_p_count(|procs, rt| {
        let blockers = Loops::start(
            rt,
            procs.max(2) - 1,
            move |mut x| {
                set_blocked(libc::SIGURG, true);
                for _ in 0..BLOCKED_WORK {
                    x = work(x);
                }
                runtime::poll();
                if procs == 1 {
                    runtime::yield_now();
                }
                x
            },
            || set_blocked(libc::SIGURG, false),
        );
        blockers.barriers(rt, BARRIERS, |_| {});
        blockers.stop();
        if procs >= 2 {
            assert!(
                counter(rt, "polls with the signal blocked") > 0,
                "{procs} Ps: {:?}",
                rt.strategy_counters()
            );
            // Go issue 37741: a thread is sent no second signal while one is in flight,
            // and on a thread that blocks it, it stays in flight. Without the guard
            // every barrier would signal every late P again.
            assert!(
                counter(rt, "signals sent") < BARRIERS / 10,
                "{procs} Ps: {:?}",
                rt.strategy_counters()
            );
        }
    });
}

/// A goroutine that swaps the signal strategy out runs its detaches on its own M, which
/// lives on: the swap must leave that thread able to take the signal. (Detaching used to
/// block the signal on the M's own thread, as if the M were stopping: that M then never
/// stopped in the handler again, and each later signal strategy left a mark pending on it
/// for good, until a 16-P soak ran out of all 1024.)
#[test]
fn a_swap_run_by_a_goroutine_leaves_its_thread_able_to_take_the_signal() {
    let polling = shipped("polling");
    for round in 0..ROUNDS * 10 {
        let rt = runtime(&signal(), "", 2);
        let rt2 = Arc::clone(&rt);
        let polling2 = polling.clone();
        let blocked_after = block_on_bounded(&rt, move || {
            assert!(
                !is_blocked(libc::SIGURG),
                "round {round}: blocked before the swap"
            );
            rt2.swap_strategy(&polling2, "").expect("swap to polling");
            is_blocked(libc::SIGURG)
        });
        assert!(
            !blocked_after,
            "round {round}: the swap left SIGURG blocked on its goroutine's thread"
        );
        sole_owner(rt).shutdown();
    }
}

/// Several runtimes with the signal strategy share the process's handler: both reach their
/// spinners while they run barriers at the same time, and the one that outlives the other
/// still does (the handler stays installed until the last strategy shuts down).
#[test]
fn two_runtimes_share_the_handler_and_one_outlives_the_other() {
    let (a, b) = (runtime(&signal(), "", 2), runtime(&signal(), "", 4));
    let (spin_a, spin_b) = (
        Loops::start(&a, 1, work, || {}),
        Loops::start(&b, 3, work, || {}),
    );
    let reached = std::thread::scope(|scope| {
        let a = scope.spawn(|| spin_a.barriers(&a, BARRIERS, |_| {}));
        let b = scope.spawn(|| spin_b.barriers(&b, BARRIERS, |_| {}));
        (a.join().expect("a"), b.join().expect("b"))
    });
    spin_a.stop();
    // Each spinner's P is stopped in its handler, or (when its runtime's Ps outnumber CPUs)
    // served on its behalf while its M still sleeps there: reached by the requester.
    let stops_a = counter(&a, "stops at async safe points");
    assert_eq!(reached.0, (0, BARRIERS as u32));
    assert!(stops_a > 0 && stops_a <= BARRIERS, "{stops_a}");
    sole_owner(a).shutdown();
    let later = spin_b.barriers(&b, BARRIERS, |_| {});
    spin_b.stop();
    assert_eq!(reached.1, (0, 3 * BARRIERS as u32));
    assert_eq!(later, (0, 3 * BARRIERS as u32));
    let stops_b = counter(&b, "stops at async safe points");
    assert!(stops_b > 0 && stops_b <= 2 * 3 * BARRIERS, "{stops_b}");
    assert_eq!(counter(&b, "signals forwarded"), 0);
}

/// Issue 3, test 5: goroutines that sleep, that read from a pipe inside `blocking`, and
/// that sleep in a raw `nanosleep` without telling the runtime (their P stays running, so
/// the strategy signals their thread there), during thousands of barriers: no sleep is
/// short, no read fails or comes up short, and the EINTRs the strategy caused are counted.
#[test]
fn interrupted_syscalls_fail_nothing_and_their_eintrs_are_counted() {
    const SLEEP: Duration = Duration::from_micros(200);
    for procs in P_COUNTS {
        let rt = runtime(&signal(), "", procs);
        let short_sleeps = Arc::new(AtomicU64::new(0));
        let (s1, s2) = (Arc::clone(&short_sleeps), Arc::clone(&short_sleeps));
        let sleepers = Loops::start(
            &rt,
            1,
            move |x| {
                let start = Instant::now();
                runtime::sleep(SLEEP);
                if start.elapsed() < SLEEP {
                    s1.fetch_add(1, Ordering::Relaxed);
                }
                x
            },
            || {},
        );
        let raw_sleepers = Loops::start(
            &rt,
            1,
            move |x| {
                let start = Instant::now();
                // std's sleep resumes nanosleep with the time left after an EINTR.
                std::thread::sleep(SLEEP);
                if start.elapsed() < SLEEP {
                    s2.fetch_add(1, Ordering::Relaxed);
                }
                runtime::poll();
                // Lets the other goroutines have this P now and then.
                runtime::yield_now();
                x
            },
            || {},
        );
        let pipe = Pipe::new();
        let bad_reads = Arc::new(AtomicU64::new(0));
        let reader = {
            let (fd, bad) = (pipe.read, Arc::clone(&bad_reads));
            let expected = AtomicU64::new(0);
            Loops::start(
                &rt,
                1,
                move |x| {
                    let mut buf = [0u8; 8];
                    let n = runtime::blocking(|| read(fd, &mut buf));
                    let seq = expected.fetch_add(1, Ordering::Relaxed);
                    if n != Ok(8) || u64::from_ne_bytes(buf) != seq {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    x
                },
                || {},
            )
        };
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (fd, next) = (pipe.write, Arc::clone(&written));
            Loops::start(
                &rt,
                1,
                move |x| {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let n = runtime::blocking(|| write(fd, &seq.to_ne_bytes()));
                    assert_eq!(n, Ok(8), "write to the pipe");
                    runtime::sleep(SLEEP);
                    x
                },
                || {},
            )
        };
        raw_sleepers.barriers(&rt, 2 * BARRIERS, |_| {});
        for loops in [sleepers, raw_sleepers, writer] {
            loops.stop();
        }
        // One more record, the next in sequence, so that a reader blocked in read() wakes
        // up and sees its stop flag.
        reader.request_stop();
        let last = written.load(Ordering::Relaxed).to_ne_bytes();
        assert_eq!(write(pipe.write, &last), Ok(8));
        reader.wait();
        assert_eq!(short_sleeps.load(Ordering::Relaxed), 0, "{procs} Ps");
        assert_eq!(bad_reads.load(Ordering::Relaxed), 0, "{procs} Ps");
        if procs >= 2 {
            assert!(
                counter(&rt, "EINTRs caused") > 0,
                "{procs} Ps: the raw nanosleep was never interrupted: {:?}",
                rt.strategy_counters()
            );
        }
    }
}

/// A pipe whose ends close on drop.
struct Pipe {
    read: libc::c_int,
    write: libc::c_int,
}

impl Pipe {
    fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Pipe {
            read: fds[0],
            write: fds[1],
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: descriptors this value owns, closed once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

fn read(fd: libc::c_int, buf: &mut [u8]) -> Result<usize, std::io::ErrorKind> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error().kind())
}

fn write(fd: libc::c_int, buf: &[u8]) -> Result<usize, std::io::ErrorKind> {
    // SAFETY: `buf` is readable for its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error().kind())
}

/// Goroutines that compute without ever polling, each counting its turns.
struct Spinners {
    turns: Arc<[AtomicU64]>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    done: runtime::WaitGroup,
}

impl Spinners {
    /// Starts `n` of them and waits until each has turned.
    fn start(rt: &Runtime, n: usize) -> Spinners {
        let spinners = Spinners {
            turns: per_p(n),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            done: runtime::WaitGroup::new(),
        };
        for i in 0..n {
            let (turns, stop, done) = (
                Arc::clone(&spinners.turns),
                Arc::clone(&spinners.stop),
                spinners.done.clone(),
            );
            done.add(1);
            rt.spawn("spinner", move || {
                let mut x = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    x = work(x);
                    turns[i].fetch_add(1, Ordering::Relaxed);
                }
                std::hint::black_box(x);
                done.done();
            });
        }
        let all_turned = spinners.all_turn_within(Duration::from_secs(10));
        assert!(all_turned.is_ok(), "a spinner never started");
        spinners
    }

    /// Waits until every spinner has turned again; on failure, names one that did not.
    fn all_turn_within(&self, limit: Duration) -> Result<(), usize> {
        let seen: Vec<u64> = self
            .turns
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect();
        let deadline = Instant::now() + limit;
        for (i, before) in seen.into_iter().enumerate() {
            while self.turns[i].load(Ordering::Relaxed) == before {
                if Instant::now() > deadline {
                    return Err(i);
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
    }
}

/// Issue 11, defect 7: the requester panics (an injected fault) while it holds a P stopped
/// in its handler, with others stopped there too. As the panic unwinds, the round is
/// abandoned and every stopped P let go: each spinner runs on, and a strategy swapped in
/// afterwards serves barriers.
#[test]
fn a_panic_in_the_requester_lets_every_p_stopped_in_its_handler_go() {
    for procs in [2, 4] {
        for _ in 0..ROUNDS {
            let rt = runtime(&signal(), "fault=panic-serving-stopped-p", procs);
            let spinners = Spinners::start(&rt, procs - 1);
            let err = block_on_bounded(&rt, || {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
            })
            .expect_err("the injected fault fails the barrier");
            assert!(
                matches!(&err, BarrierError::Strategy { error, .. }
                    if error.kind == ErrorKind::Panicked && error.message.contains("injected fault")),
                "{err:?}"
            );
            if let Err(stuck) = spinners.all_turn_within(Duration::from_secs(5)) {
                // Its M waits in the handler for ever: the runtime cannot shut down.
                std::mem::forget(rt);
                panic!("{procs} Ps: spinner {stuck} is still stopped in its handler");
            }
            rt.swap_strategy(&signal(), "")
                .expect("swap to a sound signal strategy");
            Loops::start(&rt, 0, work, || {}).barriers(&rt, 100, |_| {});
            spinners.stop();
            sole_owner(rt).shutdown();
        }
    }
}

/// Whether `signal` is pending for the calling thread.
fn pending_here(signal: libc::c_int) -> bool {
    // SAFETY: plain data the call fills.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        libc::sigismember(&set, signal) == 1
    }
}

/// Takes `signal`, pending for the calling thread which blocks it, with `sigtimedwait`: the
/// kernel hands it over without running any handler.
fn take_pending(signal: libc::c_int) -> libc::c_int {
    // SAFETY: plain data, initialised before use; a zero timeout only polls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&set, std::ptr::null_mut(), &zero)
    }
}

/// Issue 11, defect 5: the application takes a signal of ours with `sigtimedwait` (as it
/// might with a `signalfd`, or by ignoring the signal for a moment), so that no handler ever
/// sees it, and its goroutine never polls. The mark of that signal must not stick: a few
/// re-signal intervals later, the requester finds the signal no longer pending on the thread
/// and sends another, which stops the P in its handler.
#[test]
fn a_signal_the_kernel_discarded_is_sent_again() {
    for _ in 0..ROUNDS {
        let rt = runtime(&signal(), "", 2);
        let flags: Arc<[std::sync::atomic::AtomicBool; 3]> = Arc::new(Default::default());
        let (started, taken, stop) = (0, 1, 2);
        let g = Arc::clone(&flags);
        rt.spawn("takes the signal with sigtimedwait", move || {
            // Never polls: it stays on this M, and only a signal reaches its P.
            set_blocked(libc::SIGURG, true);
            g[started].store(true, Ordering::Release);
            let mut x = 0;
            while !pending_here(libc::SIGURG) {
                x = work(x);
            }
            assert_eq!(take_pending(libc::SIGURG), libc::SIGURG);
            set_blocked(libc::SIGURG, false);
            g[taken].store(true, Ordering::Release);
            while !g[stop].load(Ordering::Relaxed) {
                x = work(x);
            }
            std::hint::black_box(x);
        });
        while !flags[started].load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        block_on_or_exit(
            &rt,
            Duration::from_secs(10),
            "the barrier (a discarded signal's mark stuck?)",
            || {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
            },
        )
        .expect("barrier");
        assert!(flags[taken].load(Ordering::Acquire));
        assert!(
            counter(&rt, "discarded signals sent again") >= 1,
            "{:?}",
            rt.strategy_counters()
        );
        assert_eq!(counter(&rt, "stops at async safe points"), 1);
        flags[stop].store(true, Ordering::Relaxed);
        sole_owner(rt).shutdown();
    }
}

/// Issue 11, defect 6: a P stopped in its handler, waiting for the requester, is not
/// signalled again. `f` takes a while for every P, so that a P often parks while the
/// requester serves another, and a re-signal round comes before the requester takes it.
/// Every spinner is stopped in its handler at most once per barrier (one whose M still sleeps
/// there from the barrier before is served on its behalf, unsignalled), so every signal
/// beyond the stops was sent to a P already stopped: it would be delivered once the handler returns, with
/// nothing left to do (or as the next barrier's signal). (Apart from those counted as sent
/// again after a discard: a handler that waits longer than four re-signal intervals between
/// delivery and parking, on a loaded machine, looks like one.)
#[test]
fn a_p_stopped_in_its_handler_is_not_signalled_again() {
    const SLOW_BARRIERS: u64 = 400;
    let rt = runtime(&signal(), "", 6);
    let spinners = Loops::start(&rt, 5, work, || {});
    let (_, reached) = spinners.barriers(&rt, SLOW_BARRIERS, |p| {
        // For the Ps the requester serves on their behalf (not its own, which it serves
        // first): longer than several re-signal intervals (100 µs).
        if runtime::current_p_id().is_some_and(|own| own.index() != p) {
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    spinners.stop();
    let stops = counter(&rt, "stops at async safe points");
    let sent = counter(&rt, "signals sent");
    let resent = counter(&rt, "discarded signals sent again");
    // Each spinner's P is stopped in its handler once per barrier, or served on its behalf
    // while its M still sleeps there from the barrier before (6 Ps outnumber the CPUs).
    assert_eq!(
        u64::from(reached),
        5 * SLOW_BARRIERS,
        "{:?}",
        rt.strategy_counters()
    );
    assert!(stops <= 5 * SLOW_BARRIERS, "{:?}", rt.strategy_counters());
    assert!(
        sent <= stops + resent,
        "{} signals beyond one per stop: {:?}",
        sent.saturating_sub(stops + resent),
        rt.strategy_counters()
    );
}

/// Issue 11, defect 3: a goroutine stopped in its handler may hold a lock of the standard
/// library: here the backtrace lock, which `Backtrace::force_capture` holds as it walks the
/// stack and which the default panic hook takes to print. A barrier whose `f` panics for that
/// P must still complete: the host records the panic's message without the panic hook.
#[test]
fn a_panic_in_f_is_recorded_while_a_stopped_goroutine_holds_the_backtrace_lock() {
    const PANICKING_BARRIERS: u64 = 300;
    let rt = runtime(&signal(), "", 2);
    let capturer = Loops::start(
        &rt,
        1,
        |x| {
            drop(std::hint::black_box(
                std::backtrace::Backtrace::force_capture(),
            ));
            x + 1
        },
        || {},
    );
    let panics = block_on_or_exit(
        &rt,
        Duration::from_secs(30),
        "barriers whose f panics",
        || {
            let own = runtime::current_p_id();
            (0..PANICKING_BARRIERS)
                .filter(|_| {
                    let world = acquire_world();
                    let result = for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                        assert!(Some(p) == own, "f refuses {p}");
                    });
                    matches!(result, Err(BarrierError::FnPanicked { message, .. })
                        if message.starts_with("f refuses"))
                })
                .count() as u64
        },
    );
    capturer.stop();
    assert_eq!(panics, PANICKING_BARRIERS);
    assert!(
        counter(&rt, "stops at async safe points") > 0,
        "{:?}",
        rt.strategy_counters()
    );
}
