//! The safepoint timeout names the late P: here a goroutine that never polls, which the
//! polling strategy cannot reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use safepoint_abi::PStatus;
use safepoint_host::runtime::{self, Builder, GStatus, GoId, Runtime, WaitReason};
use safepoint_host::safepoint::{OnTimeout, TimeoutReport, acquire_world, for_each_p};
use safepoint_tests::{block_on_bounded, polling};

/// Spins on the calling goroutine, without a poll, until `rt` makes a safepoint-timeout
/// report; returns it.
fn spin_until_reported(rt: &Runtime) -> TimeoutReport {
    loop {
        if let Some(report) = rt.last_timeout_report() {
            return report;
        }
        std::hint::spin_loop();
    }
}

/// Runs one barrier of the polling strategy, under a 200 ms safepoint timeout that reports,
/// on a 2-P runtime built by `builder` with a goroutine that never polls. Returns the
/// report the runtime made and the spinner's goroutine.
pub(crate) fn report_of_a_spinner_that_never_polls(builder: Builder) -> (TimeoutReport, GoId) {
    let rt = Arc::new(
        builder
            .procs(2)
            .safepoint_timeout(Some(Duration::from_millis(200)), OnTimeout::Report)
            .build(&polling(), "")
            .expect("runtime"),
    );
    const NOT_YET: u32 = u32::MAX;
    let spinner_p = Arc::new(AtomicU32::new(NOT_YET));
    let seen: Arc<Mutex<Option<TimeoutReport>>> = Arc::new(Mutex::new(None));
    let (rt2, p, report) = (Arc::clone(&rt), Arc::clone(&spinner_p), Arc::clone(&seen));
    let spinner = rt.spawn("nopoll spinner", move || {
        p.store(
            runtime::current_p_id().expect("on a P").0,
            Ordering::Release,
        );
        *report.lock() = Some(spin_until_reported(&rt2));
    });
    block_on_bounded(&rt, move || {
        while spinner_p.load(Ordering::Acquire) == NOT_YET {
            runtime::yield_now();
        }
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
            .expect("completes once the spinner stops")
    });
    let report = seen.lock().take().expect("the spinner saw a report");
    (report, spinner)
}

#[test]
fn a_timeout_report_names_the_p_that_never_polls() {
    let (report, spinner) = report_of_a_spinner_that_never_polls(Runtime::builder());
    assert_eq!(report.strategy, "polling");
    assert!(report.elapsed >= Duration::from_millis(200), "{report:?}");
    let [late] = report.late.as_slice() else {
        panic!("exactly one late P expected:\n{report}");
    };
    assert_eq!(late.status, PStatus::Running);
    let (g, status, name) = late.g.clone().expect("the late P runs a goroutine");
    assert_eq!(
        (g, status, name.as_str()),
        (spinner, GStatus::Running, "nopoll spinner")
    );
    assert!(late.m.is_some_and(|(_, tid)| tid > 0), "{late:?}");
    assert_eq!(late.pokes, 1, "polling arms once per barrier");
    assert!(late.last_poke_ago.is_some());
    let text = report.to_string();
    assert!(
        text.contains(&format!("{} [_Prunning] held by M", late.p)),
        "{text}"
    );
    assert!(
        text.contains("running goroutine") && text.contains("\"nopoll spinner\""),
        "{text}"
    );
}

#[test]
fn a_timeout_report_says_the_strategy_failed_meanwhile() {
    let rt = Arc::new(
        Runtime::builder()
            .procs(2)
            .safepoint_timeout(Some(Duration::from_millis(200)), OnTimeout::Report)
            .build(&safepoint_tests::misbehave(), "fail_on_poll=1")
            .expect("runtime"),
    );
    let failures = |rt: &Runtime| {
        rt.strategy_counters()
            .into_iter()
            .find(|(name, _)| name == "on_poll failures")
            .map_or(0, |(_, n)| n)
    };
    let started = Arc::new(AtomicU32::new(0));
    let seen: Arc<Mutex<Option<TimeoutReport>>> = Arc::new(Mutex::new(None));
    let (rt2, go, report) = (Arc::clone(&rt), Arc::clone(&started), Arc::clone(&seen));
    rt.spawn("stalled poller", move || {
        go.store(1, Ordering::Release);
        // Polls until its on_poll has failed once, before serving its P; then polls no
        // more until the runtime has reported the barrier, and serves it.
        while failures(&rt2) == 0 {
            runtime::poll();
        }
        *report.lock() = Some(spin_until_reported(&rt2));
        runtime::poll();
    });
    let result = block_on_bounded(&rt, move || {
        while started.load(Ordering::Acquire) == 0 {
            runtime::yield_now();
        }
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
    });
    let report = seen.lock().take().expect("the poller saw a report");
    let failure = report
        .strategy_failure
        .clone()
        .expect("the failure is in the report");
    assert!(
        failure.starts_with("on_poll for P")
            && failure.contains("deliberate failure 1 of 1, before serving"),
        "{failure}"
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!("the strategy failed meanwhile: {failure}")),
        "{text}"
    );
    let err = result.expect_err("the failure fails the barrier once it completes");
    assert_eq!(
        err.to_string(),
        format!("strategy misbehave failed in {failure} (1 failure(s) in this barrier)")
    );
}
