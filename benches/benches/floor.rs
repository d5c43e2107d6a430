//! The raw primitive behind each strategy: a cache-line round trip (polling), a signal sent
//! to a spinning thread until its handler acknowledges (signal), and a futex wake until the
//! woken thread acknowledges through another futex (futex).
//!
//! Guards the measurement itself: if a floor moves, every ratio to it moves.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use safepoint_benches::{bench_floors, criterion};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    bench_floors(&mut group);
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench
}
criterion_main!(benches);
