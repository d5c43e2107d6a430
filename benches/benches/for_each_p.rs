//! Barrier latency of every shipped strategy under the `poll` workload, at 1, 2 and 4 Ps,
//! next to the floors of their mechanisms measured in the same run: a cache-line round trip
//! (polling) and a signal's round trip (signal).
//!
//! Guards against regressions in the barrier's fast path: the requester's setup, the
//! strategy's arm/serve/acknowledge protocol, and how the requester waits when Ps outnumber
//! cores.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use safepoint_benches::{
    PollingWorkload, cache_line_round_trips, shipped_strategies, signal_round_trips,
};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("for_each_p");
    group.bench_function("floor/cache-line round trip", |b| {
        b.iter_custom(cache_line_round_trips)
    });
    group.bench_function("floor/signal round trip", |b| {
        b.iter_custom(signal_round_trips)
    });
    for plugin in shipped_strategies() {
        for procs in [1, 2, 4] {
            let workload = PollingWorkload::start(&plugin, procs);
            group.bench_function(format!("{}/poll/{procs}P", plugin.name()), |b| {
                b.iter_custom(|iters| workload.barriers(iters))
            });
            workload.stop();
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
