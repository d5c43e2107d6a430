//! A comparison as the table `safepoint compare` prints, as CSV and as JSON.

use std::fmt::Write as _;

use super::{
    Comparison, HandshakeOutcome, Measurement, Outcome, Row, TracedFigures, WorkloadFigures,
};

/// The CSV columns of a measured row, before the workload's own.
pub(crate) const MEASURED_COLUMNS: [&str; 9] = [
    "barriers",
    "p50_ns",
    "p99_ns",
    "max_ns",
    "p50_over_floor",
    "requester_cpu_ns",
    "mutator_slowdown_pct",
    "signals_sent",
    "eintrs",
];

/// The CSV columns of a row's [`HandshakeFigures`], its fields prefixed `handshake_`.
pub(crate) const HANDSHAKE_COLUMNS: [&str; 6] = [
    "handshakes",
    "handshake_p50_ns",
    "handshake_p99_ns",
    "handshake_max_ns",
    "handshake_by_itself",
    "handshake_p50_over_signal_floor",
];

/// The CSV cells under [`HANDSHAKE_COLUMNS`]; empty where none were measured.
pub(crate) fn handshake_cells(handshake: Option<&HandshakeOutcome>) -> Vec<String> {
    match handshake {
        Some(HandshakeOutcome::Measured(h)) => vec![
            h.handshakes.to_string(),
            h.time.p50_ns.to_string(),
            h.time.p99_ns.to_string(),
            h.time.max_ns.to_string(),
            h.by_itself.to_string(),
            format!("{:.3}", h.p50_over_signal_floor),
        ],
        _ => vec![String::new(); HANDSHAKE_COLUMNS.len()],
    }
}

/// The CSV columns of [`WorkloadFigures`], named as its fields.
pub(crate) const METRIC_COLUMNS: [&str; 8] = [
    "alloc_mb_per_s",
    "gc_cycles",
    "latency_p50_ns",
    "latency_p99_ns",
    "quiet_latency_p50_ns",
    "quiet_latency_p99_ns",
    "poll_every_overhead_pct",
    "poll_strip_overhead_pct",
];

/// Nanoseconds, in the unit that reads best.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// A ratio with the digits that matter: `0.004x`, `2.7x`, `45x`.
pub fn human_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else if ratio >= 0.1 {
        format!("{ratio:.1}x")
    } else {
        format!("{ratio:.3}x")
    }
}

