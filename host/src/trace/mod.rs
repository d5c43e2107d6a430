//! Reading a barrier trace: who reached the safe point when, and how.
//!
//! A runtime built with [`crate::runtime::Builder::trace`] records events in per-P rings
//! (`runtime/trace.rs`); [`crate::runtime::Runtime::trace`] reads them. This module turns
//! them into one [`Timeline`] per barrier or handshake, and from those:
//!
//! - [`write_chrome_json`]: the Chrome trace event format, which Perfetto's UI and
//!   `chrome://tracing` open; one track per P and one for the requester;
//! - [`write_svg`]: a picture of the slowest barriers, one row per P;
//! - [`Timeline::log_line`]: one line per barrier, in the spirit of HotSpot's
//!   `-Xlog:safepoint`;
//! - [`TimeToSafepoint`]: time to safepoint per P and per wait reason.

mod chrome;
#[cfg(feature = "svg")]
mod svg;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use safepoint_abi::PId;

use crate::runtime::WaitReason;
pub use crate::runtime::trace::{
    DEFAULT_CAPACITY, EventKind, GcPhase, ReachedBy, Trace, TraceEvent,
};
pub use chrome::{chrome_json, write_chrome_json};
#[cfg(feature = "svg")]
pub use svg::write_svg;

/// What a request of the world was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A barrier (`for_each_p`).
    Barrier,
    /// A single-P handshake with this P.
    Handshake(PId),
}

/// One P's part in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PTimeline {
    /// The P.
    pub p: PId,
    /// When the strategy first armed its poll word.
    pub armed_ns: Option<u64>,
    /// How often it was armed.
    pub arms: u32,
    /// Each signal sent to its thread: when, and whether it was a re-send.
    pub signals: Vec<(u64, bool)>,
    /// When `f` began for it, and who ran it.
    pub reached: Option<(u64, ReachedBy)>,
    /// How many times `f` began for it (exactly one in a correct barrier).
    pub reached_count: u32,
    /// When `f` returned.
    pub fn_end_ns: Option<u64>,
}

impl PTimeline {
    fn new(p: PId) -> PTimeline {
        PTimeline {
            p,
            armed_ns: None,
            arms: 0,
            signals: Vec::new(),
            reached: None,
            reached_count: 0,
            fn_end_ns: None,
        }
    }
}

/// One barrier or handshake, as the trace saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The request's number, as its events carry it.
    pub request: u32,
    /// A barrier or a handshake.
    pub kind: RequestKind,
    /// The requester's wait reason (`waiting` for `for_each_p_unchecked`).
    pub reason: WaitReason,
    /// The strategy that ran it.
    pub strategy: String,
    /// When the requester began it.
    pub begin_ns: u64,
    /// When the strategy's call returned; `None` if it had not (or the event was dropped).
    pub end_ns: Option<u64>,
    /// Every P that has an event in it, by index.
    pub ps: Vec<PTimeline>,
}

impl Timeline {
    /// The strategy call's wall time, if it ended.
    pub fn duration(&self) -> Option<Duration> {
        self.end_ns
            .map(|end| Duration::from_nanos(end.saturating_sub(self.begin_ns)))
    }

    /// How long `p` took to reach its safe point, from the request's begin.
    pub fn time_to_reach(&self, p: &PTimeline) -> Option<Duration> {
        p.reached
            .map(|(at, _)| Duration::from_nanos(at.saturating_sub(self.begin_ns)))
    }

    /// The P reached last.
    pub fn last_reached(&self) -> Option<&PTimeline> {
        self.ps
            .iter()
            .filter(|p| p.reached.is_some())
            .max_by_key(|p| p.reached.map(|(at, _)| at))
    }

    /// The time to reach every P: the last P's time to reach.
    pub fn time_to_safepoint(&self) -> Option<Duration> {
        self.last_reached().and_then(|p| self.time_to_reach(p))
    }

