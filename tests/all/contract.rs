//! The host checks the strategy's contract itself: a strategy that skips or repeats a P, or
//! panics, is reported as an error naming the strategy and the P, and the runtime goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use safepoint_abi::{ErrorKind, PId};
use safepoint_host::runtime::{self, WaitReason};
use safepoint_host::safepoint::{BarrierError, acquire_world, for_each_p};
use safepoint_host::workloads::work;
use safepoint_tests::{block_on_bounded, misbehave, polling, runtime};

fn one_barrier(config: &str, procs: usize) -> Result<(), BarrierError> {
    let rt = runtime(&misbehave(), config, procs);
    block_on_bounded(&rt, || {
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
    })
}

#[test]
fn a_strategy_that_skips_a_p_is_reported_naming_it() {
    let err = one_barrier("skip=2", 4).expect_err("a skipped P must be reported");
    assert!(
        matches!(&err, BarrierError::Skipped { strategy, p: PId(2), missing: 1 } if strategy == "misbehave"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "strategy misbehave broke the for_each_p contract: f did not run for P2 (1 P(s) missed in all)"
    );
}

#[test]
fn a_strategy_that_runs_a_p_twice_is_reported_naming_it() {
    let err = one_barrier("twice=1", 3).expect_err("a repeated P must be reported");
    assert!(
        matches!(&err, BarrierError::Repeated { strategy, p: PId(1), times: 2 } if strategy == "misbehave"),
        "{err:?}"
    );
    assert!(err.to_string().contains("f ran 2 times for P1"), "{err}");
}

#[test]
fn a_well_behaved_config_of_the_test_plugin_passes_the_check() {
    one_barrier("", 4).expect("every P once");
}

#[test]
fn a_panic_in_the_strategy_is_caught_at_the_boundary_and_reported() {
    let err =
        one_barrier("panic_in=for_each_p_internal", 2).expect_err("the panic must be reported");
    let BarrierError::Strategy { strategy, error } = &err else {
        panic!("expected a strategy error, got {err:?}");
    };
    assert_eq!(strategy, "misbehave");
    assert_eq!(error.kind, ErrorKind::Panicked);
    assert_eq!(error.entry_point.as_str(), "for_each_p_internal");
    assert!(error.message.contains("deliberate panic"), "{error}");
}

#[test]
fn a_panic_in_f_is_reported_and_the_runtime_keeps_working() {
    let rt = runtime(&polling(), "", 2);
    let (first, second) = block_on_bounded(&rt, || {
        let world = acquire_world();
        let first = for_each_p(&world, WaitReason::GcMarkTermination, |p| {
            assert!(p != PId(0), "f refuses P0");
        });
        let second = for_each_p(&world, WaitReason::GcMarkTermination, |_| {});
        (first.map(drop), second.map(drop))
    });
    let err = first.expect_err("the panic must be reported");
    assert!(
        matches!(&err, BarrierError::FnPanicked { p: PId(0), message } if message.contains("f refuses P0")),
        "{err:?}"
    );
    second.expect("the next barrier works");
}

/// Issue 11, defect 7: a strategy that panics while a running P is still pending (armed, left
/// to serve itself at its next poll) has the round abandoned as the panic unwinds: the P is
/// withdrawn and disarmed, so it never runs `f` after `for_each_p` returned.
#[test]
fn a_panic_while_a_p_is_pending_withdraws_it_so_that_f_never_runs_late() {
    let rt = runtime(&misbehave(), "panic_in=wait", 2);
    let (returned, late, polls, running) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    // On the other P: computes without polling until the barrier has returned, then polls.
    let (r, n, started) = (
        Arc::clone(&returned),
        Arc::clone(&polls),
        Arc::clone(&running),
    );
    rt.spawn("poller", move || {
        started.store(true, Ordering::Release);
        let mut x = 0;
        while n.load(Ordering::Relaxed) < 10_000 {
            x = work(x);
            if r.load(Ordering::Acquire) {
                runtime::poll();
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::hint::black_box(x);
    });
    let (r, l, n) = (Arc::clone(&returned), Arc::clone(&late), Arc::clone(&polls));
    let err = block_on_bounded(&rt, move || {
        while !running.load(Ordering::Acquire) {
            runtime::yield_now();
        }
        let world = acquire_world();
        let r2 = Arc::clone(&r);
        let result = for_each_p(&world, WaitReason::GcMarkTermination, move |_| {
            if r2.load(Ordering::Acquire) {
                l.fetch_add(1, Ordering::Relaxed);
            }
        });
        r.store(true, Ordering::Release);
        // Every one of these polls would serve a stale arm.
        while n.load(Ordering::Relaxed) < 10_000 {
            runtime::yield_now();
        }
        result.map(drop)
    })
    .expect_err("the strategy panics");
    let BarrierError::Strategy { error, .. } = &err else {
        panic!("expected a strategy error, got {err:?}");
    };
    assert_eq!(error.kind, ErrorKind::Panicked);
    assert!(
        error
            .message
            .contains("deliberate panic while 1 P(s) are pending"),
        "{error}"
    );
    assert_eq!(
        late.load(Ordering::Relaxed),
        0,
        "f ran for the pending P after for_each_p returned"
    );
}
