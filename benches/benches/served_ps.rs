//! The served-P policy at 8 Ps under the `poll` workload, where Ps outnumber the cores of the
//! development machine: `run` (a served P goes on computing) against `auto` (it sleeps until
//! the barrier ends), for every shipped strategy, next to the floors.
//!
//! Guards the policy: with `auto`, a barrier waits for context switches, not for the end of
//! the time slice of a served P that keeps its CPU (milliseconds).

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::Criterion;
use safepoint_benches::{Rig, bench_floors, shipped_strategies};
use safepoint_host::safepoint::ServedPs;
use safepoint_host::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("served_ps");
    bench_floors(&mut group);
    for plugin in shipped_strategies() {
        for policy in [ServedPs::Run, ServedPs::Auto] {
            let rig = Rig::with_served_ps(&plugin, "", 8, Workload::Poll, policy);
            group.bench_function(format!("{}/{policy}/8P", plugin.name()), |b| {
                b.iter_custom(|iters| rig.barriers(iters))
            });
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
