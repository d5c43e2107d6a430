//! What to compare: the matrix of strategies, P counts and workloads, and its defaults.

use std::time::Duration;

use crate::floor::Floor;
use crate::plugin::Plugin;
use crate::safepoint::ServedPs;
use crate::workloads::{Workload, WorkloadParams};
use safepoint_abi::Capabilities;

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The strategies, each with its config.
    pub strategies: Vec<(Plugin, String)>,
    /// P counts.
    pub procs: Vec<usize>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Barriers per row, at most.
    pub barriers: u64,
    /// Time per row, at most; also the length of each baseline.
    pub duration: Duration,
    /// Samples per floor.
    pub floor_samples: u64,
    /// What a served P does while its barrier is still in flight.
    pub served_ps: ServedPs,
    /// The knobs of the realistic workloads.
    pub params: WorkloadParams,
    /// Run every measured row again with barrier tracing on, for the time to safepoint per
    /// P and per wait reason, and for what tracing costs ([`Measurement::traced`](super::Measurement::traced)).
    pub traced: bool,
}

impl CompareOptions {
    /// The default matrix: about a minute on a 2-core machine.
    pub fn full(strategies: Vec<(Plugin, String)>) -> CompareOptions {
        CompareOptions {
            strategies,
            procs: vec![1, 2, 4, 8, 16],
            workloads: Workload::ALL.to_vec(),
            barriers: 5000,
            duration: Duration::from_millis(500),
            floor_samples: 5000,
            served_ps: ServedPs::default(),
            params: WorkloadParams::default(),
            traced: false,
        }
    }

    /// `--quick`: about ten seconds.
    pub fn quick(strategies: Vec<(Plugin, String)>) -> CompareOptions {
        CompareOptions {
            procs: vec![1, 2, 4],
            workloads: vec![Workload::Poll, Workload::Mixed, Workload::NoPoll],
            barriers: 500,
            duration: Duration::from_millis(150),
            floor_samples: 500,
            ..CompareOptions::full(strategies)
        }
    }

    /// How many steps [`compare`](super::compare) reports to its progress callback.
    pub fn steps(&self) -> u64 {
        let cells = (self.procs.len() * self.workloads.len()) as u64;
        let mut handshake_runs = 0;
        for &procs in &self.procs {
            for &workload in &self.workloads {
                handshake_runs += self
                    .strategies
                    .iter()
                    .filter(|(plugin, _)| handshakes_under(plugin, procs, workload))
                    .count() as u64;
            }
        }
        let runs_per_strategy = if self.traced { 2 } else { 1 };
        Floor::ALL.len() as u64
            + cells * (1 + runs_per_strategy * self.strategies.len() as u64)
            + handshake_runs
    }
}

/// Whether `compare` measures `plugin`'s handshakes under `workload` at `procs` Ps.
pub(crate) fn handshakes_under(plugin: &Plugin, procs: usize, workload: Workload) -> bool {
    let has = plugin.capabilities();
    procs >= 2
        && Workload::SYNTHETIC.contains(&workload)
        && has.contains(workload.needs())
        && has.contains(Capabilities::SINGLE_P_HANDSHAKE)
}
