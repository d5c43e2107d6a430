//! Go's goroutine dump (`runtime.Stack(buf, true)` / the crash traceback), one entry per
//! goroutine:
//!
//! ```text
//! goroutine 7 [GC mark termination]:
//!     requester
//!     on M1, P0
//! ```

use std::fmt::Write;
use std::sync::Arc;

use super::Shared;
use super::g::G;

pub(crate) fn goroutine_dump(shared: &Shared) -> String {
    let mut gs: Vec<Arc<G>> = shared.allgs.lock().values().cloned().collect();
    gs.sort_by_key(|g| g.id);
    let mut out = String::new();
    for g in gs {
        write_entry(&mut out, shared, &g);
        out.push('\n');
    }
    out
}

pub(crate) fn write_entry(out: &mut String, shared: &Shared, g: &G) {
    let status = g.status.load();
    let scan = if g.status.is_scanning() { ", scan" } else { "" };
    let _ = writeln!(out, "goroutine {} [{}{scan}]:", g.id.0, status.dump_name());
    let _ = writeln!(out, "\t{}", g.name);
    if let Some(m) = g.running_on() {
        let p = shared
            .m_by_id(m)
            .and_then(|m| m.p())
            .map_or_else(|| "no P".to_owned(), |p| p.to_string());
        let _ = writeln!(out, "\ton {m}, {p}");
    }
}
