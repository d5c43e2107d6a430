//! The served-P policy (`ServedPs`): when Ps outnumber CPUs, the M of a P that has been
//! served waits until its barrier ends, so that the late Ps' threads get the CPU. Each test
//! pins its runtime to one CPU (`on_one_cpu`), which oversubscribes it for real at 8 Ps on
//! any machine. Nothing here is timed: the tests check the policy's counters, `f`'s
//! exactly-once tally, and that every M resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{self, Runtime, WaitGroup, WaitReason};
use safepoint_host::safepoint::{OnTimeout, ServedPs, ServedPsStats, acquire_world, for_each_p};
use safepoint_host::workloads::{self, Rotation, RunOptions, Workload, work};
use safepoint_tests::{
    SHIPPED, WATCHDOG, await_condition, checked_barriers, on_one_cpu, per_p, shipped, sole_owner,
};

const PROCS: usize = 8;
const BARRIERS: u64 = 300;

fn runtime(plugin: &Plugin, policy: ServedPs) -> Arc<Runtime> {
    let rt = Runtime::builder()
        .procs(PROCS)
        .served_ps(policy)
        .safepoint_timeout(Some(Duration::from_secs(5)), OnTimeout::Report)
        .build(plugin, "")
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", plugin.name()));
    Arc::new(rt)
}

/// What one pinned run did: the policy's counters, and how the Ps were reached.
struct Outcome {
    stats: ServedPsStats,
    by_themselves: u32,
    by_requester: u32,
}

/// On one CPU: a goroutine per P but the requester's loops, polling (or not), while
/// `BARRIERS` checked barriers run; then checks that every M resumes and none still waits.
fn pinned_run(plugin: &Plugin, policy: ServedPs, polls: bool) -> Outcome {
    let plugin = plugin.clone();
    on_one_cpu(move || {
        let rt = runtime(&plugin, policy);
        let turns = per_p(PROCS - 1);
        let stop = Arc::new(AtomicBool::new(false));
        let done = WaitGroup::new();
        for i in 0..PROCS - 1 {
            let (turns, stop, done) = (Arc::clone(&turns), Arc::clone(&stop), done.clone());
            done.add(1);
            rt.spawn("loop", move || {
                let mut x = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    x = work(x);
                    turns[i].fetch_add(1, Ordering::Relaxed);
                    if polls {
                        runtime::poll();
                    }
                }
                std::hint::black_box(x);
                done.done();
            });
        }
        let (by_themselves, by_requester) = checked_barriers(&rt, BARRIERS, || {}, |_| {});
        let stats = rt.served_ps().1;
        // Every loop goes on after the last barrier: no M was left waiting.
        let after: Vec<u64> = turns.iter().map(|t| t.load(Ordering::Relaxed)).collect();
        await_condition("every loop to run again after the last barrier", || {
            turns
                .iter()
                .zip(&after)
                .all(|(t, before)| t.load(Ordering::Relaxed) > *before)
        });
        // A woken M leaves the count itself, once it runs again.
        await_condition("every waiting M to leave its wait", || {
            rt.served_ps_waiting() == 0
        });
        stop.store(true, Ordering::Relaxed);
        done.wait();
        sole_owner(rt).shutdown();
        Outcome {
            stats,
            by_themselves,
            by_requester,
        }
    })
}

/// Oversubscribed, the default policy makes served Ps wait for the barrier's end, for every
/// strategy, while `f` still runs exactly once per P (`checked_barriers`). No wait ends
/// early (nothing scans stacks here), and every M resumes.
#[test]
fn served_ps_wait_for_the_end_of_their_barrier_when_oversubscribed() {
    for name in SHIPPED {
        let outcome = pinned_run(&shipped(name), ServedPs::Auto, true);
        let s = outcome.stats;
        assert!(
            s.waits > 0 && s.left_early == 0 && s.yields == 0,
            "{name}: {s:?}, {} Ps served themselves",
            outcome.by_themselves
        );
        // Every loop polls and no P is idle, so a P the requester served on its behalf was
        // one whose M still slept from the barrier before: its P was parked for it. On one
        // CPU some of the seven woken Ms are still waiting for it when the next barrier
        // begins, in practically every one of the barriers.
        assert!(
            outcome.by_requester > 0,
            "{name}: no P of a sleeping M was served on its behalf ({s:?})"
        );
    }
}

/// The signal strategy's Ps stopped in the handler wait there too: with loops that never
/// poll, every P but the requester's is reached in its handler.
#[test]
fn ps_stopped_in_the_signal_handler_wait_for_the_end_of_their_barrier() {
    let outcome = pinned_run(&shipped("signal"), ServedPs::Auto, false);
    let s = outcome.stats;
    assert_eq!(outcome.by_themselves, 0, "no loop polls");
    assert!(s.waits > 0 && s.left_early == 0, "{s:?}");
}

