//! Single-P handshakes (ABI 2.1): `f` runs exactly once, for the handshake's P only, under
//! every workload; a strategy without the capability is refused, naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use safepoint_abi::PId;
use safepoint_host::plugin::{self, Plugin};
use safepoint_host::runtime::{self, GStatus, WaitReason};
use safepoint_host::safepoint::{BarrierError, acquire_world, for_each_p, handshake};
use safepoint_host::workloads::work;
use safepoint_tests::{
    Kind, Mutators, SHIPPED, WATCHDOG, block_on_bounded, mixed_kinds, per_p, plugin_file, runtime,
    shipped, within,
};

const HANDSHAKES: u64 = 400;

/// Runs `HANDSHAKES` handshakes round robin over the Ps other than the requester's, while
/// goroutines of `kinds` run, and checks after each that `f` ran once more for its P and
/// for no other. Returns how many the P's own M ran.
fn checked_handshakes(
    plugin: &Plugin,
    procs: usize,
    kinds: &[Kind],
    barriers_between: bool,
) -> u64 {
    let rt = runtime(plugin, "", procs);
    let mutators = Mutators::start(&rt, kinds, |_| {});
    let counts = per_p(procs);
    let by_itself = block_on_bounded(&rt, move || {
        let own = runtime::current_p_id().expect("a goroutine holds a P");
        let others: Vec<PId> = (0..procs as u32).map(PId).filter(|&p| p != own).collect();
        let mut expected = vec![0u64; procs];
        let mut by_itself = 0;
        for i in 0..HANDSHAKES {
            let p = others[i as usize % others.len()];
            let world = acquire_world();
            let c = Arc::clone(&counts);
            let report = handshake(&world, WaitReason::GcMarkTermination, p, move |q| {
                c[q.index()].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap_or_else(|e| panic!("{procs} Ps, handshake {i} for {p}: {e}"));
            expected[p.index()] += 1;
            by_itself += u64::from(report.by_itself);
            if barriers_between && i % 8 == 0 {
                let c = Arc::clone(&counts);
                for_each_p(&world, WaitReason::GcMarkTermination, move |q| {
                    c[q.index()].fetch_add(1, Ordering::Relaxed);
                })
                .unwrap_or_else(|e| panic!("{procs} Ps, barrier after handshake {i}: {e}"));
                for n in &mut expected {
                    *n += 1;
                }
            }
            for (q, n) in counts.iter().enumerate() {
                assert_eq!(
                    n.load(Ordering::Relaxed),
                    expected[q],
                    "{procs} Ps: P{q} after handshake {i} for {p}"
                );
            }
        }
        by_itself
    });
    mutators.stop();
    by_itself
}

/// `f` runs exactly once, for the handshake's P only, with running, idle, syscall and
/// churning Ps mixed, at 2, 4 and 8 Ps.
fn runs_f_exactly_once_only_for_its_p(plugin: &Plugin) {
    for procs in [2, 4, 8] {
        checked_handshakes(plugin, procs, &mixed_kinds(procs), false);
    }
}

/// Each workload kind alone: every P polling, every P in syscalls, idle, churning.
fn runs_f_exactly_once_under_every_workload(plugin: &Plugin) {
    for kind in [Kind::Poller, Kind::Blocker, Kind::Sleeper, Kind::Churner] {
        checked_handshakes(plugin, 4, &[kind; 4], false);
    }
}

/// Handshakes and full barriers alternate under one worldsema.
fn interleaves_with_barriers(plugin: &Plugin) {
    checked_handshakes(plugin, 4, &mixed_kinds(4), true);
}

/// The requester's goroutine is `Waiting(reason)` while the handshake runs.
fn caller_is_waiting_during_the_handshake(plugin: &Plugin) {
    let rt = runtime(plugin, "", 2);
    let mutators = Mutators::start(&rt, &[Kind::Poller, Kind::Poller], |_| {});
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let s = Arc::clone(&seen);
    let rt2 = Arc::clone(&rt);
    block_on_bounded(&rt, move || {
        let me = runtime::current_goid().expect("on a goroutine");
        let own = runtime::current_p_id().expect("a P");
        let other = PId(1 - own.0);
        let world = acquire_world();
        handshake(&world, WaitReason::GcMarkTermination, other, move |_| {
            *s.lock() = rt2.goroutine_status(me);
        })
        .expect("handshake");
    });
    mutators.stop();
    assert_eq!(
        *seen.lock(),
        Some(GStatus::Waiting(WaitReason::GcMarkTermination))
    );
}

safepoint_tests::strategy_tests!(
    strategies: [polling, futex, signal],
    tests: [
        runs_f_exactly_once_only_for_its_p,
        runs_f_exactly_once_under_every_workload,
        interleaves_with_barriers,
        caller_is_waiting_during_the_handshake,
    ]
);

/// Signal reaches a P whose goroutine never polls; only that P's thread gets signals.
#[test]
fn signal_handshakes_reach_a_goroutine_that_never_polls() {
    let signal = safepoint_tests::shipped("signal");
    let rt = runtime(&signal, "", 2);
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let (st, sp) = (Arc::clone(&stop), Arc::clone(&spins));
    rt.spawn("nopoll", move || {
        let mut x = 1;
        while !st.load(Ordering::Relaxed) {
            x = work(x);
            sp.fetch_add(1, Ordering::Relaxed);
        }
    });
    let counts = per_p(2);
    let c = Arc::clone(&counts);
    block_on_bounded(&rt, move || {
        let own = runtime::current_p_id().expect("a P");
        let other = PId(1 - own.0);
        for i in 0..200u64 {
            let world = acquire_world();
            let counted = Arc::clone(&c);
            handshake(&world, WaitReason::GcMarkTermination, other, move |q| {
                counted[q.index()].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap_or_else(|e| panic!("handshake {i}: {e}"));
            assert_eq!(c[other.index()].load(Ordering::Relaxed), i + 1);
            assert_eq!(c[own.index()].load(Ordering::Relaxed), 0);
        }
    });
    stop.store(true, Ordering::Relaxed);
    assert!(spins.load(Ordering::Relaxed) > 0);
}

/// The frozen 2.0 plugin has no handshake: refused, naming the missing capability.
#[test]
fn a_strategy_without_the_capability_is_refused_naming_it() {
    let frozen = plugin::load_path(&plugin_file("safepoint_test_frozen")).expect("load frozen");
    let rt = runtime(&frozen, "", 2);
    let err = block_on_bounded(&rt, || {
        let world = acquire_world();
        handshake(&world, WaitReason::GcMarkTermination, PId(1), |_| {})
            .expect_err("frozen has no handshake")
    });
    assert!(
        matches!(err, BarrierError::MissingCapability { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "strategy frozen cannot do a single-P handshake: it lacks the single-p-handshake \
         capability; choose a strategy that has it (`safepoint list` shows each one's \
         capabilities)"
    );
}

/// Handshakes and swaps interleave safely: while a thread swaps through every shipped
/// strategy and the frozen 2.0 one, a goroutine performs handshakes round robin; each runs
/// `f` exactly once for its P only, or, while the frozen strategy is active, is refused
/// without running it. It goes on until the rotation has gone round three times and it has
/// handshaken often under every strategy.
#[test]
fn handshakes_and_swaps_interleave_safely() {
    const PROCS: usize = 4;
    const EACH: u64 = 200;
    const ROUNDS: u64 = 3;
    let mut rotation: Vec<Plugin> = SHIPPED.iter().map(|name| shipped(name)).collect();
    rotation.push(plugin::load_path(&plugin_file("safepoint_test_frozen")).expect("load frozen"));
    let names: Vec<String> = rotation.iter().map(|p| p.name().to_owned()).collect();
    let rt = runtime(&rotation[0], "", PROCS);
    let mutators = Mutators::start(&rt, &mixed_kinds(PROCS), |_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let (rt2, stop2, swaps2) = (Arc::clone(&rt), Arc::clone(&stop), Arc::clone(&swaps));
    let swapper = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let n = swaps2.load(Ordering::Relaxed);
            let next = &rotation[(n as usize + 1) % rotation.len()];
            rt2.swap_strategy(next, "")
                .unwrap_or_else(|e| panic!("swap {n} to {}: {e}", next.name()));
            swaps2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let wanted_swaps = ROUNDS * names.len() as u64;
    let counts = per_p(PROCS);
    let rt3 = Arc::clone(&rt);
    block_on_bounded(&rt, move || {
        let mut expected = [0u64; PROCS];
        let mut seen = vec![0u64; names.len()];
        let mut i = 0u64;
        while swaps.load(Ordering::Relaxed) < wanted_swaps || seen.iter().any(|&n| n < EACH) {
            let world = acquire_world();
            // No swap while the world is held: this is the strategy the handshake uses.
            let active = rt3.strategy_name();
            let own = runtime::current_p_id().expect("a goroutine holds a P");
            let p = PId((own.0 + 1 + (i % (PROCS as u64 - 1)) as u32) % PROCS as u32);
            let c = Arc::clone(&counts);
            let result = handshake(&world, WaitReason::GcMarkTermination, p, move |q| {
                c[q.index()].fetch_add(1, Ordering::Relaxed);
            });
            drop(world);
            match result {
                Ok(_) => expected[p.index()] += 1,
                Err(BarrierError::MissingCapability { strategy, .. }) if strategy == "frozen" => {}
                Err(e) => panic!("handshake {i} for {p} under {active}: {e}"),
            }
            for (q, n) in counts.iter().enumerate() {
                assert_eq!(
                    n.load(Ordering::Relaxed),
                    expected[q],
                    "P{q} after handshake {i} for {p} under {active}"
                );
            }
            let index = names
                .iter()
                .position(|n| *n == active)
                .expect("a known strategy");
            seen[index] += 1;
            i += 1;
            runtime::poll();
        }
    });
    stop.store(true, Ordering::Relaxed);
    within(&rt, WATCHDOG, "the swapper", move || swapper.join())
        .unwrap_or_else(|hung| panic!("{hung}"))
        .expect("the swapper did not panic");
    mutators.stop();
}
