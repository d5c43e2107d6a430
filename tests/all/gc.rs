//! The GC workload (Go's concurrent mark with its two `forEachP` call sites) and the
//! deadlock that the host's wrapper prevents, for every strategy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use safepoint_abi::Capabilities;
use safepoint_host::gc::{DeadlockMode, Gc, demo_deadlock};
use safepoint_host::plugin::{self, Plugin};
use safepoint_host::runtime::{self, Runtime, WaitGroup};
use safepoint_host::workloads::{self, RunError, RunOptions, Workload, work};
use safepoint_tests::{
    Kind, Mutators, block_on_bounded, counter, plugin_file, run_bounded, runtime, shipped,
};

const CYCLES: u64 = 1000;
/// More Ps than the CI machine's 2 cores: oversubscribed.
const PROCS: usize = 4;

/// Mutator goroutines that record values, allocate and change their roots, each also doing
/// what its kind does (polling, blocking, sleeping, spawning short-lived goroutines).
fn start_gc_mutators(rt: &Runtime, gc: &Arc<Gc>, kinds: &[Kind]) -> (Arc<AtomicBool>, WaitGroup) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = WaitGroup::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let (gc, stop, done) = (Arc::clone(gc), Arc::clone(&stop), done.clone());
        done.add(1);
        rt.spawn("GC mutator", move || {
            let mutator = gc.mutator();
            let mut x = i as u64;
            while !stop.load(Ordering::Relaxed) {
                mutator.record();
                mutator.allocate();
                x = kind.step(work(x));
                mutator.update_roots(x);
                runtime::poll();
            }
            done.done();
        });
    }
    (stop, done)
}

fn gc_cycles_lose_nothing_and_mark_nothing_twice(plugin: &Plugin) {
    // Two Ps keep 1,000 cycles within seconds; the oversubscribed case (more Ps than cores,
    // where a late P waits for a CPU) is covered by the barrier tests at 4 and 8 Ps.
    let rt = runtime(plugin, "", 2);
    let gc = Gc::start(&rt, 2);
    let kinds = [
        Kind::Poller,
        Kind::Blocker,
        Kind::Sleeper,
        Kind::Churner,
        Kind::Poller,
    ];
    let (stop, mutators) = start_gc_mutators(&rt, &gc, &kinds);
    let churn = Mutators::start(&rt, &[Kind::Churner], |_| {});
    let gc2 = Arc::clone(&gc);
    let marked = block_on_bounded(&rt, move || {
        let mut marked = 0;
        for _ in 0..CYCLES {
            let recorded_before = gc2.values_recorded();
            let report = gc2.cycle().unwrap_or_else(|e| panic!("{e}"));
            assert!(report.stacks_scanned >= kinds.len() as u64, "{report:?}");
            marked += report.values_marked;
            // Everything recorded before the cycle is marked, so each mutator keeps only
            // the bits of what it recorded since, plus a partial word at either end: the
            // mark state is bounded by the values in flight, not by the values ever seen.
            let in_flight = gc2.values_recorded() - recorded_before;
            assert!(
                report.mark_words <= in_flight / 64 + 2 * kinds.len() as u64,
                "cycle {}: {} mark words retained for {in_flight} values in flight",
                report.cycle,
                report.mark_words
            );
        }
        marked
    });
    stop.store(true, Ordering::Relaxed);
    mutators.wait();
    churn.stop();
    let gc2 = Arc::clone(&gc);
    let last = block_on_bounded(&rt, move || gc2.cycle().unwrap_or_else(|e| panic!("{e}")));
    gc.stop_workers();
    assert!(
        last.mark_words <= kinds.len() as u64,
        "with every value marked, at most one partial word per mutator: {} words",
        last.mark_words
    );
    assert_eq!(gc.cycles(), CYCLES + 1);
    let recorded = gc.values_recorded();
    assert!(recorded > 0);
    assert_eq!(
        marked + last.values_marked,
        recorded,
        "every recorded value is marked exactly once"
    );
}

/// During `gc_mark_done`, the dump shows the GC goroutine as `[GC mark termination]`.
fn dump_shows_the_gc_goroutine_in_mark_termination(plugin: &Plugin) {
    let rt = runtime(plugin, "", PROCS);
    let gc = Gc::start(&rt, 1);
    let dumps = Arc::new(Mutex::new(Vec::new()));
    let (rt2, d) = (Arc::clone(&rt), Arc::clone(&dumps));
    gc.observe_mark_done(move |_| d.lock().push(rt2.goroutine_dump()));
    let (stop, mutators) = start_gc_mutators(&rt, &gc, &[Kind::Poller, Kind::Sleeper]);
    let gc2 = Arc::clone(&gc);
    let driver = block_on_bounded(&rt, move || {
        gc2.cycle().unwrap_or_else(|e| panic!("{e}"));
        runtime::current_goid().expect("on a goroutine")
    });
    stop.store(true, Ordering::Relaxed);
    mutators.wait();
    gc.stop_workers();
    let dumps = dumps.lock();
    assert_eq!(dumps.len(), PROCS, "one observation per P");
    let header = format!("goroutine {} [GC mark termination]:", driver.0);
    for dump in dumps.iter() {
        assert!(dump.contains(&header), "dump lacks `{header}`:\n{dump}");
    }
}

