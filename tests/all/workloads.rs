//! The realistic workloads under every shipped strategy, each with every invariant it checks:
//! `alloc` (every value its write barriers recorded is marked exactly once, over GC cycles
//! its pacer triggered), `server` (every request answered once, then every goroutine ended
//! and every socket closed), `compute` (every build of the kernel computes the same bits).
//! A run that hangs ends with the watchdog's message.

use std::sync::Arc;
use std::time::Duration;

use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{Chan, Runtime, WaitGroup};
use safepoint_host::safepoint::acquire_world;
use safepoint_host::workloads::{RunOptions, RunSummary, Workload, WorkloadMetric, WorkloadParams};
use safepoint_tests::{await_condition, polling, run_bounded, run_within, runtime};

/// Three Ps on the 2-core CI machine: two mutators beside the requester, oversubscribed.
const PROCS: usize = 3;

fn run(plugin: &Plugin, workload: Workload, barriers: u64, params: WorkloadParams) -> RunSummary {
    let rt = runtime(plugin, "", PROCS);
    let summary = run_bounded(
        &rt,
        &RunOptions {
            params,
            ..RunOptions::new(workload, barriers)
        },
    );
    assert_eq!(summary.barriers, barriers, "{summary}");
    assert_eq!(summary.latency.len(), barriers, "{summary}");
    summary
}

fn alloc_marks_every_recorded_value_once_over_paced_cycles(plugin: &Plugin) {
    let params = WorkloadParams {
        tree_depth: 8,
        ..WorkloadParams::default()
    };
    let summary = run(plugin, Workload::Alloc, 60, params);
    let gc = summary.gc.as_ref().expect("alloc runs a GC");
    // Two barriers per paced cycle, and the last cycle after the mutators stopped.
    assert_eq!(gc.cycles, 31, "{summary}");
    assert_eq!(gc.mark_done.len(), 31);
    assert_eq!(gc.mark_termination.len(), 31);
    assert!(gc.values_recorded > 0, "{summary}");
    assert_eq!(gc.values_marked, gc.values_recorded, "{summary}");
    let Some(WorkloadMetric::Alloc(alloc)) = &summary.metric else {
        panic!("no allocation figures: {summary}");
    };
    assert_eq!(alloc.mutators, PROCS - 1);
    assert_eq!(alloc.bytes, alloc.nodes * 16, "16-byte nodes");
    assert_eq!(summary.work_units, alloc.nodes);
    // Each internal node stores two pointers through the write barrier: with full trees,
    // one fewer than there are nodes per tree.
    assert!(gc.values_recorded < alloc.nodes, "{summary}");
    // A cycle starts once the heap grew from what was marked to the goal, which is twice
    // that and at least 256 KiB: by at least 128 KiB.
    assert!(alloc.bytes >= 30 * (128 << 10), "{summary}");
    assert!(alloc.allocs_per_sec() > 0.0);
}

fn server_answers_every_request_once_and_shuts_down_clean(plugin: &Plugin) {
    let rt = runtime(plugin, "", PROCS);
    let summary = run_bounded(&rt, &RunOptions::new(Workload::Server, 100));
    let Some(WorkloadMetric::Server(server)) = &summary.metric else {
        panic!("no server figures: {summary}");
    };
    assert_eq!(server.connections, 10_000, "the default");
    assert!(server.requests > 0, "{summary}");
    assert_eq!(summary.work_units, server.latency.len());
    let quiet = server.quiet_latency.as_ref().expect("a quiet phase");
    assert!(!server.latency.is_empty() && !quiet.is_empty(), "{summary}");
    assert!(
        server.latency.len() + quiet.len() <= server.requests,
        "only answered requests are timed"
    );
    assert_eq!(server.goroutines_ended, 10_000 + server.clients as u64);
    assert_eq!(server.sockets_closed, 2 * server.clients as u64);
    // Every connection and client goroutine has left the runtime, not just its body.
    await_condition("the server's goroutines to leave the runtime", || {
        !rt.goroutine_dump().contains("\tserver ")
    });
}

fn compute_times_its_three_builds_and_each_computes_the_same_bits(plugin: &Plugin) {
    let summary = run(plugin, Workload::Compute, 100, WorkloadParams::default());
    let Some(WorkloadMetric::Compute(compute)) = &summary.metric else {
        panic!("no compute figures: {summary}");
    };
    assert_eq!(compute.strip_every, 1000);
    assert_eq!(compute.mutators, PROCS - 1);
    let quiet = compute.quiet.as_ref().expect("a quiet phase");
    let rounds = quiet.strip_mined_ratio.len();
    assert!(rounds > 0 && quiet.every_iteration_ratio.len() == rounds);
    for rate in [quiet.none, quiet.strip_mined, quiet.every_iteration] {
        assert_eq!(rate.ops, rounds * 64 * 64 * 64, "{summary}");
    }
    // The overhead itself is a speed, for the benchmark (`compute_polls`), not a test: on a
    // loaded machine its sign is noise.
    assert!(compute.poll_overhead_pct().is_some(), "{summary}");
}

safepoint_tests::strategy_tests!(
    strategies: [polling, futex, signal],
    tests: [
        alloc_marks_every_recorded_value_once_over_paced_cycles,
        server_answers_every_request_once_and_shuts_down_clean,
        compute_times_its_three_builds_and_each_computes_the_same_bits,
    ]
);

/// A run whose requester can never take worldsema hangs; the watchdog ends the wait with the
/// workload, the strategy and a dump that shows who waits for what.
#[test]
fn a_hung_run_ends_with_the_watchdogs_message() {
    let rt: Arc<Runtime> = runtime(&polling(), "", 2);
    let (holding, release) = (WaitGroup::new(), Chan::<()>::bounded(1));
    holding.add(1);
    let (held, until) = (holding.clone(), release.clone());
    rt.spawn("holds the world", move || {
        let world = acquire_world();
        held.done();
        until.recv();
        drop(world);
    });
    holding.wait();
    let hung = run_within(
        &rt,
        &RunOptions::new(Workload::Compute, 10),
        Duration::from_millis(500),
    )
    .expect_err("the run cannot take worldsema");
    release.close();
    assert!(
        hung.starts_with(
            "watchdog: workload compute (strategy polling, 2 Ps) did not finish in 500ms"
        ),
        "{hung}"
    );
    assert!(hung.contains("[stopping the world]:\n\tmain"), "{hung}");
    assert!(
        hung.contains("[chan receive]:\n\tholds the world"),
        "{hung}"
    );
}
