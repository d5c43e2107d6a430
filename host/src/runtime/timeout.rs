//! The safepoint timeout: HotSpot's `SafepointTimeout`, naming what each late P is doing.
//!
//! Sysmon checks the barrier in flight every tick. Once it has run longer than the
//! configured timeout, sysmon builds a [`TimeoutReport`] for the Ps whose `f` has not run,
//! prints it on stderr, keeps it for `Runtime::last_timeout_report`, and then reports again
//! after each further timeout, or exits with status 3 (`OnTimeout::Abort`).

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use safepoint_abi::{MId, PId, PStatus, SafePointFnArc};

use crate::runtime::ActiveStrategy;
use crate::runtime::lock::Mutex;
use crate::runtime::trace::TraceEvent;
use crate::runtime::{GStatus, GoId, Shared};
use crate::sys;

/// What to do when a barrier runs past the safepoint timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnTimeout {
    /// Print the report and keep waiting; report again after each further timeout.
    #[default]
    Report,
    /// Print the report and exit the process with status 3.
    Abort,
}

/// The process exit status after `OnTimeout::Abort`.
pub const TIMEOUT_EXIT_STATUS: i32 = 3;

#[derive(Clone, Copy, Debug)]
pub(crate) struct SafepointConfig {
    pub(crate) timeout: Option<Duration>,
    pub(crate) on_timeout: OnTimeout,
    /// Read the requester's thread CPU clock around each barrier (two system calls).
    pub(crate) requester_cpu: bool,
}

impl Default for SafepointConfig {
    fn default() -> SafepointConfig {
        SafepointConfig {
            timeout: None,
            on_timeout: OnTimeout::Report,
            requester_cpu: true,
        }
    }
}

/// The barrier in flight, as sysmon watches it. One per runtime, reused by every barrier
/// (the requester's path allocates nothing for it).
///
/// The record is locked before the measured window opens and after it closes; inside it
/// the requester only stores the start time, with no read-modify-write.
#[derive(Default)]
pub(crate) struct BarrierWatch {
    record: Mutex<InFlight>,
    /// `CLOCK_MONOTONIC` nanoseconds when the strategy was called; 0 until then. Zeroed
    /// under the record's lock by [`BarrierWatch::prepare`], so that sysmon, which reads it
    /// under that lock, never pairs a barrier with the last one's start.
    started_at: AtomicU64,
}

#[derive(Default)]
struct InFlight {
    /// The strategy running the barrier; `None` while no barrier is in flight.
    strategy: Option<Arc<ActiveStrategy>>,
    /// Each P's poke count when the barrier started.
    pokes_before: Vec<u64>,
    reports: u32,
    /// The last barrier's function, kept until the next barrier's window has closed: the
    /// strategy drops its own reference as that one begins, and this one, the last, frees
    /// the function outside the measured window.
    retired_fn: Option<SafePointFnArc>,
}

impl BarrierWatch {
    /// A barrier of `strategy` is about to begin: everything but its start time, which the
    /// requester sets last ([`BarrierWatch::started`]), so that this work is outside the
    /// window it measures.
    pub(crate) fn prepare(&self, shared: &Shared, strategy: &Arc<ActiveStrategy>) {
        let mut record = self.record.lock();
        record.strategy = Some(Arc::clone(strategy));
        self.started_at.store(0, Ordering::Relaxed);
        record.pokes_before.clear();
        record.pokes_before.extend(
            shared
                .ps
                .iter()
                .map(|p| p.poll.pokes.load(Ordering::Relaxed)),
        );
        record.reports = 0;
    }

    /// The strategy is called at `nanos` (`CLOCK_MONOTONIC`).
    pub(crate) fn started(&self, nanos: u64) {
        self.started_at.store(nanos, Ordering::Relaxed);
    }

    /// The barrier ended; it ran `f`.
    pub(crate) fn end(&self, f: SafePointFnArc) {
        let mut record = self.record.lock();
        record.strategy = None;
        record.retired_fn = Some(f);
    }
}

/// A P the barrier has not reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateP {
    /// The P.
    pub p: PId,
    /// Its status.
    pub status: PStatus,
    /// The M that holds it, with that thread's OS id.
    pub m: Option<(MId, i32)>,
    /// The goroutine that M runs: id, status and name.
    pub g: Option<(GoId, GStatus, String)>,
    /// The non-preemptible region that M is in, if any.
    pub region: Option<String>,
    /// How often the strategy poked the P during this barrier.
    pub pokes: u64,
    /// How long ago the last poke was, if there was one.
    pub last_poke_ago: Option<Duration>,
    /// The P's last trace events, oldest first, with how long before the report each was
    /// written; empty unless the runtime traces.
    pub last_events: Vec<(Duration, TraceEvent)>,
}

/// Trace events a timeout report shows for each late P.
const LAST_EVENTS: usize = 8;