fn deadlock_demo_completes_through_for_each_p(plugin: &Plugin) {
    for procs in [2, 4] {
        let rt = runtime(plugin, "", procs);
        let rt2 = Arc::clone(&rt);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ =
                tx.send(demo_deadlock(&rt2, DeadlockMode::Safe, 1000).map_err(|e| e.to_string()));
        });
        let completed = rx
            .recv_timeout(safepoint_tests::WATCHDOG)
            .unwrap_or_else(|_| panic!("the safe demo hung:\n{}", rt.goroutine_dump()));
        assert_eq!(completed, Ok(1000));
    }
}

safepoint_tests::strategy_tests!(
    strategies: [polling, futex, signal],
    tests: [
        gc_cycles_lose_nothing_and_mark_nothing_twice,
        dump_shows_the_gc_goroutine_in_mark_termination,
        deadlock_demo_completes_through_for_each_p,
    ]
);

/// Goroutines that compute and change their roots without ever polling: only a handshake
/// that stops their P asynchronously lets the GC scan them.
fn start_spinners(rt: &Runtime, gc: &Arc<Gc>, count: usize) -> (Arc<AtomicBool>, WaitGroup) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = WaitGroup::new();
    for i in 0..count {
        let (gc, stop, done) = (Arc::clone(gc), Arc::clone(&stop), done.clone());
        done.add(1);
        rt.spawn("nopoll spinner", move || {
            let mutator = gc.mutator();
            let mut x = i as u64;
            while !stop.load(Ordering::Relaxed) {
                x = work(x);
                mutator.update_roots(x);
            }
            drop(mutator);
            done.done();
        });
    }
    (stop, done)
}

/// With signal, the GC scans goroutines that never poll: each cycle's mark reaches every
/// spinner through a handshake (its roots scanned, never half-updated), and the values of
/// the polling mutators beside them are each marked exactly once.
#[test]
fn signal_gc_scans_goroutines_that_never_poll_and_loses_nothing() {
    const SPINNERS: usize = 2;
    let rt = runtime(&shipped("signal"), "", 4);
    let gc = Gc::start(&rt, 2);
    let kinds = [Kind::Poller, Kind::Sleeper, Kind::Blocker];
    let (stop_spinners, spinners) = start_spinners(&rt, &gc, SPINNERS);
    let (stop, mutators) = start_gc_mutators(&rt, &gc, &kinds);
    let gc2 = Arc::clone(&gc);
    let marked = block_on_bounded(&rt, move || {
        let mut marked = 0;
        for _ in 0..300 {
            let report = gc2.cycle().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                report.stacks_scanned >= (kinds.len() + SPINNERS) as u64,
                "{report:?}"
            );
            marked += report.values_marked;
        }
        marked
    });
    assert!(
        counter(&rt, "handshakes") >= 300,
        "a running spinner is scanned through a handshake in every cycle: {:?}",
        rt.strategy_counters()
    );
    stop.store(true, Ordering::Relaxed);
    mutators.wait();
    stop_spinners.store(true, Ordering::Relaxed);
    spinners.wait();
    let gc2 = Arc::clone(&gc);
    let last = block_on_bounded(&rt, move || gc2.cycle().unwrap_or_else(|e| panic!("{e}")));
    gc.stop_workers();
    let recorded = gc.values_recorded();
    assert!(recorded > 0);
    assert_eq!(
        marked + last.values_marked,
        recorded,
        "each value marked once"
    );
}

/// `run --gc --workload nopoll` with signal, at 2 and 4 Ps, repeated: every cycle's
/// invariants hold, and the run's values add up.
#[test]
fn signal_runs_nopoll_under_gc() {
    for round in 0..3 {
        for procs in [2, 4] {
            let rt = runtime(&shipped("signal"), "", procs);
            let options = RunOptions {
                gc: true,
                ..RunOptions::new(Workload::NoPoll, 200)
            };
            let summary = run_bounded(&rt, &options);
            let gc = summary.gc.expect("a GC summary");
            assert!(gc.cycles >= 1, "round {round}, {procs} Ps: {gc:?}");
            assert_eq!(gc.values_recorded, gc.values_marked, "{procs} Ps");
            assert!(counter(&rt, "handshakes") > 0, "{procs} Ps");
        }
    }
}

/// Polling and futex cannot reach a goroutine that never polls, and the frozen 2.0 plugin
/// has no handshake at all: `--gc` beside nopoll is refused up front, naming what is missing.
#[test]
fn gc_beside_nopoll_is_refused_without_both_capabilities() {
    let frozen = plugin::load_path(&plugin_file("safepoint_test_frozen")).expect("load frozen");
    let needs = Capabilities::REACHES_NON_POLLING_PS.union(Capabilities::SINGLE_P_HANDSHAKE);
    for (plugin, missing) in [
        (shipped("polling"), Capabilities::REACHES_NON_POLLING_PS),
        (shipped("futex"), Capabilities::REACHES_NON_POLLING_PS),
        (frozen, needs),
    ] {
        let rt = runtime(&plugin, "", 2);
        let options = RunOptions {
            gc: true,
            ..RunOptions::new(Workload::NoPoll, 10)
        };
        let err = workloads::run(&rt, &options).expect_err("refused");
        assert!(
            matches!(&err, RunError::GcUnsupported { missing: m, needs: n, .. }
                if *m == missing && *n == needs),
            "{}: {err:?}",
            plugin.name()
        );
        let message = err.to_string();
        assert!(
            message.contains("single-p-handshake")
                && message.contains(&format!("{} lacks {missing}", plugin.name())),
            "{message}"
        );
        assert_eq!(err.needs(), Some(needs));
    }
}
