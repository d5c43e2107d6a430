//! The soak: many barriers, strategy swaps and GC cycles in one run, to show that nothing is
//! lost and that memory stays flat.
//!
//! A soak is a [`run`] with GC and a rotation, between two readings of the process's
//! resident memory. Every GC cycle checks that each value recorded before its
//! `gc_mark_done` is marked, and marked once; the last cycle, after the mutators stop,
//! checks that every value ever recorded was. A lost or doubled value fails the run with
//! the value's mutator and sequence number, so a soak that completes lost none.

use std::fmt;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{RunError, RunOptions, RunSummary, quantiles, run};
use crate::runtime::Runtime;

/// How much the resident set may grow over a soak: twice the start, plus this.
pub const RSS_SLACK_KIB: u64 = 16 * 1024;

/// The malloc arenas a soak allows, unless `MALLOC_ARENA_MAX` says otherwise.
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`] for a soak, unless the environment sets
/// `MALLOC_ARENA_MAX`; returns the cap it set. Each M's thread may otherwise get an arena of
/// its own (up to eight per CPU), and the resident set then shows how glibc spreads 16 Ms
/// over arenas, not what the runtime holds: at 16 Ps it climbed from 6 to 31 MiB over a
/// 200-second soak, and stayed at 15 MiB with two arenas. Call it before the runtime starts.
pub fn cap_malloc_arenas() -> Option<i32> {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    crate::sys::cap_malloc_arenas(MALLOC_ARENAS).then_some(MALLOC_ARENAS)
}

/// What a soak did, and the memory it held.
#[derive(Debug)]
pub struct SoakReport {
    /// The run, GC and swaps included.
    pub summary: RunSummary,
    /// Resident memory (`VmRSS`) before the run, in KiB.
    pub rss_start_kib: u64,
    /// Resident memory at the end of the run, in KiB.
    pub rss_end_kib: u64,
    /// The most resident memory the process ever held (`VmHWM`), in KiB.
    pub rss_peak_kib: u64,
    /// The run's wall time.
    pub elapsed: Duration,
}

impl SoakReport {
    /// The most the resident set may be at the end: twice the start, plus
    /// [`RSS_SLACK_KIB`]. A leak of one mark bit per value recorded, or of one allocation
    /// per barrier, passes it within the first minute.
    pub fn rss_bound_kib(&self) -> u64 {
        2 * self.rss_start_kib + RSS_SLACK_KIB
    }

    /// Whether memory stayed within the bound.
    pub fn memory_flat(&self) -> bool {
        self.rss_end_kib <= self.rss_bound_kib()
    }
}

/// Runs `options` (which should ask for GC and a rotation) on `rt`, reading resident
/// memory before and after, and writing a progress line to `progress` every `every`.
pub fn soak(
    rt: &Runtime,
    options: &RunOptions,
    every: Duration,
    mut progress: impl Write + Send,
) -> Result<SoakReport, RunError> {
    let rss_start_kib = resident_kib().vm_rss;
    let started = Instant::now();
    let (done, tick) = mpsc::channel::<()>();
    let procs = rt.procs();
    let summary = std::thread::scope(|scope| {
        scope.spawn(move || {
            // Wakes every `every` until the run ends and drops `done`.
            while let Err(mpsc::RecvTimeoutError::Timeout) = tick.recv_timeout(every) {
                let _ = writeln!(
                    progress,
                    "soak, {procs} Ps: {:.0} s, RSS {}",
                    started.elapsed().as_secs_f64(),
                    mib(resident_kib().vm_rss)
                );
            }
        });
        let summary = run(rt, options);
        drop(done);
        summary
    })?;
    let memory = resident_kib();
    Ok(SoakReport {
        summary,
        rss_start_kib,
        rss_end_kib: memory.vm_rss,
        rss_peak_kib: memory.vm_hwm,
        elapsed: started.elapsed(),
    })
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let swaps = s.swaps.as_ref().map_or(0, |w| w.swaps);
        writeln!(
            f,
            "soak, {} Ps, workload {}: {} barriers, {swaps} swaps in {:.1} s",
            s.procs,
            s.workload,
            s.barriers,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  barrier time     {}", quantiles(&s.latency))?;
        if let Some(gc) = &s.gc {
            writeln!(
                f,
                "  GC               {} cycles, {} values recorded, {} lost, {} doubled; \
                 at most {} mark words retained",
                gc.cycles,
                gc.values_recorded,
                gc.values_recorded.saturating_sub(gc.values_marked),
                gc.values_marked.saturating_sub(gc.values_recorded),
                gc.mark_words_peak
            )?;
        }
        writeln!(
            f,
            "  RSS              {} at the start, {} at the end (bound {}), peak {}",
            mib(self.rss_start_kib),
            mib(self.rss_end_kib),
            mib(self.rss_bound_kib()),
            mib(self.rss_peak_kib)
        )?;
        let verdict = if self.memory_flat() {
            "ok: nothing lost or doubled, memory flat"
        } else {
            "FAILED: the resident set grew past its bound"
        };
        writeln!(f, "  verdict          {verdict}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `VmRSS` and `VmHWM` of this process, in KiB; zero where `/proc` does not say.
struct Resident {
    vm_rss: u64,
    vm_hwm: u64,
}

fn resident_kib() -> Resident {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Resident {
        vm_rss: field("VmRSS:"),
        vm_hwm: field("VmHWM:"),
    }
}
