//! The futex strategy's own promises: the requester sleeps rather than spins, a P that is
//! late for the barrier is re-poked and the barrier completes, and the plugin says so.

use std::sync::{Arc, Weak};

use safepoint_abi::Capabilities;
use safepoint_host::runtime::{self, Runtime, WaitGroup, WaitReason};
use safepoint_host::safepoint::{acquire_world, for_each_p};
use safepoint_tests::{Mutators, P_COUNTS, block_on_bounded, mixed_kinds, runtime, shipped};

const BARRIERS: u64 = 1000;

/// The futex strategy's counters, by name.
struct Counters(Vec<(String, u64)>);

impl Counters {
    fn of(rt: &Runtime) -> Counters {
        Counters(rt.strategy_counters())
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no counter `{name}` in {:?}", self.0))
            .1
    }
}

#[test]
fn the_plugin_says_it_never_busy_waits() {
    let futex = shipped("futex");
    assert_eq!(futex.name(), "futex");
    assert!(futex.capabilities().contains(Capabilities::NO_BUSY_WAIT));
}

/// Every futex wait of the requester ends in one of four ways, and the bound counts each:
///
/// - woken: only the last acknowledgement of a barrier wakes, so over the run there are at
///   most as many of these as barriers (a wake that arrives one barrier late is still one);
/// - the word changed before the sleep began: each such change is an acknowledgement, at
///   most `procs - 1` per barrier;
/// - timed out, or interrupted by a signal: counted by the strategy.
///
/// So `waits <= barriers * procs + timeouts + interruptions`, whatever the time each barrier
/// waited; a spinning requester (a wait loop that returns at once) breaks it. With one P
/// there is nobody to wait for, and the requester never sleeps.
#[test]
fn the_requester_sleeps_a_bounded_number_of_times_per_barrier() {
    for procs in P_COUNTS {
        let rt = runtime(&shipped("futex"), "", procs);
        let mutators = Mutators::start(&rt, &mixed_kinds(procs), |_| {});
        block_on_bounded(&rt, || {
            for i in 1..=BARRIERS {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
                    .unwrap_or_else(|e| panic!("barrier {i}: {e}"));
            }
        });
        mutators.stop();
        let c = Counters::of(&rt);
        let (waits, wakes) = (c.get("futex waits"), c.get("futex wakes"));
        let (timeouts, interruptions) = (c.get("wait timeouts"), c.get("wait interruptions"));
        eprintln!(
            "{procs} Ps, {BARRIERS} barriers: {waits} futex waits, {wakes} wakes, \
             {timeouts} timeouts"
        );
        assert_eq!(c.get("barriers"), BARRIERS);
        assert!(wakes <= BARRIERS, "{procs} Ps: {wakes} wakes");
        let bound = BARRIERS * procs as u64 + timeouts + interruptions;
        assert!(
            waits <= bound,
            "{procs} Ps: {waits} futex waits in {BARRIERS} barriers, more than {bound}"
        );
        if procs == 1 {
            assert_eq!((waits, wakes), (0, 0), "1 P: nobody to wait for");
        }
    }
}

fn timeouts_so_far(rt: &Weak<Runtime>) -> u64 {
    rt.upgrade()
        .map_or(0, |rt| Counters::of(&rt).get("wait timeouts"))
}

/// A P stays in a non-preemptible region until the requester's wait has timed out: the
/// requester re-pokes it and goes back to sleep, and the barrier completes once the P
/// acknowledges at the end of its region. The region ends on what the P observes, not on a
/// time.
///
/// That the last acknowledgement's wake reaches a sleeping requester is shown by the loom
/// model (`strategies/futex/tests/loom_protocol.rs`) and, on the real futex, by the unit test
/// `sys::tests::a_wake_after_a_change_ends_the_sleep`: here a lost wake would be covered by
/// the next re-poke, and the wake counter is written after the wake, so it is only bounded.
#[test]
fn a_late_p_is_re_poked_and_the_barrier_completes() {
    // One P has nobody to be late.
    for procs in P_COUNTS.into_iter().filter(|&n| n >= 2) {
        let rt = runtime(&shipped("futex"), "repoke=1ms", procs);
        let (in_region, late_done) = (WaitGroup::new(), WaitGroup::new());
        in_region.add(1);
        late_done.add(1);
        let (entered, done, weak) = (in_region.clone(), late_done.clone(), Arc::downgrade(&rt));
        rt.spawn("late", move || {
            {
                let _region = runtime::no_preempt("late until the requester re-pokes");
                entered.done();
                while timeouts_so_far(&weak) == 0 {
                    std::thread::yield_now();
                }
            } // The region's end polls: the barrier is served here.
            done.done();
        });
        let report = block_on_bounded(&rt, move || {
            in_region.wait();
            let world = acquire_world();
            for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).expect("barrier")
        });
        late_done.wait();
        let c = Counters::of(&rt);
        let (waits, timeouts) = (c.get("futex waits"), c.get("wait timeouts"));
        // The late P cannot be stopped while it runs: it ran f for itself (and other Ps may
        // have too).
        assert!(report.by_themselves >= 1, "{procs} Ps: {report:?}");
        assert!(timeouts >= 1, "{procs} Ps: the requester never timed out");
        let wakes = c.get("futex wakes");
        assert!(wakes <= 1, "{procs} Ps: {wakes} wakes for one barrier");
        let bound = procs as u64 + timeouts + c.get("wait interruptions");
        assert!(
            waits <= bound,
            "{procs} Ps: {waits} futex waits for one barrier, more than {bound}"
        );
    }
}
