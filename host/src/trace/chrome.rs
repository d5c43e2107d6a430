//! `--trace FILE`: the Chrome trace event format (JSON object form), as Perfetto's UI and
//! `chrome://tracing` open it. One process, the runtime; one thread track for the requester
//! (tid 0) and one per P (tid `p + 1`). Timestamps are microseconds since the first event, whose `CLOCK_MONOTONIC`
//! time is `otherData.origin_monotonic_ns`.
//!
//! - Requester: a complete (`X`) slice per barrier, handshake and swap; an instant per GC
//!   phase.
//! - Each P: a `to safepoint` slice from the request's begin to the P's safe point (with how
//!   it was reached), an `f` slice, and an instant per arm and per signal.

use std::path::Path;

use serde_json::{Value, json};

use super::{EventKind, RequestKind, Trace, timelines};

const PID: u32 = 1;
const REQUESTER_TID: u32 = 0;

fn p_tid(index: usize) -> u32 {
    index as u32 + 1
}

/// The trace as Chrome trace event JSON.
pub fn chrome_json(trace: &Trace) -> Value {
    let origin = trace
        .requester
        .iter()
        .chain(trace.ps.iter().flatten())
        .map(|e| e.time_ns)
        .min()
        .unwrap_or(0);
    let us = |ns: u64| ns.saturating_sub(origin) as f64 / 1000.0;
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID, "tid": REQUESTER_TID,
        "args": { "name": "safepoint runtime" },
    })];
    events.push(json!({
        "name": "thread_name", "ph": "M", "pid": PID, "tid": REQUESTER_TID,
        "args": { "name": "requester" },
    }));
    for index in 0..trace.ps.len() {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": p_tid(index),
            "args": { "name": format!("P{index}") },
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": p_tid(index),
            "args": { "sort_index": index + 1 },
        }));
    }
    for timeline in timelines(trace) {
        let name = match timeline.kind {
            RequestKind::Barrier => format!("forEachP [{}]", timeline.reason),
            RequestKind::Handshake(p) => format!("handshake {p} [{}]", timeline.reason),
        };
        let last = timeline.last_reached().map(|p| {
            json!({
                "p": p.p.0,
                "how": p.reached.map(|(_, how)| how.as_str()),
            })
        });
        let mut slice = json!({
            "name": name, "cat": "barrier", "pid": PID, "tid": REQUESTER_TID,
            "ts": us(timeline.begin_ns),
            "args": {
                "request": timeline.request,
                "strategy": timeline.strategy,
                "reason": timeline.reason.as_str(),
                "last_p": last,
            },
        });
        match timeline.end_ns {
            Some(end) => {
                slice["ph"] = json!("X");
                slice["dur"] = json!(us(end) - us(timeline.begin_ns));
            }
            None => slice["ph"] = json!("B"),
        }
        events.push(slice);
        for p in &timeline.ps {
            let tid = p_tid(p.p.index());
            let Some((reached, how)) = p.reached else {
                continue;
            };
            events.push(json!({
                "name": "to safepoint", "cat": "barrier", "ph": "X", "pid": PID, "tid": tid,
                "ts": us(timeline.begin_ns),
                "dur": us(reached) - us(timeline.begin_ns),
                "args": {
                    "request": timeline.request,
                    "reached_by": how.as_str(),
                    "arms": p.arms,
                    "signals": p.signals.len(),
                },
            }));
            if let Some(end) = p.fn_end_ns {
                events.push(json!({
                    "name": "f", "cat": "barrier", "ph": "X", "pid": PID, "tid": tid,
                    "ts": us(reached), "dur": us(end) - us(reached),
                    "args": { "request": timeline.request, "reached_by": how.as_str() },
                }));
            }
        }
    }
    // Requester slices without a timeline: swaps; instants: GC phases.
    let mut swap_begin = None;
    for event in &trace.requester {
        match event.kind {
            EventKind::SwapBegin => swap_begin = Some(event.time_ns),
            EventKind::SwapEnd => {
                if let Some(begin) = swap_begin.take() {
                    events.push(json!({
                        "name": "swap strategy", "cat": "swap", "ph": "X", "pid": PID,
                        "tid": REQUESTER_TID, "ts": us(begin), "dur": us(event.time_ns) - us(begin),
                    }));
                }
            }
            EventKind::Gc(phase) => events.push(json!({
                "name": format!("GC {}", phase.as_str()), "cat": "gc", "ph": "i", "s": "p",
                "pid": PID, "tid": REQUESTER_TID, "ts": us(event.time_ns),
            })),
            _ => {}
        }
    }
    for (index, track) in trace.ps.iter().enumerate() {
        for event in track {
            let name = match event.kind {
                EventKind::Armed => "armed",
                EventKind::Signal { resend: false } => "signal sent",
                EventKind::Signal { resend: true } => "signal re-sent",
                _ => continue,
            };
            events.push(json!({
                "name": name, "cat": "barrier", "ph": "i", "s": "t", "pid": PID,
                "tid": p_tid(index), "ts": us(event.time_ns),
                "args": { "request": event.request },
            }));
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "producer": "safepoint",
            "strategies": trace.strategies,
            "dropped_events": trace.dropped,
            // To line the trace up with `perf sched record -k CLOCK_MONOTONIC`.
            "origin_monotonic_ns": origin,
        },
    })
}

/// Writes [`chrome_json`] to `path`.
pub fn write_chrome_json(trace: &Trace, path: &Path) -> Result<(), String> {
    let text = serde_json::to_string(&chrome_json(trace))
        .map_err(|e| format!("cannot encode the trace for {}: {e}", path.display()))?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
