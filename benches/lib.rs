//! Shared setup for the criterion benchmarks in `benches/`: the shipped strategies, runtimes
//! under a workload, and the floors, all from `safepoint-host` so that the benchmarks and
//! `safepoint compare` measure the same things.

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use safepoint_host::floor::Floor;
use safepoint_host::plugin::{self, LoadOptions, Plugin, SearchPath};
use safepoint_host::runtime::{Runtime, WaitReason};
use safepoint_host::safepoint::{ServedPs, acquire_world, for_each_p};
use safepoint_host::workloads::{Mutators, Workload};

/// Every strategy that is built, as `compare` finds them.
pub fn shipped_strategies() -> Vec<Plugin> {
    plugin::discover_strategies(&SearchPath::default(), &LoadOptions::default()).0
}

/// `criterion_group!` and `criterion_main!` for a bench file whose benchmarks are in
/// `$target`, configured by [`criterion()`](crate::criterion()).
#[macro_export]
macro_rules! bench_main {
    ($target:path) => {
        criterion::criterion_group! {
            name = benches;
            config = $crate::criterion();
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
}

/// A criterion configured for a 2-core machine: short runs, medians over noise.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

/// A runtime of `procs` Ps whose mutators run `workload`.
pub struct Rig {
    rt: Runtime,
    mutators: Option<Mutators>,
}

impl Rig {
    /// Starts the runtime with `plugin` and the mutators of `workload`.
    pub fn start(plugin: &Plugin, config: &str, procs: usize, workload: Workload) -> Rig {
        Rig::with_served_ps(plugin, config, procs, workload, ServedPs::default())
    }

    /// [`Rig::start`], with the served-P policy `served_ps`.
    pub fn with_served_ps(
        plugin: &Plugin,
        config: &str,
        procs: usize,
        workload: Workload,
        served_ps: ServedPs,
    ) -> Rig {
        let rt = Runtime::builder()
            .procs(procs)
            .measure_requester_cpu(false)
            .served_ps(served_ps)
            .build(plugin, config)
            .expect("start the runtime");
        let mutators = Some(Mutators::start(&rt, workload));
        Rig { rt, mutators }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The wall time of `iters` barriers, performed back to back by one goroutine.
    pub fn barriers(&self, iters: u64) -> Duration {
        self.rt.block_on(move || {
            let start = Instant::now();
            for _ in 0..iters {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |p| {
                    std::hint::black_box(p);
                })
                .expect("barrier");
            }
            start.elapsed()
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mutators) = self.mutators.take() {
            mutators.stop();
        }
    }
}

/// Registers each floor in `group`, so that it is measured in the same run as what it is
/// compared with.
pub fn bench_floors(group: &mut BenchmarkGroup<'_, WallTime>) {
    for floor in Floor::ALL {
        group.bench_function(format!("floor/{floor}"), |b| {
            b.iter_custom(|n| floor.measure(n))
        });
    }
}
