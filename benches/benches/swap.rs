//! The time to swap from each shipped strategy to each other one (and to itself), with
//! mutators polling on every P: construction, the world held, every M attached and detached.
//!
//! Guards the swap path, and how long barriers are held off during one.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::Criterion;
use safepoint_benches::{Rig, shipped_strategies};
use safepoint_host::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("swap");
    let strategies = shipped_strategies();
    for from in &strategies {
        for to in &strategies {
            let rig = Rig::start(from, "", 2, Workload::Poll);
            group.bench_function(format!("{}->{}", from.name(), to.name()), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        rig.runtime().swap_strategy(to, "").expect("swap");
                        total += start.elapsed();
                        rig.runtime().swap_strategy(from, "").expect("swap back");
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
