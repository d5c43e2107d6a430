//! Barrier tracing (issue 16): every barrier has one `reached` event per live P, each P's
//! events are in order, the counts agree with the run summary, the Chrome trace JSON parses,
//! the SVG is written, a timeout report shows the late P's last events, and a runtime that
//! does not trace records nothing.

use std::sync::Arc;
use std::time::Duration;

use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{self, Runtime, WaitReason};
use safepoint_host::safepoint::{OnTimeout, acquire_world, handshake};
use safepoint_host::trace::{
    self, DEFAULT_CAPACITY, EventKind, ReachedBy, RequestKind, Timeline, Trace,
};
use safepoint_host::workloads::{RunOptions, RunSummary, Workload};
use safepoint_tests::{P_COUNTS, SHIPPED, block_on_bounded, polling, run_bounded, shipped};

const BARRIERS: u64 = 60;

fn traced_runtime(plugin: &Plugin, procs: usize) -> Arc<Runtime> {
    let rt = Runtime::builder()
        .procs(procs)
        .safepoint_timeout(Some(Duration::from_secs(5)), OnTimeout::Report)
        .trace(DEFAULT_CAPACITY)
        .build(plugin, "")
        .unwrap_or_else(|e| panic!("cannot start {} with {procs} Ps: {e}", plugin.name()));
    Arc::new(rt)
}

/// A traced run of `workload`, with its trace.
fn traced_run(plugin: &Plugin, procs: usize, workload: Workload) -> (RunSummary, Trace) {
    let rt = traced_runtime(plugin, procs);
    let summary = run_bounded(&rt, &RunOptions::new(workload, BARRIERS));
    let trace = rt.trace().expect("the runtime traces");
    (summary, trace)
}

/// Checks every barrier of `trace` against the contract and the run's summary; returns the
/// barriers' timelines.
#[track_caller]
fn check_barriers(summary: &RunSummary, trace: &Trace, procs: usize) -> Vec<Timeline> {
    let what = format!("{} at {procs} Ps", summary.strategy);
    assert_eq!(
        trace.dropped, 0,
        "{what}: rings of the default size overflowed"
    );
    let timelines = trace::timelines(trace);
    assert_eq!(timelines.len() as u64, summary.barriers, "{what}");
    let (mut by_themselves, mut by_requester, mut own) = (0, 0, 0);
    for t in &timelines {
        assert_eq!(t.kind, RequestKind::Barrier, "{what}");
        assert_eq!(t.reason, WaitReason::GcMarkTermination, "{what}");
        assert_eq!(t.strategy, summary.strategy, "{what}");
        let end = t
            .end_ns
            .unwrap_or_else(|| panic!("{what}: barrier {} has no end", t.request));
        let reached: Vec<_> = t.ps.iter().filter(|p| p.reached.is_some()).collect();
        assert_eq!(
            reached.len(),
            procs,
            "{what}: barrier {} reached {:?}",
            t.request,
            t.ps
        );
        for p in &t.ps {
            let line = t.log_line();
            assert_eq!(p.reached_count, 1, "{what}: {line}");
            let (at, how) = p.reached.expect("every P reached");
            let f_end = p
                .fn_end_ns
                .unwrap_or_else(|| panic!("{what}: no f end: {line}"));
            if let Some(armed) = p.armed_ns {
                assert!(armed <= at, "{what}: {} armed after reached: {line}", p.p);
            }
            assert!(t.begin_ns <= at && at <= f_end, "{what}: {line}");
            assert!(
                f_end <= end,
                "{what}: {} f ended after the barrier: {line}",
                p.p
            );
            match how {
                ReachedBy::Own => own += 1,
                how if how.by_itself() => by_themselves += 1,
                _ => by_requester += 1,
            }
        }
    }
    assert_eq!(own, summary.barriers, "{what}: one own P per barrier");
    assert_eq!(
        (by_themselves, by_requester),
        (summary.by_themselves, summary.by_requester),
        "{what}: the trace's counts against the summary"
    );
    timelines
}

#[test]
fn every_barrier_reaches_every_live_p_once_in_order_as_the_summary_counts() {
    for name in SHIPPED {
        let plugin = shipped(name);
        for procs in P_COUNTS {
            let (summary, trace) = traced_run(&plugin, procs, Workload::Mixed);
            check_barriers(&summary, &trace, procs);
            let ttsp = summary
                .time_to_safepoint
                .as_ref()
                .expect("a traced run has time to safepoint");
            assert_eq!(ttsp.barriers, summary.barriers);
            assert_eq!(ttsp.per_reason.len(), 1, "{summary}");
            assert_eq!(ttsp.per_reason[0].1.len(), summary.barriers, "{summary}");
            assert!(ttsp.per_p.iter().all(|(_, h)| h.len() == summary.barriers));
            assert!(
                summary.to_string().contains("time to safepoint"),
                "{summary}"
            );
        }
    }
}

