//! The mutator's cost of `poll()` when no barrier is requested: a loop of real work with a
//! poll after each unit, against the same loop without, on a runtime of each strategy (the
//! poll is host code, but a strategy may arm it differently).
//!
//! Guards the poll's fast path: one relaxed load and a branch.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::Criterion;
use safepoint_benches::shipped_strategies;
use safepoint_host::runtime::{self, Runtime};
use safepoint_host::workloads::work;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll_overhead");
    for plugin in shipped_strategies() {
        let rt = Runtime::builder()
            .procs(1)
            .build(&plugin, "")
            .expect("runtime");
        for polls in [false, true] {
            let label = if polls { "work+poll" } else { "work" };
            group.bench_function(format!("{}/{label}", plugin.name()), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(move || {
                        let start = Instant::now();
                        let mut x = 1;
                        for _ in 0..iters {
                            x = work(x);
                            if polls {
                                runtime::poll();
                            }
                        }
                        std::hint::black_box(x);
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
