//! The guarantees of `for_each_p` with the shipped strategies, at 1, 2, 4 and 8 Ps, with
//! running, idle and syscall Ps mixed. Every test runs for every strategy listed in
//! `strategy_tests!` at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{self, GStatus, WaitReason};
use safepoint_host::safepoint::{self, acquire_world, for_each_p};
use safepoint_host::workloads::work;
use safepoint_tests::{
    Kind, Mutators, P_COUNTS, block_on_bounded, checked_barriers, mixed_kinds, per_p, runtime,
};

const BARRIERS: u64 = 1000;

/// What `f` observed of the requester, one entry per P: its status, and the goroutine dump.
type Observations = Arc<Mutex<Vec<(Option<GStatus>, String)>>>;

/// Runs `barriers` barriers on a runtime of `procs` Ps while goroutines of `kinds` run, and
/// checks after each that `f` ran exactly once more for every P. Returns how many Ps served
/// themselves and how many the requester served, over all barriers.
pub(crate) fn counted_barriers(
    plugin: &Plugin,
    procs: usize,
    kinds: &[Kind],
    barriers: u64,
) -> (u32, u32) {
    let rt = runtime(plugin, "", procs);
    let mutators = Mutators::start(&rt, kinds, |_| {});
    let paths = checked_barriers(&rt, barriers, || {}, |_| {});
    mutators.stop();
    paths
}

/// Contract (1): `f` runs exactly once for every P, barrier after barrier.
fn runs_f_exactly_once_for_every_p(plugin: &Plugin) {
    for procs in P_COUNTS {
        let (by_themselves, by_requester) =
            counted_barriers(plugin, procs, &mixed_kinds(procs), BARRIERS);
        if procs >= 4 {
            assert!(
                by_themselves > 0 && by_requester > 0,
                "{procs} Ps: expected both paths, got {by_themselves} Ps by themselves and \
                 {by_requester} by the requester"
            );
        }
    }
}

/// `f` never sees P-local state half-updated: the owner updates a two-word record inside a
/// non-preemptible region, with a `poll()` in the middle that must not be a safe point.
fn never_shows_f_half_updated_p_local_state(plugin: &Plugin) {
    for procs in P_COUNTS {
        let rt = runtime(plugin, "", procs);
        let first = per_p(procs);
        let second = per_p(procs);
        let (a, b) = (Arc::clone(&first), Arc::clone(&second));
        let kinds = vec![Kind::Poller; procs.max(2)];
        let mutators = Mutators::start(&rt, &kinds, move |x| {
            let _region = runtime::no_preempt("updating the P-local record");
            let p = runtime::current_p_id()
                .expect("a goroutine runs on a P")
                .index();
            let v = a[p].load(Ordering::Relaxed) + 1;
            a[p].store(v, Ordering::Relaxed);
            runtime::poll();
            std::hint::black_box(work(x));
            b[p].store(v, Ordering::Relaxed);
        });
        let torn = Arc::new(AtomicU64::new(0));
        let t = Arc::clone(&torn);
        block_on_bounded(&rt, move || {
            for i in 0..BARRIERS {
                let world = acquire_world();
                let (first, second, torn) =
                    (Arc::clone(&first), Arc::clone(&second), Arc::clone(&t));
                for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                    let (x, y) = (
                        first[p.index()].load(Ordering::Relaxed),
                        second[p.index()].load(Ordering::Relaxed),
                    );
                    if x != y {
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap_or_else(|e| panic!("barrier {i}: {e}"));
            }
        });
        mutators.stop();
        assert_eq!(
            torn.load(Ordering::Relaxed),
            0,
            "{procs} Ps: f saw a half-updated record"
        );
    }
}

/// Litmus: each P publishes a value and reaches a safe point where `f` (on that P's thread,
/// or the requester's for a parked P) records what it saw; after the barrier the requester
/// must see every `f`'s write and every value `f` saw, with relaxed loads only, so the
/// ordering can only come from the barrier.
fn acts_as_a_global_memory_barrier(plugin: &Plugin) {
    for procs in P_COUNTS {
        let rt = runtime(plugin, "", procs);
        let published = per_p(procs);
        let pubs = Arc::clone(&published);
        let mutators = Mutators::start(&rt, &mixed_kinds(procs), move |_| {
            let _region = runtime::no_preempt("publishing");
            let p = runtime::current_p_id().expect("on a P").index();
            pubs[p].fetch_add(1, Ordering::Relaxed);
        });
        let marks = per_p(procs);
        let seen = per_p(procs);
        block_on_bounded(&rt, move || {
            for i in 1..=BARRIERS {
                let world = acquire_world();
                let (m, s, pubs) = (
                    Arc::clone(&marks),
                    Arc::clone(&seen),
                    Arc::clone(&published),
                );
                for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                    s[p.index()].store(pubs[p.index()].load(Ordering::Relaxed), Ordering::Relaxed);
                    m[p.index()].store(i, Ordering::Relaxed);
                })
                .unwrap_or_else(|e| panic!("barrier {i}: {e}"));
                for p in 0..procs {
                    assert_eq!(
                        marks[p].load(Ordering::Relaxed),
                        i,
                        "P{p}: f's write not visible after barrier {i}"
                    );
                    let (now, at_safe_point) = (
                        published[p].load(Ordering::Relaxed),
                        seen[p].load(Ordering::Relaxed),
                    );
                    assert!(
                        now >= at_safe_point,
                        "P{p}: published {now} < {at_safe_point} seen at its safe point"
                    );
                }
            }
        });
        mutators.stop();
    }
}