#[test]
fn the_signal_strategy_traces_its_signals_and_its_stops_in_the_handler() {
    let plugin = shipped("signal");
    let procs = 3;
    let (summary, trace) = traced_run(&plugin, procs, Workload::NoPoll);
    let timelines = check_barriers(&summary, &trace, procs);
    let ps = || timelines.iter().flat_map(|t| &t.ps);
    let in_handler = ps()
        .filter(|p| {
            p.reached
                .is_some_and(|(_, how)| how == ReachedBy::SignalHandler)
        })
        .count();
    // Goroutines that never poll: the handler is the only way to stop their Ps.
    assert!(in_handler > 0, "{summary}");
    let signalled = ps().filter(|p| !p.signals.is_empty()).count();
    assert!(signalled > 0, "{summary}");
    let sent = summary
        .counters
        .iter()
        .find(|(name, _)| name == "signals sent")
        .map(|(_, v)| *v)
        .expect("the signal strategy counts its signals");
    let traced = ps().map(|p| p.signals.len() as u64).sum::<u64>();
    assert_eq!(traced, sent, "every signal sent is in the trace");
}

#[test]
fn the_chrome_trace_parses_with_a_track_per_p_and_one_for_the_requester() {
    let procs = 3;
    let (summary, trace) = traced_run(&polling(), procs, Workload::Mixed);
    let text = serde_json::to_string(&trace::chrome_json(&trace)).expect("encodes");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    let events = json["traceEvents"].as_array().expect("a traceEvents array");
    let tracks: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert_eq!(tracks, ["requester", "P0", "P1", "P2"]);
    let barriers = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"] == 0 && e["cat"] == "barrier")
        .count();
    assert_eq!(barriers as u64, summary.barriers);
    let reached = events
        .iter()
        .filter(|e| e["name"] == "to safepoint")
        .count();
    assert_eq!(reached as u64, summary.barriers * procs as u64);
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(e["ts"].as_f64().is_some_and(|ts| ts >= 0.0), "{e}");
        assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
    }
}

#[test]
fn the_svg_of_the_slowest_barriers_is_written() {
    let (_, trace) = traced_run(&polling(), 2, Workload::Poll);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("barriers.svg");
    trace::write_svg(&trace, &path).expect("draws");
    let svg = std::fs::read_to_string(&path).expect("the SVG was written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("barrier") && svg.contains("P1"));
}

#[test]
fn with_tracing_off_no_event_is_recorded() {
    // Two runtimes in one process: the traced one records only its own barriers.
    let traced = traced_runtime(&polling(), 2);
    let untraced = safepoint_tests::runtime(&polling(), "", 2);
    let summary = run_bounded(&untraced, &RunOptions::new(Workload::Mixed, BARRIERS));
    assert_eq!(summary.barriers, BARRIERS);
    assert!(untraced.trace().is_none());
    assert!(summary.time_to_safepoint.is_none());
    assert!(!summary.to_string().contains("time to safepoint"));
    let trace = traced.trace().expect("traces");
    assert!(trace.is_empty(), "{trace:?}");
    assert_eq!(trace.dropped, 0);
}

#[test]
fn a_handshake_is_traced_with_its_one_p() {
    let rt = traced_runtime(&polling(), 2);
    block_on_bounded(&rt, || {
        let own = runtime::current_p_id().expect("on a P");
        let other = safepoint_abi::PId(1 - own.0);
        let world = acquire_world();
        handshake(&world, WaitReason::GcWorkerActive, other, |_| {}).expect("handshake");
    });
    let trace = rt.trace().expect("traces");
    let [t] = trace::timelines(&trace).try_into().expect("one request");
    let RequestKind::Handshake(p) = t.kind else {
        panic!("a handshake: {t:?}");
    };
    assert_eq!(t.reason, WaitReason::GcWorkerActive);
    assert!(t.end_ns.is_some());
    let [only] = t.ps.as_slice() else {
        panic!("one P: {t:?}");
    };
    assert_eq!((only.p, only.reached_count), (p, 1));
}

#[test]
fn a_timeout_report_shows_the_late_ps_last_events() {
    let (report, _) = crate::timeout::report_of_a_spinner_that_never_polls(
        Runtime::builder().trace(DEFAULT_CAPACITY),
    );
    let [late] = report.late.as_slice() else {
        panic!("exactly one late P expected:\n{report}");
    };
    let (_, last) = late
        .last_events
        .last()
        .unwrap_or_else(|| panic!("no events of the late P:\n{report}"));
    assert_eq!(last.kind, EventKind::Armed, "{report}");
    let text = report.to_string();
    assert!(
        text.contains(&format!("last events of {}: armed", late.p)),
        "{text}"
    );
}