/// A P that the requester served while its goroutine sat in a system call gives way too,
/// once the goroutine takes it back: otherwise the M would run a whole time slice on a CPU
/// that a late P needs. Three Ps: the requester's, a blocker's (in a call the barrier's `f`
/// for its P ends) and a holdout's, which does not poll until it has seen an M wait, or
/// until a bound it should never reach. Repeated, as the steps race.
#[test]
fn a_p_served_in_a_system_call_gives_way_when_its_goroutine_takes_it_back() {
    const BOUND: Duration = Duration::from_secs(10);
    for name in ["polling", "futex"] {
        let rt = Arc::new(
            Runtime::builder()
                .procs(3)
                .served_ps(ServedPs::Wait)
                .build(&shipped(name), "")
                .expect("runtime"),
        );
        for round in 0..20 {
            let (release, released) = mpsc::channel::<()>();
            let blocker_p = Arc::new(AtomicUsize::new(usize::MAX));
            let (saw_waiter, stop) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            );
            let done = WaitGroup::new();
            done.add(2);
            let (bp, d) = (Arc::clone(&blocker_p), done.clone());
            rt.spawn("blocker", move || {
                let mine = runtime::current_p_id().expect("a goroutine holds a P");
                bp.store(mine.index(), Ordering::Release);
                runtime::blocking(|| {
                    released
                        .recv()
                        .expect("the barrier's f releases the blocker");
                });
                d.done();
            });
            let (rt2, saw, st, d) = (
                Arc::clone(&rt),
                Arc::clone(&saw_waiter),
                Arc::clone(&stop),
                done.clone(),
            );
            rt.spawn("holdout", move || {
                let deadline = Instant::now() + BOUND;
                let mut x = 0;
                while rt2.served_ps_waiting() == 0 && Instant::now() < deadline {
                    x = work(x);
                }
                saw.store(rt2.served_ps_waiting() > 0, Ordering::Relaxed);
                while !st.load(Ordering::Relaxed) {
                    runtime::poll();
                    x = work(x);
                }
                std::hint::black_box(x);
                d.done();
            });
            let waits_before = rt.served_ps().1.waits;
            let bp = Arc::clone(&blocker_p);
            let counts = safepoint_tests::per_p(3);
            let c = Arc::clone(&counts);
            safepoint_tests::block_on_bounded(&rt, move || {
                while bp.load(Ordering::Acquire) == usize::MAX {
                    runtime::yield_now();
                }
                let world = acquire_world();
                let release = std::sync::Mutex::new(release);
                for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                    c[p.index()].fetch_add(1, Ordering::Relaxed);
                    if p.index() == bp.load(Ordering::Acquire) {
                        let _ = release.lock().expect("release").send(());
                    }
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            });
            assert!(
                saw_waiter.load(Ordering::Relaxed),
                "{name}, round {round}: no M waited while the barrier was in flight ({:?})",
                rt.served_ps().1
            );
            assert!(
                rt.served_ps().1.waits > waits_before,
                "{name}, round {round}"
            );
            for (p, n) in counts.iter().enumerate() {
                assert_eq!(n.load(Ordering::Relaxed), 1, "{name}, round {round}: P{p}");
            }
            stop.store(true, Ordering::Relaxed);
            done.wait();
            // An M handed the blocker's P may still be on its way out of the wait.
            await_condition(
                &format!("{name}: every waiting M to leave its wait"),
                || rt.served_ps_waiting() == 0,
            );
        }
        sole_owner(rt).shutdown();
    }
}

/// `run` is the behaviour from before the policy; `yield` yields once and never waits.
#[test]
fn run_never_waits_and_yield_only_yields() {
    let polling = shipped("polling");
    let run = pinned_run(&polling, ServedPs::Run, true).stats;
    assert_eq!(run, ServedPsStats::default(), "run");
    let yielded = pinned_run(&polling, ServedPs::Yield, true).stats;
    assert!(
        yielded.yields > 0 && yielded.waits == 0,
        "yield: {yielded:?}"
    );
}

/// `wait` waits whatever the load: on two Ps with a CPU each it still waits, which `auto`
/// would not.
#[test]
fn wait_waits_even_when_every_p_has_a_cpu() {
    let polling = shipped("polling");
    for (policy, expect_waits) in [(ServedPs::Wait, true), (ServedPs::Auto, false)] {
        let rt = Arc::new(
            Runtime::builder()
                .procs(2)
                .served_ps(policy)
                .build(&polling, "")
                .expect("runtime"),
        );
        let loops = safepoint_tests::Loops::start(
            &rt,
            1,
            |x| {
                runtime::poll();
                work(x)
            },
            || {},
        );
        loops.barriers(&rt, BARRIERS, |_| {});
        let stats = rt.served_ps().1;
        loops.stop();
        if expect_waits {
            assert!(stats.waits > 0, "{policy}: {stats:?}");
        } else {
            // The loop's P and the requester's are two runnable Ms on a machine that may
            // have only two CPUs: never oversubscribed.
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            if cpus >= 2 {
                assert_eq!(stats.waits, 0, "{policy}: {stats:?}");
            }
        }
    }
}

/// Swaps through every strategy and GC cycles run while served Ms wait, and the runtime
/// shuts down within the watchdog afterwards.
#[test]
fn swaps_gc_and_shutdown_work_while_ms_wait() {
    on_one_cpu(|| {
        let strategies: Vec<(Plugin, String)> = SHIPPED
            .iter()
            .map(|n| (shipped(n), String::new()))
            .collect();
        let rt = runtime(&strategies[0].0, ServedPs::Auto);
        let options = RunOptions {
            gc: true,
            rotation: Some(Rotation {
                strategies,
                every: Duration::from_millis(2),
            }),
            ..RunOptions::new(Workload::Mixed, BARRIERS)
        };
        let summary = workloads::run(&rt, &options).unwrap_or_else(|e| panic!("run: {e}"));
        let gc = summary.gc.as_ref().expect("GC ran");
        let swaps = summary.swaps.as_ref().expect("swaps ran");
        assert!(gc.cycles > 0 && swaps.swaps > 0, "{summary}");
        assert_eq!(gc.values_marked, gc.values_recorded, "{summary}");
        assert!(summary.served_ps.1.waits > 0, "{summary}");
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = sole_owner(rt);
        std::thread::spawn(move || {
            rt.shutdown();
            let _ = tx.send(());
        });
        rx.recv_timeout(WATCHDOG)
            .unwrap_or_else(|_| panic!("watchdog: shutdown did not finish in {WATCHDOG:?}"));
    });
}
