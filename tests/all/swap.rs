//! Swapping the active strategy while the runtime runs.

use std::path::Path;
use std::time::Duration;

use safepoint_abi::ErrorKind;
use safepoint_host::plugin::{self, LoadError};
use safepoint_host::runtime::{Runtime, SwapError, WaitReason};
use safepoint_host::safepoint::{BarrierError, OnTimeout, acquire_world, for_each_p};
use safepoint_host::workloads::{self, Rotation, RunOptions, Workload};
use safepoint_tests::{
    SHIPPED, block_on_bounded, misbehave, plugin_file, polling, runtime, shipped,
};

fn one_barrier(rt: &std::sync::Arc<Runtime>) -> Result<(), BarrierError> {
    block_on_bounded(rt, || {
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
    })
}

/// Mutators, GC cycles and barriers run while the strategy rotates about every millisecond
/// through every shipped strategy (each twice, with two configurations where it has them):
/// every swap succeeds, no barrier hangs, and nothing the GC tracks is lost or doubled.
#[test]
fn strategies_rotate_every_millisecond_under_gc_and_barriers() {
    let mut strategies = Vec::new();
    for name in SHIPPED {
        strategies.push((shipped(name), String::new()));
    }
    strategies.push((polling(), "spin=0".to_owned()));
    let rt = Runtime::builder()
        .procs(4)
        .safepoint_timeout(Some(Duration::from_secs(5)), OnTimeout::Report)
        .build(&strategies[0].0, "")
        .expect("runtime");
    let options = RunOptions {
        gc: true,
        rotation: Some(Rotation {
            strategies: strategies.clone(),
            every: Duration::from_millis(1),
        }),
        ..RunOptions::new(Workload::Mixed, 3000)
    };
    let summary = workloads::run(&rt, &options).unwrap_or_else(|e| panic!("{e}"));
    let swaps = summary.swaps.expect("rotation reports swaps");
    assert!(
        swaps.swaps >= strategies.len() as u64,
        "only {} swaps",
        swaps.swaps
    );
    let gc = summary.gc.expect("GC summary");
    assert!(gc.cycles > 0);
    assert_eq!(gc.values_recorded, gc.values_marked);
    let barriers: u64 = summary.by_strategy.iter().map(|(_, h)| h.len()).sum();
    assert_eq!(barriers, 3000);
}

#[test]
fn a_swap_to_a_failing_constructor_keeps_the_old_strategy_working() {
    let rt = runtime(&polling(), "", 2);
    let err = rt
        .swap_strategy(&misbehave(), "fail_new=no such mechanism here")
        .expect_err("the constructor fails");
    assert!(
        matches!(&err, SwapError::Start(e) if matches!(e.downcast_ref(), Some(LoadError::ConstructorFailed { message, .. }) if message == "no such mechanism here")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot swap to a new strategy, the old one stays active"),
        "{err}"
    );
    assert_eq!(rt.strategy_name(), "polling");
    one_barrier(&rt).expect("the old strategy still works");
}

#[test]
fn a_swap_whose_attach_fails_keeps_the_old_strategy_working() {
    let rt = runtime(&polling(), "", 2);
    one_barrier(&rt).expect("starts an M");
    let err = rt
        .swap_strategy(&misbehave(), "fail_attach=0")
        .expect_err("the first M attached is refused");
    let SwapError::Attach {
        strategy,
        old,
        m,
        error,
    } = &err
    else {
        panic!("expected an attach failure, got {err:?}");
    };
    assert_eq!((strategy.as_str(), old.as_str()), ("misbehave", "polling"));
    assert_eq!(error.kind, ErrorKind::Failed);
    assert!(
        error.message.as_str().contains(&m.to_string()),
        "the error names the M refused: {err}"
    );
    assert_eq!(rt.strategy_name(), "polling");
    one_barrier(&rt).expect("the old strategy still works");
}

#[test]
fn swaps_from_a_goroutine_and_from_a_thread_change_the_strategy_the_barrier_uses() {
    let rt = runtime(&polling(), "", 3);
    let report = rt
        .swap_strategy(&misbehave(), "skip=1")
        .expect("swap from a thread");
    assert_eq!(
        (report.old.as_str(), report.new.as_str()),
        ("polling", "misbehave")
    );
    assert!(report.world_held <= report.took);
    let err = one_barrier(&rt).expect_err("the new strategy skips P1");
    assert!(
        matches!(err, BarrierError::Skipped { ref strategy, .. } if strategy == "misbehave"),
        "{err:?}"
    );
    let rt2 = std::sync::Arc::clone(&rt);
    let back = block_on_bounded(&rt, move || rt2.swap_strategy(&polling(), ""))
        .expect("swap from a goroutine");
    assert_eq!(back.new, "polling");
    one_barrier(&rt).expect("polling again");
}

/// Replaces `target` by a copy of `source` the way cargo does: a new file renamed over it.
fn replace_file(source: &Path, target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::copy(source, &staging).expect("copy");
    std::fs::rename(&staging, target).expect("rename over the old file");
}

#[test]
fn a_rebuilt_plugin_loaded_from_the_same_path_brings_its_new_code() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("libsafepoint_rebuilt.so");
    replace_file(&plugin_file("safepoint_polling"), &path);
    let first = plugin::load_path(&path).expect("first build");
    assert_eq!(first.name(), "polling");
    assert_eq!(
        plugin::load_path(&path).expect("same file again").name(),
        "polling"
    );
    replace_file(&plugin_file("safepoint_test_misbehave"), &path);
    let rebuilt = plugin::load_path(&path).expect("rebuilt file");
    assert_eq!(
        rebuilt.name(),
        "misbehave",
        "the new file's code, not the old mapping"
    );
    assert_eq!(
        rebuilt.path(),
        path,
        "reported under the path the user gave"
    );
    let rt = runtime(&first, "", 2);
    rt.swap_strategy(&rebuilt, "skip=0")
        .expect("swap to the rebuilt plugin");
    assert!(
        matches!(one_barrier(&rt), Err(BarrierError::Skipped { .. })),
        "the new behaviour"
    );
}