/// Go change 533455: during the barrier the caller's G is `Waiting(reason)`, and the dump
/// shows it so; afterwards it is `Running` again. The unchecked entry point leaves it
/// `Running`.
fn caller_is_waiting_during_the_barrier_and_the_dump_shows_it(plugin: &Plugin) {
    for procs in P_COUNTS {
        let rt = runtime(plugin, "", procs);
        let mutators = Mutators::start(&rt, &mixed_kinds(procs), |_| {});
        let rt2 = Arc::clone(&rt);
        let (me, during, during_unchecked, after) = block_on_bounded(&rt, move || {
            let me = runtime::current_goid().expect("on a goroutine");
            let observe = |rt: &Arc<safepoint_host::runtime::Runtime>, log: &Observations| {
                let (rt, log) = (Arc::clone(rt), Arc::clone(log));
                move |_p| {
                    log.lock()
                        .push((rt.goroutine_status(me), rt.goroutine_dump()))
                }
            };
            let during = Arc::new(Mutex::new(Vec::new()));
            let during_unchecked = Arc::new(Mutex::new(Vec::new()));
            let world = acquire_world();
            for_each_p(&world, WaitReason::FlushProcCaches, observe(&rt2, &during))
                .expect("barrier");
            let after = rt2.goroutine_status(me);
            // SAFETY: no GC runs in this test, so nothing waits for this goroutine.
            unsafe { safepoint::for_each_p_unchecked(&world, observe(&rt2, &during_unchecked)) }
                .expect("unchecked barrier");
            let take = |log: Arc<Mutex<Vec<_>>>| std::mem::take(&mut *log.lock());
            (me, take(during), take(during_unchecked), after)
        });
        mutators.stop();
        assert_eq!(during.len(), procs);
        let header = format!("goroutine {} [flushing proc caches]:", me.0);
        for (status, dump) in &during {
            assert_eq!(*status, Some(GStatus::Waiting(WaitReason::FlushProcCaches)));
            assert!(
                dump.contains(&header),
                "{procs} Ps: dump lacks `{header}`:\n{dump}"
            );
        }
        assert_eq!(after, Some(GStatus::Running));
        for (status, _) in &during_unchecked {
            assert_eq!(*status, Some(GStatus::Running));
        }
    }
}

// `test_frozen` is the plugin built against the frozen ABI 2.0 (`tests/fixtures/`), in this
// host.
safepoint_tests::strategy_tests!(
    strategies: [polling, futex, signal, test_frozen],
    tests: [
        runs_f_exactly_once_for_every_p,
        never_shows_f_half_updated_p_local_state,
        acts_as_a_global_memory_barrier,
        caller_is_waiting_during_the_barrier_and_the_dump_shows_it,
    ]
);