/// What a barrier that ran past the safepoint timeout was waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutReport {
    /// The strategy running the barrier.
    pub strategy: String,
    /// How long the barrier had run.
    pub elapsed: Duration,
    /// How many Ps the barrier covers.
    pub procs: usize,
    /// The Ps it has not reached.
    pub late: Vec<LateP>,
    /// The strategy's first failure in an entry point since the last barrier was checked
    /// (`on_poll` returned an error or panicked): the likely reason it cannot finish.
    pub strategy_failure: Option<String>,
}

impl fmt::Display for TimeoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "safepoint timeout: barrier of strategy {} has not completed after {:.3}s; \
             {} of {} Ps not reached:",
            self.strategy,
            self.elapsed.as_secs_f64(),
            self.late.len(),
            self.procs
        )?;
        if let Some(failure) = &self.strategy_failure {
            writeln!(f, "  the strategy failed meanwhile: {failure}")?;
        }
        for late in &self.late {
            write!(f, "  {} [{}]", late.p, late.status)?;
            match late.m {
                Some((m, tid)) => write!(f, " held by {m} (thread {tid})")?,
                None => write!(f, " held by no M")?,
            }
            if let Some((id, status, name)) = &late.g {
                write!(
                    f,
                    ", running goroutine {} [{}] {name:?}",
                    id.0,
                    status.dump_name()
                )?;
            }
            if let Some(region) = &late.region {
                write!(f, ", in non-preemptible region: {region}")?;
            }
            write!(f, "; poked {} time(s)", late.pokes)?;
            match late.last_poke_ago {
                Some(ago) => writeln!(f, ", last {:.3}s ago", ago.as_secs_f64())?,
                None => writeln!(f)?,
            }
            if !late.last_events.is_empty() {
                write!(f, "    last events of {}:", late.p)?;
                for (ago, event) in &late.last_events {
                    write!(
                        f,
                        " {event} ({:.6}s ago, request {});",
                        ago.as_secs_f64(),
                        event.request
                    )?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// Called by sysmon every tick.
pub(crate) fn check_timeout(shared: &Shared) {
    let Some(timeout) = shared.safepoint.timeout else {
        return;
    };
    let report = {
        let mut in_flight = shared.in_flight.record.lock();
        let start = shared.in_flight.started_at.load(Ordering::Relaxed);
        let Some(strategy) = in_flight.strategy.clone().filter(|_| start != 0) else {
            return;
        };
        let elapsed = Duration::from_nanos(sys::monotonic_nanos().saturating_sub(start));
        if elapsed < timeout * (in_flight.reports + 1) {
            return;
        }
        in_flight.reports += 1;
        build_report(shared, &in_flight, &strategy, elapsed)
    };
    // Straight to the stream, past any output capture: this may be the last word.
    let _ = write!(std::io::stderr(), "{report}");
    *shared.last_timeout_report.lock() = Some(report);
    if shared.safepoint.on_timeout == OnTimeout::Abort {
        let _ = writeln!(
            std::io::stderr(),
            "safepoint: aborting (--on-timeout abort)"
        );
        std::process::exit(TIMEOUT_EXIT_STATUS);
    }
}

fn build_report(
    shared: &Shared,
    in_flight: &InFlight,
    strategy: &ActiveStrategy,
    elapsed: Duration,
) -> TimeoutReport {
    let now = crate::sys::monotonic_nanos();
    let late = shared
        .ps
        .iter()
        .filter(|p| shared.tally.count(p.id) == 0 && p.status.load() != PStatus::Dead)
        .map(|p| {
            let m = p.m().and_then(|id| shared.m_by_id(id));
            let pokes = p.poll.pokes.load(Ordering::Relaxed) - in_flight.pokes_before[p.id.index()];
            let last_poke = p.poll.last_poke_nanos.load(Ordering::Relaxed);
            LateP {
                p: p.id,
                status: p.status.load(),
                m: m.as_ref()
                    .map(|m| (m.id, m.thread.get().map_or(0, |t| t.tid))),
                g: m.as_ref()
                    .and_then(|m| m.curg())
                    .map(|g| (g.id, g.status.load(), g.name.clone())),
                region: m.as_ref().and_then(|m| m.region.lock().clone()),
                pokes,
                last_poke_ago: (pokes > 0).then(|| {
                    Duration::from_nanos(
                        crate::sys::coarse_monotonic_nanos().saturating_sub(last_poke),
                    )
                }),
                last_events: shared.trace.as_ref().map_or_else(Vec::new, |trace| {
                    trace
                        .last_events(p.id, LAST_EVENTS)
                        .into_iter()
                        .map(|e| (Duration::from_nanos(now.saturating_sub(e.time_ns)), e))
                        .collect()
                }),
            }
        })
        .collect();
    TimeoutReport {
        strategy: strategy.name.clone(),
        elapsed,
        procs: shared.ps.len(),
        late,
        strategy_failure: shared.tally.peek_entry_error(),
    }
}