    /// One line for `--log-barriers`: reason, strategy, time to reach every P, the last P
    /// and how it was reached.
    ///
    /// `barrier 12 "GC mark termination" strategy signal: 4 Ps reached in 12.3 µs
    /// (P0 0.1 µs own, P1 3.2 µs poll, ...); last P2 by signal handler after 2 signal(s);
    /// took 14.0 µs`
    pub fn log_line(&self) -> String {
        let what = match self.kind {
            RequestKind::Barrier => format!("barrier {}", self.request),
            RequestKind::Handshake(p) => format!("handshake {} with {p}", self.request),
        };
        let reached = self.ps.iter().filter(|p| p.reached.is_some()).count();
        let mut line = format!(
            "{what} \"{}\" strategy {}: {reached} Ps reached",
            self.reason, self.strategy
        );
        if let Some(ttsp) = self.time_to_safepoint() {
            line += &format!(" in {}", human(ttsp));
        }
        let each: Vec<String> = self
            .ps
            .iter()
            .filter_map(|p| {
                let (_, how) = p.reached?;
                Some(format!(
                    "{} {} {how}",
                    p.p,
                    human(self.time_to_reach(p).unwrap_or_default())
                ))
            })
            .collect();
        line += &format!(" ({})", each.join(", "));
        if let Some(last) = self.last_reached()
            && let Some((_, how)) = last.reached
        {
            line += &format!("; last {} by {how}", last.p);
            if !last.signals.is_empty() {
                line += &format!(" after {} signal(s)", last.signals.len());
            }
        }
        match self.duration() {
            Some(took) => line += &format!("; took {}", human(took)),
            None => line += "; not ended",
        }
        line
    }
}

