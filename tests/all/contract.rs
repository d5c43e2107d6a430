//! The host checks the strategy's contract itself: a strategy that skips or repeats a P, or
//! panics, is reported as an error naming the strategy and the P, and the runtime goes on.

use safepoint_abi::{ErrorKind, PId};
use safepoint_host::runtime::WaitReason;
use safepoint_host::safepoint::{BarrierError, acquire_world, for_each_p};
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
