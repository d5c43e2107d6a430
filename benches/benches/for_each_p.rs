//! Barrier latency of every shipped strategy, at 1, 2, 4, 8 and 16 Ps, under each synthetic
//! workload (`nopoll` only for strategies that reach Ps that never poll), next to the floor of
//! each mechanism measured in the same run. The realistic workloads (`alloc`, `server`,
//! `compute`) have phases of their own: `safepoint compare` measures them.
//!
//! Guards against regressions in the barrier's path: the host's wrapper, the strategy's
//! arm/serve/acknowledge protocol, and how the requester waits when Ps outnumber cores.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::Criterion;
use safepoint_benches::{Rig, bench_floors, shipped_strategies};
use safepoint_host::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("for_each_p");
    bench_floors(&mut group);
    for plugin in shipped_strategies() {
        for workload in Workload::SYNTHETIC {
            if !plugin.capabilities().contains(workload.needs()) {
                continue;
            }
            for procs in [1, 2, 4, 8, 16] {
                let rig = Rig::start(&plugin, "", procs, workload);
                group.bench_function(format!("{}/{workload}/{procs}P", plugin.name()), |b| {
                    b.iter_custom(|iters| rig.barriers(iters))
                });
            }
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