/// A duration as the logs print it: `850 ns`, `12.3 µs`, `4.20 ms`.
fn human(d: Duration) -> String {
    let ns = d.as_nanos() as u64;
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// Every barrier and handshake the trace holds the begin of, oldest first.
pub fn timelines(trace: &Trace) -> Vec<Timeline> {
    let mut out: Vec<Timeline> = Vec::new();
    let mut by_request: HashMap<u32, usize> = HashMap::new();
    for event in &trace.requester {
        let (kind, reason, strategy) = match event.kind {
            EventKind::BarrierBegin { reason, strategy } => {
                (RequestKind::Barrier, reason, strategy)
            }
            EventKind::HandshakeBegin {
                reason,
                strategy,
                target,
            } => (RequestKind::Handshake(target), reason, strategy),
            EventKind::BarrierEnd | EventKind::HandshakeEnd => {
                if let Some(&i) = by_request.get(&event.request) {
                    out[i].end_ns.get_or_insert(event.time_ns);
                }
                continue;
            }
            _ => continue,
        };
        by_request.insert(event.request, out.len());
        out.push(Timeline {
            request: event.request,
            kind,
            reason,
            strategy: trace.strategy(strategy).to_owned(),
            begin_ns: event.time_ns,
            end_ns: None,
            ps: Vec::new(),
        });
    }
    for (index, events) in trace.ps.iter().enumerate() {
        let p = PId(index as u32);
        for event in events {
            let Some(&i) = by_request.get(&event.request) else {
                continue;
            };
            let timeline = &mut out[i];
            let slot = match timeline.ps.iter().position(|t| t.p == p) {
                Some(slot) => slot,
                None => {
                    timeline.ps.push(PTimeline::new(p));
                    timeline.ps.len() - 1
                }
            };
            let pt = &mut timeline.ps[slot];
            match event.kind {
                EventKind::Armed => {
                    pt.arms += 1;
                    pt.armed_ns.get_or_insert(event.time_ns);
                }
                EventKind::Signal { resend } => pt.signals.push((event.time_ns, resend)),
                EventKind::Reached(how) => {
                    pt.reached_count += 1;
                    pt.reached.get_or_insert((event.time_ns, how));
                }
                EventKind::FnEnd => {
                    pt.fn_end_ns.get_or_insert(event.time_ns);
                }
                _ => {}
            }
        }
    }
    for timeline in &mut out {
        timeline.ps.sort_by_key(|p| p.p);
    }
    out
}

/// Time to safepoint, from a trace: per P (from the barrier's begin to `f`'s begin for
/// that P) and per wait reason (to the last P), over the barriers the trace holds.
#[derive(Clone, Debug)]
pub struct TimeToSafepoint {
    /// Barriers measured (handshakes are not).
    pub barriers: u64,
    /// Trace events lost (full rings): fewer barriers than ran, perhaps.
    pub dropped: u64,
    /// Each P's time to reach, nanoseconds, by P index.
    pub per_p: Vec<(PId, Histogram<u64>)>,
    /// Each wait reason's time to reach every P, nanoseconds.
    pub per_reason: Vec<(WaitReason, Histogram<u64>)>,
    /// How the last P of each barrier was reached, and how often.
    pub last_reached_by: Vec<(ReachedBy, u64)>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

impl TimeToSafepoint {
    /// From the barriers of `trace`.
    pub fn of(trace: &Trace) -> TimeToSafepoint {
        let mut summary = TimeToSafepoint {
            barriers: 0,
            dropped: trace.dropped,
            per_p: (0..trace.ps.len())
                .map(|i| (PId(i as u32), histogram()))
                .collect(),
            per_reason: Vec::new(),
            last_reached_by: Vec::new(),
        };
        for timeline in timelines(trace) {
            if timeline.kind != RequestKind::Barrier {
                continue;
            }
            summary.barriers += 1;
            for p in &timeline.ps {
                if let (Some(ttr), Some((_, h))) = (
                    timeline.time_to_reach(p),
                    summary.per_p.get_mut(p.p.index()),
                ) {
                    h.saturating_record(ttr.as_nanos() as u64);
                }
            }
            let Some(ttsp) = timeline.time_to_safepoint() else {
                continue;
            };
            let reason = match summary
                .per_reason
                .iter_mut()
                .find(|(r, _)| *r == timeline.reason)
            {
                Some((_, h)) => h,
                None => {
                    summary.per_reason.push((timeline.reason, histogram()));
                    &mut summary.per_reason.last_mut().expect("just pushed").1
                }
            };
            reason.saturating_record(ttsp.as_nanos() as u64);
            if let Some((_, how)) = timeline.last_reached().and_then(|p| p.reached) {
                match summary.last_reached_by.iter_mut().find(|(h, _)| *h == how) {
                    Some((_, n)) => *n += 1,
                    None => summary.last_reached_by.push((how, 1)),
                }
            }
        }
        summary.last_reached_by.sort();
        summary
    }
}

fn quantiles(h: &Histogram<u64>) -> String {
    let us = |ns: u64| ns as f64 / 1000.0;
    format!(
        "p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.max())
    )
}

impl fmt::Display for TimeToSafepoint {
    /// The run summary's lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  time to safepoint  traced over {} barriers",
            self.barriers
        )?;
        if self.dropped > 0 {
            write!(
                f,
                " ({} events dropped: the rings were full, older barriers are missing)",
                self.dropped
            )?;
        }
        writeln!(f)?;
        for (reason, h) in &self.per_reason {
            writeln!(f, "    {:<24} {}", format!("[{reason}]"), quantiles(h))?;
        }
        for (p, h) in &self.per_p {
            if !h.is_empty() {
                writeln!(f, "    {:<24} {}", p.to_string(), quantiles(h))?;
            }
        }
        if !self.last_reached_by.is_empty() {
            let each: Vec<String> = self
                .last_reached_by
                .iter()
                .map(|(how, n)| format!("{n} by {how}"))
                .collect();
            writeln!(f, "    last P reached       {}", each.join(", "))?;
        }
        Ok(())
    }
}
