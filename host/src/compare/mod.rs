//! `safepoint compare`: every strategy, under every workload, at every P count, side by side
//! with the hardware floor of its mechanism, in one run.
//!
//! For each (P count, workload) the mutators first run alone, for the mutator throughput
//! without barriers. Then each strategy runs the same workload with barriers back to back
//! for the same time (or until its barrier count), and the row reports its barrier times,
//! their ratio to the floor, the requester's CPU per barrier, how much the mutators slowed
//! down, and the signals and EINTRs it caused, and, for the realistic workloads, what the
//! workload measured of itself (allocation rate and GC cycles, request latency with and
//! without barriers, poll overhead). A strategy that cannot run a workload gets a row saying
//! why instead.
//!
//! Under the synthetic workloads at 2 Ps or more, each strategy with `single-p-handshake`
//! also runs the workload with single-P handshakes instead of barriers, round robin over the
//! other Ps: the row gains their times, beside its full barrier's, and the ratio to the
//! signal floor (a handshake to a running P costs at best one signal round trip).
//!
//! `options.rs` is what to compare, `driver.rs` runs it, `model.rs` holds the results, and
//! `render.rs` (with `svg.rs`) turns them into the table, CSV and JSON.

mod driver;
mod machine;
mod model;
mod options;
mod render;
#[cfg(feature = "svg")]
mod svg;

pub use driver::compare;
pub use machine::Machine;
pub use model::{
    CompareError, Comparison, FloorResult, HandshakeFigures, HandshakeOutcome, Measurement,
    Outcome, Quantiles, Row, TimeToSafepointFigures, TracedFigures, WorkloadFigures,
};
pub use options::CompareOptions;
use options::handshakes_under;
use render::METRIC_COLUMNS;
pub use render::{human_ns, human_ratio};
#[cfg(feature = "svg")]
pub use svg::write_svg;
