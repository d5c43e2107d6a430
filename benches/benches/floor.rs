//! The raw primitive behind each strategy: a cache-line round trip (polling), a signal sent
//! to a spinning thread until its handler acknowledges (signal), and a futex wake until the
//! woken thread acknowledges through another futex (futex).
//!
//! Guards the measurement itself: if a floor moves, every ratio to it moves.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::Criterion;
use safepoint_benches::bench_floors;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    bench_floors(&mut group);
    group.finish();
}

safepoint_benches::bench_main!(bench);