impl Comparison {
    /// The table `safepoint compare` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.machine);
        let _ = writeln!(out, "served Ps: {}", self.served_ps);
        let _ = writeln!(out, "\nfloors (same run):");
        for f in &self.floors {
            let _ = writeln!(
                out,
                "  {:<24} p50 {:>9}  p99 {:>9}  max {:>9}",
                f.floor,
                human_ns(f.time.p50_ns),
                human_ns(f.time.p99_ns),
                human_ns(f.time.max_ns)
            );
        }
        let _ = writeln!(
            out,
            "\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8} {:>7}  workload metric",
            "strategy",
            "Ps",
            "workload",
            "p50",
            "p99",
            "max",
            "p50/floor",
            "req CPU",
            "slowdown",
            "signals",
            "EINTRs"
        );
        for row in &self.rows {
            let _ = write!(
                out,
                "{:<10} {:>3} {:<8} ",
                row.strategy, row.procs, row.workload
            );
            let _ = match &row.outcome {
                Outcome::Measured(m) => writeln!(
                    out,
                    "{:>9} {:>9} {:>9} {:>9} {:>10} {:>8.1}% {:>8} {:>7}{}",
                    human_ns(m.time.p50_ns),
                    human_ns(m.time.p99_ns),
                    human_ns(m.time.max_ns),
                    human_ratio(m.p50_over_floor),
                    human_ns(m.requester_cpu_ns),
                    m.mutator_slowdown_pct,
                    m.signals_sent.map_or("-".to_owned(), |s| s.to_string()),
                    m.eintrs,
                    m.metric
                        .as_ref()
                        .map_or(String::new(), |f| format!("  {}", f.short()))
                ),
                Outcome::NotApplicable { reason } => writeln!(out, "n/a: {reason}"),
                Outcome::Failed { error } => writeln!(out, "FAILED: {error}"),
            };
        }
        self.handshake_table(&mut out);
        self.traced_table(&mut out);
        out
    }

    /// The handshake section of the table: each row's handshakes beside its barrier p50.
    pub(crate) fn handshake_table(&self, out: &mut String) {
        let rows: Vec<(&Row, &HandshakeOutcome)> = self
            .rows
            .iter()
            .filter_map(|row| Some((row, row.handshake.as_ref()?)))
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nsingle-P handshakes, round robin over the other Ps, without barriers:\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>9} {:>11} {:>13} {:>10}",
            "strategy",
            "Ps",
            "workload",
            "p50",
            "p99",
            "max",
            "barrier p50",
            "p50/sig floor",
            "by itself"
        );
        for (row, handshake) in rows {
            let _ = write!(
                out,
                "{:<10} {:>3} {:<8} ",
                row.strategy, row.procs, row.workload
            );
            let barrier_p50 = match &row.outcome {
                Outcome::Measured(m) => human_ns(m.time.p50_ns),
                _ => "-".to_owned(),
            };
            let _ = match handshake {
                HandshakeOutcome::Measured(h) => writeln!(
                    out,
                    "{:>9} {:>9} {:>9} {:>11} {:>13} {:>10}",
                    human_ns(h.time.p50_ns),
                    human_ns(h.time.p99_ns),
                    human_ns(h.time.max_ns),
                    barrier_p50,
                    human_ratio(h.p50_over_signal_floor),
                    format!("{}/{}", h.by_itself, h.handshakes)
                ),
                HandshakeOutcome::Failed { error } => writeln!(out, "FAILED: {error}"),
            };
        }
    }

    /// With `--traced`: each row's barrier p50 with tracing off and on, and its time to
    /// safepoint by wait reason and by P.
    pub(crate) fn traced_table(&self, out: &mut String) {
        let traced: Vec<(&Row, &Measurement, &TracedFigures)> = self
            .rows
            .iter()
            .filter_map(|row| match &row.outcome {
                Outcome::Measured(m) => m.traced.as_ref().map(|t| (row, m, t)),
                _ => None,
            })
            .collect();
        if traced.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nwith tracing on (each row run again):\n{:<10} {:>3} {:<8} {:>9} {:>9} {:>7}  time to safepoint p50 / p99",
            "strategy", "Ps", "workload", "p50 off", "p50 on", "on/off"
        );
        for (row, m, t) in traced {
            let each: Vec<String> = t
                .time_to_safepoint_per_reason
                .iter()
                .map(|r| {
                    format!(
                        "[{}] {} / {}",
                        r.of,
                        human_ns(r.time.p50_ns),
                        human_ns(r.time.p99_ns)
                    )
                })
                .chain(t.time_to_safepoint_per_p.iter().map(|p| {
                    format!(
                        "{} {} / {}",
                        p.of,
                        human_ns(p.time.p50_ns),
                        human_ns(p.time.p99_ns)
                    )
                }))
                .collect();
            let _ = writeln!(
                out,
                "{:<10} {:>3} {:<8} {:>9} {:>9} {:>7}  {}",
                row.strategy,
                row.procs,
                row.workload,
                human_ns(m.time.p50_ns),
                human_ns(t.p50_ns),
                human_ratio(t.p50_over_untraced),
                each.join(", ")
            );
        }
    }

    /// The same data as CSV, one row per table row, the machine and floors as comments.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# {}", self.machine);
        for f in &self.floors {
            let _ = writeln!(
                out,
                "# floor,{},{},{},{}",
                f.floor, f.time.p50_ns, f.time.p99_ns, f.time.max_ns
            );
        }
        let _ = writeln!(
            out,
            "strategy,procs,workload,floor,status,{},{},{},reason",
            MEASURED_COLUMNS.join(","),
            METRIC_COLUMNS.join(","),
            HANDSHAKE_COLUMNS.join(",")
        );
        for row in &self.rows {
            let (status, measured, metric, reason) = match &row.outcome {
                Outcome::Measured(m) => (
                    "measured",
                    vec![
                        m.barriers.to_string(),
                        m.time.p50_ns.to_string(),
                        m.time.p99_ns.to_string(),
                        m.time.max_ns.to_string(),
                        format!("{:.3}", m.p50_over_floor),
                        m.requester_cpu_ns.to_string(),
                        format!("{:.2}", m.mutator_slowdown_pct),
                        m.signals_sent.map_or(String::new(), |s| s.to_string()),
                        m.eintrs.to_string(),
                    ],
                    WorkloadFigures::csv_cells(m.metric.as_ref()),
                    String::new(),
                ),
                Outcome::NotApplicable { reason } => (
                    "not_applicable",
                    vec![String::new(); MEASURED_COLUMNS.len()],
                    WorkloadFigures::csv_cells(None),
                    format!("\"{}\"", reason.replace('"', "'")),
                ),
                Outcome::Failed { error } => (
                    "failed",
                    vec![String::new(); MEASURED_COLUMNS.len()],
                    WorkloadFigures::csv_cells(None),
                    format!("\"{}\"", error.replace('"', "'")),
                ),
            };
            let mut reason = reason;
            if let Some(HandshakeOutcome::Failed { error }) = &row.handshake {
                reason = format!("\"handshakes failed: {}\"", error.replace('"', "'"));
            }
            let _ = writeln!(
                out,
                "{},{},{},{},{status},{},{},{},{reason}",
                row.strategy,
                row.procs,
                row.workload,
                row.floor,
                measured.join(","),
                metric.join(","),
                handshake_cells(row.handshake.as_ref()).join(",")
            );
        }
        out
    }

    /// The same data as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison serialises")
    }
}
