//! The `compute` workload's kernel, a 64x64 matrix multiply, in its three builds: without
//! polls, strip-mined (a poll every 1,000 multiply-adds, HotSpot's default strip) and polling
//! at every iteration of the inner loop, on a runtime of each strategy with no barrier
//! requested.
//!
//! Guards the cost of compiler-style polls in a tight numeric loop: the strip-mined build
//! should stay within about 2 % of the build without polls (the poll's fast path: one
//! relaxed load and a branch, every 1,000 multiply-adds).

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::Criterion;
use safepoint_benches::shipped_strategies;
use safepoint_host::runtime::Runtime;
use safepoint_host::workloads::{Matmul, Polls, WorkloadParams};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compute_polls");
    let strip = WorkloadParams::default().strip_every;
    for plugin in shipped_strategies() {
        let rt = Runtime::builder()
            .procs(1)
            .build(&plugin, "")
            .expect("runtime");
        for (label, polls) in [
            ("none", Polls::None),
            ("strip-mined", Polls::Every(strip)),
            ("every-iteration", Polls::EveryIteration),
        ] {
            group.bench_function(format!("{}/{label}", plugin.name()), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(move || {
                        let mut kernel = Matmul::new(64, 1);
                        let start = Instant::now();
                        for _ in 0..iters {
                            kernel.run(polls);
                        }
                        std::hint::black_box(kernel.product());
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
